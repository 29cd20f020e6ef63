"""What the console page is told about its site: the optional map tile server. Without one the
map is the organisation's polygons only and needs no network beyond the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


class TileUrlError(ValueError):
    """A map tile URL the console cannot use."""


def check_tile_url(url: str) -> str:
    """`url` if it is an http(s) tile template with {z}, {x} and {y}; else TileUrlError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TileUrlError(f"map tile URL must be http(s)://host/...: {url!r}")
    missing = [p for p in ("{z}", "{x}", "{y}") if p not in url]
    if missing:
        raise TileUrlError(f"map tile URL lacks {', '.join(missing)}: {url!r}")
    if any(c in url for c in " '\";"):
        raise TileUrlError(f"map tile URL has a space, quote or semicolon: {url!r}")
    return url


def tile_origin(url: str) -> str:
    """The Content-Security-Policy source of a tile template (`{s}` subdomains as a wildcard)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    map_tiles: str | None = None  # a tile URL template, e.g. https://tiles.example/{z}/{x}/{y}.png
    map_attribution: str = ""

    def __post_init__(self) -> None:
        if self.map_tiles is not None:
            check_tile_url(self.map_tiles)

    @property
    def image_origins(self) -> tuple[str, ...]:
        """Where the console loads images from besides itself."""
        return () if self.map_tiles is None else (tile_origin(self.map_tiles),)
