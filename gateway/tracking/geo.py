"""Geodesy for tracks: haversine distances, a local metric projection, Douglas–Peucker."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M: Final = 6_371_008.8  # IUGG mean radius
# Web-Mercator ground resolution at the equator, zoom 0, 256-pixel tiles (metres per pixel).
EQUATOR_M_PER_PIXEL: Final = 2 * math.pi * 6_378_137.0 / 256

FloatArray = npt.NDArray[np.float64]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


_RAD: Final = math.pi / 180.0
_SHORT_DEG: Final = 0.05  # ~5 km: below this the flat-Earth formula is within 0.01 %


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine for far points; the equirectangular approximation (one cosine) for near ones,
    which is what the per-beacon rules (speed, movement) meet almost always."""
    dlat = lat2 - lat1
    dlon = lon2 - lon1
    if -_SHORT_DEG < dlat < _SHORT_DEG and -_SHORT_DEG < dlon < _SHORT_DEG:
        x = dlon * math.cos((lat1 + lat2) * 0.5 * _RAD)
        return EARTH_RADIUS_M * _RAD * math.sqrt(x * x + dlat * dlat)
    return haversine_m(lat1, lon1, lat2, lon2)


def haversine_path_m(lats: FloatArray, lons: FloatArray) -> FloatArray:
    """Distances between consecutive points (len n-1), vectorised."""
    phi = np.radians(lats)
    lam = np.radians(lons)
    dphi = np.diff(phi)
    dlam = np.diff(lam)
    a = np.sin(dphi / 2) ** 2 + np.cos(phi[:-1]) * np.cos(phi[1:]) * np.sin(dlam / 2) ** 2
    result: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result


class LocalProjection:
    """Equirectangular metres around a reference point: exact enough across a city district
    (error well under 0.1 % within tens of km), cheap, and invertible."""

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0 = lat0
        self.lon0 = lon0
        self.kx = math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        self.ky = math.radians(1) * EARTH_RADIUS_M

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        return self.lon0 + x / self.kx, self.lat0 + y / self.ky

    def arrays_to_xy(self, lons: FloatArray, lats: FloatArray) -> tuple[FloatArray, FloatArray]:
        return (lons - self.lon0) * self.kx, (lats - self.lat0) * self.ky


def metres_per_pixel(zoom: float, lat: float) -> float:
    """Web-map ground resolution at `zoom` (0-22) and latitude."""
    return float(EQUATOR_M_PER_PIXEL * math.cos(math.radians(lat)) / 2.0**zoom)


def douglas_peucker(xs: FloatArray, ys: FloatArray, tolerance: float) -> npt.NDArray[np.intp]:
    """Indices of the points Douglas–Peucker keeps (always the first and the last).

    Iterative with an explicit stack, distances to each chord computed with numpy, so a day of
    5-second points (17,280) simplifies in milliseconds.
    """
    n = len(xs)
    if n <= 2 or tolerance <= 0:
        return np.arange(n, dtype=np.intp)
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        start, end = stack.pop()
        if end - start < 2:
            continue
        x0, y0, x1, y1 = xs[start], ys[start], xs[end], ys[end]
        seg_x, seg_y = xs[start + 1 : end], ys[start + 1 : end]
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy)
        if length == 0.0:
            dist = np.hypot(seg_x - x0, seg_y - y0)
        else:
            dist = np.abs(dy * (seg_x - x0) - dx * (seg_y - y0)) / length
        index = int(np.argmax(dist))
        if dist[index] > tolerance:
            split = start + 1 + index
            keep[split] = True
            stack.append((start, split))
            stack.append((split, end))
    return np.flatnonzero(keep)


def simplify_lonlat(
    lons: Sequence[float] | npt.NDArray[np.float64],
    lats: Sequence[float] | npt.NDArray[np.float64],
    tolerance_m: float,
) -> npt.NDArray[np.intp]:
    """Douglas–Peucker over (lon, lat) points with a tolerance in metres."""
    if len(lats) == 0:
        return np.arange(0, dtype=np.intp)
    lat_arr = np.asarray(lats, dtype=np.float64)
    lon_arr = np.asarray(lons, dtype=np.float64)
    projection = LocalProjection(float(lat_arr[0]), float(lon_arr[0]))
    xs, ys = projection.arrays_to_xy(lon_arr, lat_arr)
    return douglas_peucker(xs, ys, tolerance_m)
