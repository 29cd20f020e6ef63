"""Incident categories and their handling rules, from configuration (YAML, shipped with the
organisation: ``categories.yaml`` next to this module; a site may give its own file).

A category has English and Chinese names, the tier where its incidents are handled first, how
long a tier has to accept and to resolve one, and what missing a deadline does (escalate one
tier up, or only remind). See the shipped file for the format.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final, Literal

import yaml

from gateway.incidents.errors import CategoryConfigError
from protocol.ids import is_category_id

Tier = Literal["grid", "area", "centre"]
TIERS: Final[tuple[Tier, ...]] = ("grid", "area", "centre")
Overdue = Literal["escalate", "remind"]
DEFAULT_RESOURCE: Final = "categories.yaml"
_KEYS: Final = frozenset(
    {"id", "name", "name_zh", "tier", "accept_within", "resolve_within", "on_overdue"}
)
MAX_DEADLINE_S: Final = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    name: str
    name_zh: str
    tier: Tier
    accept_within_s: float
    resolve_within_s: float
    on_overdue: Overdue

    @property
    def escalates(self) -> bool:
        return self.on_overdue == "escalate"


class Categories(Mapping[str, Category]):
    """The configured categories by id, in file order."""

    def __init__(self, categories: list[Category]) -> None:
        self._by_id: dict[str, Category] = {}
        for category in categories:
            if category.id in self._by_id:
                raise CategoryConfigError(f"category {category.id!r} is defined twice")
            self._by_id[category.id] = category
        if not self._by_id:
            raise CategoryConfigError("no categories are defined")

    def __getitem__(self, key: str) -> Category:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)


def _text(raw: Mapping[str, object], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise CategoryConfigError(f"{where}: {key!r} must be a non-empty string (<= 64 chars)")
    return value.strip()


def _seconds(raw: Mapping[str, object], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CategoryConfigError(f"{where}: {key!r} must be a number of seconds")
    if not 0 < value <= MAX_DEADLINE_S:
        raise CategoryConfigError(f"{where}: {key!r} must be in (0, {MAX_DEADLINE_S:.0f}]")
    return float(value)


def _category(raw: object, index: int) -> Category:
    where = f"categories[{index}]"
    if not isinstance(raw, dict):
        raise CategoryConfigError(f"{where} must be a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise CategoryConfigError(f"{where}: unknown keys {sorted(unknown)}")
    cid = raw.get("id")
    if not is_category_id(cid):
        raise CategoryConfigError(f"{where}: 'id' must be 1-32 of a-z, 0-9, '-'")
    assert isinstance(cid, str)
    where = f"category {cid!r}"
    tier = raw.get("tier", "grid")
    if tier not in TIERS:
        raise CategoryConfigError(f"{where}: 'tier' must be one of {', '.join(TIERS)}")
    overdue = raw.get("on_overdue", "remind")
    if overdue not in ("escalate", "remind"):
        raise CategoryConfigError(f"{where}: 'on_overdue' must be escalate or remind")
    accept = _seconds(raw, "accept_within", where)
    resolve = _seconds(raw, "resolve_within", where)
    if resolve < accept:
        raise CategoryConfigError(f"{where}: 'resolve_within' is shorter than 'accept_within'")
    return Category(
        cid, _text(raw, "name", where), _text(raw, "name_zh", where), tier, accept, resolve,
        overdue,
    )  # fmt: skip


def parse_categories(text: str, *, source: str = "<categories>") -> Categories:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CategoryConfigError(f"{source}: not YAML: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != 1:
        raise CategoryConfigError(f"{source}: expected a mapping with 'version: 1'")
    raw = data.get("categories")
    if not isinstance(raw, list):
        raise CategoryConfigError(f"{source}: 'categories' must be a list")
    try:
        return Categories([_category(item, i) for i, item in enumerate(raw)])
    except CategoryConfigError as exc:
        raise CategoryConfigError(f"{source}: {exc}") from exc


def load_categories(path: Path) -> Categories:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CategoryConfigError(f"cannot read {path}: {exc}") from exc
    return parse_categories(text, source=str(path))


def default_categories() -> Categories:
    text = resources.files("gateway.incidents").joinpath(DEFAULT_RESOURCE).read_text("utf-8")
    return parse_categories(text, source=DEFAULT_RESOURCE)
