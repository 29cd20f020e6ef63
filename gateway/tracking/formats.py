"""Beacon formats: the native JSON beacon (§7), OwnTracks `_type: location` and NMEA 0183.

Every parser is pure: bytes (and the server's clock) in, `Fix` / `StatusReport` out, or a typed
`BeaconError` that names what was wrong. Nothing here knows about MQTT connections or storage.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Final

import msgspec
import pynmeagps

from gateway.tracking.errors import (
    BeaconEncodingError,
    BeaconFieldError,
    BeaconVersionError,
    NmeaError,
    UnknownSourceError,
)
from gateway.tracking.model import MAX_EPOCH_S, Fix, StatusReport
from protocol.control import is_utf8
from protocol.topics import owntracks_topic

MAX_PAYLOAD_BYTES: Final = 4096
KNOTS_TO_MPS: Final = 1852.0 / 3600.0
KMH_TO_MPS: Final = 1000.0 / 3600.0
# Horizontal accuracy estimate from HDOP: a typical user-equivalent range error of a consumer
# GNSS receiver (metres). NMEA carries no accuracy of its own.
UERE_M: Final = 5.0
_HALF_DAY: Final = 43_200.0
# The native beacon's ranges (§7); OwnTracks and NMEA values are held to the same ones.
SPEED_MPS: Final = (0.0, 1000.0)
COURSE_DEG: Final = (0.0, 360.0)
ALTITUDE_M: Final = (-1000.0, 100_000.0)
ACCURACY_M: Final = (0.0, 1e7)


def _brief(value: object) -> str:
    """repr() for an error message, cut short (a JSON number may have thousands of digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _load_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BeaconEncodingError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))  # bytes would let json guess UTF-16/32
    except (UnicodeDecodeError, ValueError) as exc:
        raise BeaconEncodingError(f"payload is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise BeaconEncodingError("payload is JSON nested too deeply") from exc
    if type(data) is not dict:
        raise BeaconEncodingError("payload is not a JSON object")
    return data


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float | None:
    """An optional finite number within [low, high]; None when absent or null."""
    value = data.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is not float and kind is not int:
        raise BeaconFieldError(f"{key!r} must be a number, got {_brief(value)}")
    # Compare before converting: Python compares an int with a float exactly, so an integer
    # too large for a float (JSON allows any number of digits) is out of range, not an
    # OverflowError.
    if not low <= value <= high:  # also false for NaN
        raise BeaconFieldError(f"{key!r} = {_brief(value)} is outside [{low}, {high}]")
    return float(value)


def _required(data: dict[str, Any], key: str, low: float, high: float) -> float:
    number = _number(data, key, low, high)
    if number is None:
        raise BeaconFieldError(f"{key!r} is missing")
    return number


def _percent(data: dict[str, Any], key: str) -> int | None:
    number = _number(data, key, 0, 100)
    return None if number is None else int(number)


# ---- native beacon (docs/protocol.md §7) -----------------------------------------------------

_Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
_Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]


class _NativeBeacon(msgspec.Struct, frozen=True):
    """The §7 beacon; msgspec decodes and range-checks it in one C pass (the hot path)."""

    v: int
    ts: Annotated[int, msgspec.Meta(gt=0, le=MAX_EPOCH_S * 1000)]
    lat: _Lat
    lon: _Lon
    acc: Annotated[float, msgspec.Meta(ge=ACCURACY_M[0], le=ACCURACY_M[1])] | None = None
    spd: Annotated[float, msgspec.Meta(ge=SPEED_MPS[0], le=SPEED_MPS[1])] | None = None
    crs: Annotated[float, msgspec.Meta(ge=COURSE_DEG[0], le=COURSE_DEG[1])] | None = None
    alt: Annotated[float, msgspec.Meta(ge=ALTITUDE_M[0], le=ALTITUDE_M[1])] | None = None
    bat: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] | None = None
    sat: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None
    valid: bool = True


_native_decoder = msgspec.json.Decoder(_NativeBeacon)


def parse_native(device: str, payload: bytes, server_time: float) -> Fix:
    """`{"v":1,"ts":ms,"lat":..,"lon":..,[acc,spd,crs,alt,bat,sat,valid]}` -> Fix."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BeaconEncodingError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    # msgspec skips unknown fields without reading them as text: check the whole payload is
    # UTF-8 (JSON is), cheaply, as the common beacon is ASCII.
    if not payload.isascii():
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BeaconEncodingError(f"payload is not UTF-8 JSON: {exc}") from exc
    try:
        beacon = _native_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Expected `object`"):
            raise BeaconEncodingError(f"payload is not a JSON object: {text}") from exc
        if "`v`" in text or "$.v`" in text:
            raise BeaconVersionError(f"'v' must be 1: {text}") from exc
        raise BeaconFieldError(f"bad beacon field: {text}") from exc
    except msgspec.DecodeError as exc:
        raise BeaconEncodingError(f"payload is not a UTF-8 JSON object: {exc}") from exc
    except RecursionError as exc:  # msgspec walks even ignored fields' nesting recursively
        raise BeaconEncodingError("payload is JSON nested too deeply") from exc
    if beacon.v != 1:
        raise BeaconVersionError(f"'v' must be 1, got {beacon.v!r}")
    return Fix(
        device,
        beacon.ts / 1000.0,
        beacon.lat,
        beacon.lon,
        beacon.spd,
        beacon.crs,
        beacon.alt,
        beacon.acc,
        None if beacon.bat is None else round(beacon.bat),
        beacon.valid,
        "native",
        {} if beacon.sat is None else {"sat": beacon.sat},
        server_time,
    )


# ---- OwnTracks (owntracks/<user>/<device>) -----------------------------------------------------

OwnTracksResolver = Callable[[str, str], str | None]
"""resolver(user, device) -> the provisioned device id, or None if nobody mapped it."""


@dataclass(frozen=True, slots=True)
class OwnTracksMapping:
    """Map OwnTracks user/device pairs to provisioned devices.

    `explicit` wins; otherwise a user that is itself a provisioned device id maps to it (the
    OwnTracks app publishes as its MQTT user name, which on the managed broker is the device id,
    and the ACL only lets a device publish under its own `owntracks/<id>/`).
    """

    explicit: dict[tuple[str, str], str]
    is_device: Callable[[str], bool]

    def __call__(self, user: str, device: str) -> str | None:
        mapped = self.explicit.get((user, device))
        if mapped is not None:
            return mapped
        return user if self.is_device(user) else None


_OWNTRACKS_EXTRA: Final = ("tid", "t", "conn", "bs", "vac", "m", "SSID", "BSSID", "p")
_SCALARS: Final = (str, int, float, bool, type(None))


def _owntracks_attributes(data: dict[str, Any]) -> dict[str, Any]:
    """The extra fields kept as stored attributes: JSON scalars, text encodable as UTF-8."""
    attributes: dict[str, Any] = {}
    for key in _OWNTRACKS_EXTRA:
        if key not in data:
            continue
        value = data[key]
        if type(value) not in _SCALARS:
            raise BeaconFieldError(
                f"{key!r} must be a string, number, boolean or null, got {type(value).__name__}"
            )
        if type(value) is str and not is_utf8(value):
            raise BeaconFieldError(f"{key!r} is not valid Unicode text (a lone surrogate)")
        attributes[key] = value
    return attributes


def parse_owntracks(
    topic: str, payload: bytes, server_time: float, resolve: OwnTracksResolver
) -> Fix | StatusReport | None:
    """A location -> Fix; a Last Will (`_type: lwt`) -> offline; other types -> None (ignored)."""
    names = owntracks_topic(topic)
    if names is None:
        raise BeaconFieldError(f"not an OwnTracks location topic: {topic!r}")
    device = resolve(*names)
    if device is None:
        raise UnknownSourceError(f"OwnTracks {names[0]}/{names[1]} maps to no device")
    data = _load_object(payload)
    kind = data.get("_type")
    if kind == "lwt":
        tst = _number(data, "tst", 0, MAX_EPOCH_S)
        return StatusReport(device, "offline", server_time if tst is None else tst, reason="lost")
    if kind != "location":
        if not isinstance(kind, str):
            raise BeaconFieldError(f"'_type' must be a string, got {kind!r}")
        return None
    tst = data.get("tst")
    if type(tst) is not int or not 0 < tst <= MAX_EPOCH_S:
        raise BeaconFieldError(
            f"'tst' must be an integer in 1..{MAX_EPOCH_S} (epoch s), got {_brief(tst)}"
        )
    velocity = _number(data, "vel", 0.0, 3600.0)
    attributes = _owntracks_attributes(data)
    return Fix(
        device=device,
        fix_time=float(tst),
        lat=_required(data, "lat", -90.0, 90.0),
        lon=_required(data, "lon", -180.0, 180.0),
        speed=None if velocity is None else velocity * KMH_TO_MPS,
        course=_number(data, "cog", *COURSE_DEG),
        altitude=_number(data, "alt", *ALTITUDE_M),
        accuracy=_number(data, "acc", *ACCURACY_M),
        battery=_percent(data, "batt"),
        source="owntracks",
        attributes=attributes,
        server_time=server_time,
    )


# ---- NMEA 0183 (xixin/v1/dev/{dev}/nmea) ---------------------------------------------------------

_NMEA_ERRORS: Final = (
    pynmeagps.NMEAMessageError,
    pynmeagps.NMEAParseError,
    pynmeagps.NMEATypeError,
    ValueError,
    TypeError,
    IndexError,
)


@dataclass(slots=True)
class _Epoch:
    """What RMC and GGA sentences of one time of day said."""

    clock: time
    day: date | None = None
    lat: float | None = None
    lon: float | None = None
    valid: bool = True
    speed: float | None = None
    course: float | None = None
    altitude: float | None = None
    hdop: float | None = None
    satellites: int | None = None
    quality: int | None = None


def _nmea_float(value: object, name: str, low: float, high: float) -> float | None:
    """A field pynmeagps converted: None when empty, else a finite number in [low, high]."""
    if value == "" or value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise NmeaError(f"NMEA {name} is not a number: {value!r}")
    if not low <= value <= high:
        raise NmeaError(f"NMEA {name} {value!r} is outside [{low:g}, {high:g}]")
    return float(value)


# (d)ddmm.mmmm: two or three digits of degrees, then minutes below 60; no sign (the hemisphere
# letter gives it).
_COORDINATE: Final = re.compile(r"(\d{2,3})([0-5]\d(?:\.\d*)?)")


def _nmea_coordinate(text: str, hemisphere: str, axis: str) -> float | None:
    """A raw latitude/longitude field and its hemisphere letter -> signed degrees (None when
    the receiver left the field empty). pynmeagps's own conversion drops a minus sign and reads
    any letter but S/W as N/E, so the raw fields are checked here."""
    if not text:
        return None
    positive, negative, limit = ("N", "S", 90.0) if axis == "latitude" else ("E", "W", 180.0)
    if text[0] in "+-":
        raise NmeaError(f"NMEA {axis} {text!r} has a sign: the hemisphere letter gives it")
    match = _COORDINATE.fullmatch(text)
    if match is None:
        raise NmeaError(f"NMEA {axis} {text!r} is not an unsigned (d)ddmm.mmmm, minutes < 60")
    if hemisphere not in (positive, negative):
        raise NmeaError(f"NMEA {axis} hemisphere must be {positive} or {negative}: {hemisphere!r}")
    degrees = round(int(match[1]) + float(match[2]) / 60.0, 10)
    if degrees > limit:
        raise NmeaError(f"NMEA {axis} {text},{hemisphere} is beyond {limit:g} degrees")
    return -degrees if hemisphere == negative else degrees


def _raw_fields(line: str) -> list[str]:
    """The data fields of a sentence that passed its checksum (`$ID,f0,f1,...*hh`)."""
    return line[1:].rpartition("*")[0].split(",")[1:]


def _raw(fields: list[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""


def _fix_time(epoch: _Epoch, server_time: float) -> float:
    """Epoch seconds of the fix; GGA carries no date, so take the server's (nearest day)."""
    if epoch.day is not None:
        return datetime.combine(epoch.day, epoch.clock, UTC).timestamp()
    today = datetime.fromtimestamp(server_time, UTC).date()
    candidate = datetime.combine(today, epoch.clock, UTC).timestamp()
    if candidate - server_time > _HALF_DAY:
        candidate -= 86_400.0
    elif server_time - candidate > _HALF_DAY:
        candidate += 86_400.0
    return candidate


def _parse_sentence(line: str) -> Any:
    try:
        message = pynmeagps.NMEAReader.parse(line, validate=pynmeagps.VALCKSUM)
    except _NMEA_ERRORS as exc:
        raise NmeaError(f"bad NMEA sentence {line[:40]!r}: {exc}") from exc
    if message is None:
        raise NmeaError(f"not an NMEA sentence: {line[:40]!r}")
    return message


def _merge_sentence(message: Any, fields: list[str], epochs: dict[time, _Epoch]) -> None:
    msg_id = message.msgID
    name = f"{message.talker}{msg_id}"
    clock = getattr(message, "time", "")
    if not isinstance(clock, time):
        if _raw(fields, 0):
            raise NmeaError(f"{name} time of fix {_raw(fields, 0)!r} is not a valid hhmmss")
        # A receiver without a fix may leave even the time empty: nothing to place in time.
        raise NmeaError(f"{name} sentence without a time of fix")
    # RMC: time, status, lat, N/S, lon, E/W, ...; GGA: time, lat, N/S, lon, E/W, ...
    first = 2 if msg_id == "RMC" else 1
    lat = _nmea_coordinate(_raw(fields, first), _raw(fields, first + 1), "latitude")
    lon = _nmea_coordinate(_raw(fields, first + 2), _raw(fields, first + 3), "longitude")
    epoch = epochs.setdefault(clock, _Epoch(clock))
    if lat is not None and lon is not None:
        epoch.lat, epoch.lon = lat, lon
    if msg_id == "RMC":
        day = getattr(message, "date", "")
        if isinstance(day, date):
            epoch.day = day
        elif _raw(fields, 8):
            raise NmeaError(f"{name} date {_raw(fields, 8)!r} is not a valid ddmmyy")
        epoch.valid = epoch.valid and getattr(message, "status", "V") == "A"
        max_knots = SPEED_MPS[1] / KNOTS_TO_MPS
        knots = _nmea_float(getattr(message, "spd", ""), "speed (knots)", 0.0, max_knots)
        epoch.speed = None if knots is None else knots * KNOTS_TO_MPS
        epoch.course = _nmea_float(getattr(message, "cog", ""), "course", *COURSE_DEG)
    else:  # GGA
        quality = getattr(message, "quality", 0)
        epoch.quality = quality if isinstance(quality, int) else 0
        epoch.valid = epoch.valid and epoch.quality > 0
        epoch.altitude = _nmea_float(getattr(message, "alt", ""), "altitude", *ALTITUDE_M)
        epoch.hdop = _nmea_float(getattr(message, "HDOP", ""), "HDOP", 0.0, ACCURACY_M[1] / UERE_M)
        satellites = getattr(message, "numSV", None)
        if isinstance(satellites, int) and not 0 <= satellites <= 255:
            raise NmeaError(f"{name} satellites {satellites} is outside [0, 255]")
        epoch.satellites = satellites if isinstance(satellites, int) else None


def parse_nmea(device: str, payload: bytes, server_time: float) -> list[Fix]:
    """One or more RMC/GGA sentences (one per line) -> one Fix per time of fix.

    RMC and GGA of the same time merge (RMC: date, speed, course; GGA: altitude, HDOP,
    satellites). RMC status `V` or GGA quality 0 make the fix invalid; an invalid fix without
    coordinates is placed at (0, 0) so the filter chain counts it as invalid. Other sentence types
    (GSV, GSA, VTG...) are skipped. A bad checksum raises NmeaError.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BeaconEncodingError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError as exc:
        raise NmeaError("NMEA payload is not ASCII") from exc
    epochs: dict[time, _Epoch] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        if not line.startswith("$"):
            raise NmeaError(f"NMEA sentence must start with '$': {line[:40]!r}")
        message = _parse_sentence(line)
        if message.msgID in ("RMC", "GGA"):
            _merge_sentence(message, _raw_fields(line), epochs)
    if not epochs:
        raise NmeaError("no RMC or GGA sentence in the payload")
    fixes: list[Fix] = []
    for epoch in epochs.values():
        has_position = epoch.lat is not None and epoch.lon is not None
        attributes: dict[str, Any] = {}
        if epoch.hdop is not None:
            attributes["hdop"] = epoch.hdop
        if epoch.satellites is not None:
            attributes["sat"] = epoch.satellites
        if epoch.quality is not None:
            attributes["quality"] = epoch.quality
        fixes.append(
            Fix(
                device=device,
                fix_time=_fix_time(epoch, server_time),
                lat=epoch.lat if epoch.lat is not None else 0.0,
                lon=epoch.lon if epoch.lon is not None else 0.0,
                speed=epoch.speed,
                course=epoch.course,
                altitude=epoch.altitude,
                accuracy=None if epoch.hdop is None else epoch.hdop * UERE_M,
                valid=epoch.valid and has_position,
                source="nmea",
                attributes=attributes,
                server_time=server_time,
            )
        )
    fixes.sort(key=lambda fix: fix.fix_time)
    return fixes


def nmea_checksum(body: str) -> str:
    """`GPRMC,...` -> `$GPRMC,...*hh` (for simulators and tests that craft sentences)."""
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}"
