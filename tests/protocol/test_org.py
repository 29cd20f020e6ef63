"""The organisation: the shipped Longxi org, membership rules, geography and bad org files."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import yaml
from shapely.geometry import Point as ShapelyPoint
from shapely.geometry import Polygon
from shapely.ops import unary_union

from protocol.errors import InvalidRoleError, OrgError, ProtocolError, UnknownUnitError
from protocol.ids import TALKGROUP_ID_RE
from protocol.org import ALL_CALL, Organisation, default_org, load_org, parse_org

METRES_PER_DEG_LAT = 111_320.0
METRES_PER_DEG_LON = METRES_PER_DEG_LAT * math.cos(math.radians(30.87))


@pytest.fixture(scope="module")
def org() -> Organisation:
    return default_org()


def _shape(org: Organisation, grid_id: str) -> Polygon:
    return Polygon(org.grids[grid_id].polygon)


# ---- the shipped organisation -------------------------------------------------------------------


def test_default_org_is_one_centre_three_areas_thirteen_grids(org: Organisation) -> None:
    assert org.centre.id == "centre"
    assert org.centre.name_zh == "龙溪街道社会治理中心"
    assert list(org.areas) == ["area-renxi", "area-fengxi", "area-kejicheng"]
    assert [a.name for a in org.areas.values()] == ["Renxi", "Fengxi", "Science City"]
    assert list(org.grids) == [f"grid-{n:02d}" for n in range(1, 14)]
    assert sum(len(a.grids) for a in org.areas.values()) == 13
    for area in org.areas.values():
        assert all(org.grids[g].area == area.id for g in area.grids)
    names_zh = {g.name_zh for g in org.grids.values()}
    assert {"民盛社区", "民和社区", "七里亭社区"} <= names_zh
    assert len(names_zh) == 13


def test_talkgroups_one_per_grid_and_area_plus_all_call(org: Organisation) -> None:
    assert set(org.talkgroups) == {ALL_CALL, *org.areas, *org.grids}
    assert org.talkgroups[ALL_CALL].kind == "all"
    assert org.talkgroups[ALL_CALL].unit == "centre"
    assert org.talkgroups["area-renxi"].kind == "area"
    assert org.talkgroups["grid-07"].kind == "grid"
    assert org.talkgroups["grid-07"].unit == "grid-07"
    assert org.talkgroups["grid-07"].name == org.grids["grid-07"].name
    assert org.talkgroups["area-kejicheng"].name == "Science City area net"
    assert all(TALKGROUP_ID_RE.match(tg) for tg in org.talkgroups)


def test_units_and_talkgroup_of(org: Organisation) -> None:
    assert org.units() == frozenset({"centre", *org.areas, *org.grids})
    assert org.talkgroup_of("centre") == "all"
    assert org.talkgroup_of("area-fengxi") == "area-fengxi"
    assert org.talkgroup_of("grid-12") == "grid-12"
    with pytest.raises(UnknownUnitError, match="grid-99"):
        org.talkgroup_of("grid-99")


# ---- membership ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["officer", "guard"])
def test_grid_member_of_own_grid_area_and_all_call(org: Organisation, role: str) -> None:
    assert org.member_talkgroups("grid-06", role) == {"grid-06", "area-fengxi", "all"}


def test_grid_dispatcher_has_no_descendants(org: Organisation) -> None:
    assert org.member_talkgroups("grid-06", "dispatcher") == {"grid-06", "area-fengxi", "all"}


def test_area_dispatcher_covers_its_grids_only(org: Organisation) -> None:
    members = org.member_talkgroups("area-kejicheng", "dispatcher")
    assert members == {"area-kejicheng", "all", "grid-10", "grid-11", "grid-12", "grid-13"}
    assert org.member_talkgroups("area-kejicheng", "officer") == {"area-kejicheng", "all"}


def test_centre_dispatcher_is_member_of_everything(org: Organisation) -> None:
    assert org.member_talkgroups("centre", "dispatcher") == set(org.talkgroups)
    assert org.member_talkgroups("centre", "officer") == {"all"}


def test_membership_rejects_bad_role_and_unit(org: Organisation) -> None:
    with pytest.raises(InvalidRoleError, match="captain"):
        org.member_talkgroups("grid-01", "captain")
    with pytest.raises(UnknownUnitError):
        org.member_talkgroups("nowhere", "officer")
    assert issubclass(InvalidRoleError, ProtocolError)


def test_every_default_affiliation_is_within_membership(org: Organisation) -> None:
    for unit, role in itertools.product(org.units(), ("officer", "guard", "dispatcher")):
        affiliation = org.default_affiliation(unit, role)
        assert affiliation, (unit, role)
        assert affiliation[0] == org.talkgroup_of(unit)
        assert len(set(affiliation)) == len(affiliation)
        assert set(affiliation) <= org.member_talkgroups(unit, role)


def test_default_affiliations_of_the_shipped_file(org: Organisation) -> None:
    assert org.default_affiliation("grid-03", "officer") == ("grid-03", "area-renxi", "all")
    assert org.default_affiliation("grid-03", "guard") == ("grid-03", "all")
    assert org.default_affiliation("centre", "dispatcher") == (
        "all",
        "area-renxi",
        "area-fengxi",
        "area-kejicheng",
    )
    assert org.default_affiliation("area-fengxi", "dispatcher") == (
        "area-fengxi",
        "all",
        "grid-06",
        "grid-07",
        "grid-08",
        "grid-09",
    )


# ---- geography ----------------------------------------------------------------------------------


def test_polygons_are_valid_closed_and_near_longxi(org: Organisation) -> None:
    for grid in org.grids.values():
        assert grid.polygon[0] == grid.polygon[-1]
        shape = Polygon(grid.polygon)
        assert shape.is_valid, grid.id
        lon, lat = grid.centre
        assert abs(lat - 30.87) < 0.03 and abs(lon - 120.13) < 0.03
        assert shape.contains(ShapelyPoint(grid.centre))
        assert shape.centroid.distance(ShapelyPoint(grid.centre)) < 1e-9
        min_x, min_y, max_x, max_y = shape.bounds
        width_m = (max_x - min_x) * METRES_PER_DEG_LON
        height_m = (max_y - min_y) * METRES_PER_DEG_LAT
        assert 300 <= width_m <= 1500 and 300 <= height_m <= 1500, (grid.id, width_m, height_m)


def test_grids_do_not_overlap(org: Organisation) -> None:
    for a, b in itertools.combinations(org.grids, 2):
        overlap = _shape(org, a).intersection(_shape(org, b)).area
        assert overlap < 1e-10, (a, b, overlap)


def test_grids_of_an_area_are_adjacent(org: Organisation) -> None:
    for area in org.areas.values():
        union = unary_union([_shape(org, g) for g in area.grids])
        assert union.geom_type == "Polygon", f"{area.id} is not one contiguous region"
        for grid in area.grids:
            neighbours = [g for g in area.grids if g != grid]
            shared = max(_shape(org, grid).intersection(_shape(org, n)).length for n in neighbours)
            assert shared * METRES_PER_DEG_LAT > 100, f"{grid} shares no real edge in {area.id}"


def test_grid_at_agrees_with_shapely(org: Organisation) -> None:
    lons = [120.105 + i * 0.0025 for i in range(21)]
    lats = [30.856 + j * 0.0015 for j in range(20)]
    hits = 0
    for lon, lat in itertools.product(lons, lats):
        expected = [g for g in org.grids if _shape(org, g).contains(ShapelyPoint(lon, lat))]
        found = org.grid_at(lon, lat)
        assert found == (expected[0] if expected else None), (lon, lat)
        hits += found is not None
    assert hits > 100
    assert org.grid_at(121.0, 31.0) is None


# ---- org files ----------------------------------------------------------------------------------


def _base() -> dict[str, object]:
    square = [[120.10, 30.86], [120.11, 30.86], [120.11, 30.87], [120.10, 30.87], [120.10, 30.86]]
    return {
        "version": 1,
        "centre": {"name": "Centre", "name_zh": "中心"},
        "areas": [{"id": "area-a", "name": "A", "name_zh": "甲"}],
        "grids": [{"id": "grid-a1", "name": "A1", "area": "area-a", "polygon": square}],
    }


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_minimal_org_file_loads_with_defaults(tmp_path: Path) -> None:
    org = load_org(_write(tmp_path, _base()))
    assert org.units() == {"centre", "area-a", "grid-a1"}
    assert org.grids["grid-a1"].name_zh == "A1"
    assert org.grids["grid-a1"].centre == pytest.approx((120.105, 30.865))
    assert org.default_affiliation("grid-a1", "officer") == ("grid-a1", "area-a", "all")
    assert org.default_affiliation("grid-a1", "guard") == ("grid-a1", "all")


def test_open_ring_is_closed(tmp_path: Path) -> None:
    data = _base()
    grid = data["grids"][0]  # type: ignore[index]
    grid["polygon"] = grid["polygon"][:-1]
    org = load_org(_write(tmp_path, data))
    ring = org.grids["grid-a1"].polygon
    assert ring[0] == ring[-1] and len(ring) == 5


def _mutate(path: str, value: object) -> dict[str, object]:
    """Set a dotted path ("grids.0.area") in a fresh base org; value DELETE removes the key."""
    data: dict[str, object] = _base()
    node: object = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    last = keys[-1]
    if value is DELETE:
        del node[last]  # type: ignore[attr-defined]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]
    return data


DELETE = object()
BOWTIE = [[120.10, 30.86], [120.11, 30.87], [120.11, 30.86], [120.10, 30.87]]
SPIKE = [[120.10, 30.86], [120.11, 30.86], [120.12, 30.86], [120.105, 30.86], [120.10, 30.87]]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("grids", DELETE, r"missing required keys \['grids'\]"),
        ("centre.name", DELETE, r"centre is missing required keys \['name'\]"),
        ("grids.0.polygon", DELETE, "missing required keys"),
        ("grids.0.area", "area-zz", "unknown area 'area-zz'"),
        ("grids.0.polygon", [[120.1, 30.86], [120.11, 30.86]], "at least 3 distinct vertices"),
        ("grids.0.polygon", BOWTIE, "intersect"),
        ("grids.0.polygon", SPIKE, "intersect"),
        ("grids.0.polygon", [[120.1, 30.86], [120.11, 30.86], [120.12, 30.86]], "no area"),
        ("grids.0.polygon", [[200.0, 30.86], [120.11, 30.86], [120.11, 30.87]], "longitude 200"),
        ("grids.0.polygon", [[120.1, 95.0], [120.11, 30.86], [120.11, 30.87]], "latitude 95"),
        ("grids.0.polygon", [[120.1, "x"], [120.11, 30.86], [120.11, 30.87]], "pair of numbers"),
        ("grids.0.polygon", "square", "list of"),
        ("grids.0.id", "Grid A", "must match"),
        ("grids.0.id", "area-a", "used twice"),
        ("grids.0.id", "all", "reserved for the all-call"),
        ("grids.0.colour", "red", r"unknown keys \['colour'\]"),
        ("areas.0.name", "", "non-empty string"),
        ("areas", [], "non-empty list"),
        ("version", 2, "unsupported org file version"),
        ("talkgroups", {"grid-zz": {"name": "Z"}}, "unknown talkgroup 'grid-zz'"),
        ("affiliations", {"officer": ["own", "everything"]}, "unknown entry 'everything'"),
        ("affiliations", {"guard": ["own", "children"]}, "only for dispatchers"),
        ("affiliations", {"chief": ["own"]}, "unknown role 'chief'"),
    ],
)
def test_bad_org_files_raise_clear_org_errors(
    tmp_path: Path, path: str, value: object, message: str
) -> None:
    org_file = _write(tmp_path, _mutate(path, value))
    with pytest.raises(OrgError, match=message) as caught:
        load_org(org_file)
    assert str(org_file) in str(caught.value)


def test_duplicate_grid_ids(tmp_path: Path) -> None:
    data = _base()
    grids = data["grids"]
    assert isinstance(grids, list)
    grids.append(dict(grids[0]))
    with pytest.raises(OrgError, match="duplicate grid id 'grid-a1'"):
        load_org(_write(tmp_path, data))


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(OrgError, match="cannot read org file"):
        load_org(tmp_path / "missing.yaml")
    with pytest.raises(OrgError, match="not valid YAML"):
        parse_org("areas: [unclosed")
    with pytest.raises(OrgError, match="must be a mapping"):
        parse_org("- just\n- a list\n")


def test_organisation_constructor_checks_area_grid_lists() -> None:
    org = default_org()
    areas = list(org.areas.values())
    broken = [areas[0].__class__(areas[0].id, "X", "X", ("grid-01",)), *areas[1:]]
    with pytest.raises(OrgError, match="area-renxi"):
        Organisation(org.centre, broken, org.grids.values())
