"""The console's own routes: the org as GeoJSON (scoped), its settings, /docs, /static, and the
tile server in the page's CSP."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.api import create_app
from gateway.api.console_settings import ConsoleSettings, TileUrlError, check_tile_url, tile_origin
from gateway.api.services.org_map import outline
from gateway.service import GatewayService, ServiceConfig
from tests.gateway.signin import client, sign_in
from xixin.cli import build_parser


@pytest.fixture
def service(tmp_path: Path) -> Iterator[GatewayService]:
    opened = GatewayService(ServiceConfig(data_dir=tmp_path))
    try:
        yield opened
    finally:
        opened.close()


def test_outline_of_two_squares_sharing_an_edge_is_their_rectangle() -> None:
    left = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    right = [(1.0, 0.0), (2.0, 0.0), (2.0, 1.0), (1.0, 1.0), (1.0, 0.0)]
    lines = outline([left, right])
    edges = {frozenset(pair) for line in lines for pair in itertools.pairwise(line)}
    assert frozenset({(1.0, 0.0), (1.0, 1.0)}) not in edges  # the shared edge is inside
    assert len(edges) == 6
    assert sum(len(line) - 1 for line in lines) == 6


def test_org_is_scoped_geojson_with_names(service: GatewayService) -> None:
    with client(create_app(service)) as http:
        assert http.get("/api/org").status_code == 401
        sign_in(http, service, "grid:grid-01")
        org = http.get("/api/org").json()
        assert org["type"] == "FeatureCollection"
        kinds = [(f["properties"]["kind"], f["properties"]["id"]) for f in org["features"]]
        assert kinds == [("grid", "grid-01"), ("area", "area-renxi")]
        grid = org["features"][0]
        assert grid["geometry"]["type"] == "Polygon"
        assert grid["properties"]["name_zh"] == "民盛社区"
        first = grid["geometry"]["coordinates"][0][0]
        assert first == list(service.org.grids["grid-01"].polygon[0])
        sign_in(http, service, "centre")
        org = http.get("/api/org").json()
        areas = [f for f in org["features"] if f["properties"]["kind"] == "area"]
        grids = [f for f in org["features"] if f["properties"]["kind"] == "grid"]
        assert len(grids) == 13 and len(areas) == 3
        # adjacent grids of an area: one closed outline each, none of the inner edges
        for area in areas:
            lines = area["geometry"]["coordinates"]
            assert len(lines) == 1 and lines[0][0] == lines[0][-1]


def test_docs_and_static_and_config(service: GatewayService) -> None:
    with client(create_app(service)) as http:
        answer = http.get("/docs", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        assert http.get("/api/console/config").status_code == 401
        assert http.get("/static/vendor/leaflet/leaflet.js").status_code == 200
        assert http.get("/static/console.js").headers["content-type"].startswith("text/javascript")
        assert http.get("/static/../app.py").status_code == 404
        sign_in(http, service, "grid:grid-01")
        page = http.get("/docs")
        assert page.status_code == 200
        assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
        assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
        assert http.get("/api/console/config").json() == {"map_tiles": None, "map_attribution": ""}
        assert "img-src 'self' data:;" in http.get("/").headers["content-security-policy"]


def test_a_tile_server_is_in_the_config_and_the_csp(service: GatewayService) -> None:
    settings = ConsoleSettings("https://{s}.tiles.example/{z}/{x}/{y}.png", "© Example")
    with client(create_app(service, console_settings=settings)) as http:
        csp = http.get("/login").headers["content-security-policy"]
        assert "img-src 'self' data: https://*.tiles.example;" in csp
        sign_in(http, service, "viewer")
        config = http.get("/api/console/config").json()
        assert config["map_tiles"] == settings.map_tiles


@pytest.mark.parametrize(
    "url",
    ["ftp://x/{z}/{x}/{y}", "https://x/tiles", "https://x/{z}/{x}/{y}.png'; script-src *", "x"],
)
def test_bad_tile_urls_are_refused(url: str) -> None:
    with pytest.raises(TileUrlError):
        check_tile_url(url)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--map-tiles", url])


def test_up_takes_a_tile_url() -> None:
    url = "http://127.0.0.1:9000/{z}/{x}/{y}.png"
    args = build_parser().parse_args(["up", "--map-tiles", url])
    assert isinstance(args, argparse.Namespace) and args.map_tiles == url
    assert tile_origin(url) == "http://127.0.0.1:9000"
    assert build_parser().parse_args(["up"]).map_tiles is None
