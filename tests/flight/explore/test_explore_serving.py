"""Explore's pages and keys on the gateway port: the SPA fallback, static files, and API keys."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _http import request
from conftest import ExploreLake

from sirius.flight.explore._static import STATIC_DIR

INDEX = (STATIC_DIR / "index.html").read_bytes()


def raw_get(base: str, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/services",
        "/service/checkout-api",
        "/traces?service=inventory&status=error",
        "/trace/0123456789abcdef0123456789abcdef",
        "/logs?live=1",
        "/metrics",
        "/processes",
        "/process/00000000-0000-0000-0000-000000000001",
        "/sql?q=SELECT%201",
        "/trace/0123456789abcdef0123456789abcdef/",
    ],
)
def test_page_paths_answer_index_html(explore_lake: ExploreLake, path: str) -> None:
    status, content_type, body = raw_get(explore_lake.gateway, path)
    assert status == 200
    assert content_type.startswith("text/html")
    assert body == INDEX


def test_static_files_with_their_content_types(explore_lake: ExploreLake) -> None:
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}
    expected = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    checked = 0
    for name, path in files.items():
        if path.suffix not in expected:
            continue
        status, content_type, body = raw_get(explore_lake.gateway, f"/explore/static/{name}")
        assert status == 200, name
        assert content_type.split(";")[0] == expected[path.suffix], name
        assert body == path.read_bytes()
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize(
    "path",
    [
        "/explore/static/../../_api.py",
        "/explore/static/../_api.py",
        "/explore/static/%2e%2e/_api.py",
        "/explore/static/..%2f_api.py",
        "/explore/static//etc/passwd",
        "/explore/static/",
        "/explore/static/no-such-file.js",
    ],
)
def test_static_refuses_paths_outside_its_directory(explore_lake: ExploreLake, path: str) -> None:
    status, _content_type, body = raw_get(explore_lake.gateway, path)
    assert status == 404
    assert b"import" not in body
    assert b"root:" not in body


def test_gateway_routes_still_answer(explore_lake: ExploreLake) -> None:
    assert request(explore_lake.url("/gateway/health")).body == b"OK"
    assert "POST /gateway/query" in request(explore_lake.url("/gateway")).json()["routes"]
    unknown = request(explore_lake.url("/explore/api/nothing"))
    assert unknown.status == 404
    assert "no such API route" in unknown.json()["error"]


def test_api_keys(stack_factory: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROMEGAS_API_KEYS", json.dumps([{"name": "tests", "key": "s3cret"}]))
    stack = stack_factory()  # type: ignore[operator]
    gateway = next(e.url for e in stack.endpoints if e.name == "gateway").removesuffix("/gateway")
    missing = request(gateway + "/explore/api/services")
    assert missing.status == 401
    assert missing.json() == {"error": "invalid token"}
    wrong = request(gateway + "/explore/api/services", key="nope")
    assert wrong.status == 401
    allowed = request(gateway + "/explore/api/services", key="s3cret")
    assert allowed.status == 200
    assert allowed.json()["data"]["services"] == []
    sql = request(gateway + "/explore/api/sql", method="POST", body={"sql": "SELECT 1 AS one"})
    assert sql.status == 401
    sql = request(gateway + "/explore/api/sql", method="POST", body={"sql": "SELECT 1 AS one"}, key="s3cret")
    assert sql.json()["data"]["rows"] == [[1]]
    # Pages hold no data: no key needed.
    status, content_type, body = raw_get(gateway, "/trace/0123456789abcdef0123456789abcdef")
    assert (status, body) == (200, INDEX)
    assert content_type.startswith("text/html")
