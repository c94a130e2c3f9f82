"""Explore's pages and keys on the gateway port: the SPA fallback, static files, and API keys."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _http import request
from conftest import ExploreLake

from sirius.flight.explore._static import STATIC_DIR, asset_version, index_html

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
    assert body == index_html()
    # the same page with its asset links versioned
    assert body.replace(f"/explore/static/@{asset_version()}/".encode(), b"/explore/static/") == INDEX


def test_versioned_assets_are_cached_and_keep_their_version(explore_lake: ExploreLake) -> None:
    version = asset_version()
    assert f'src="/explore/static/@{version}/app.js"'.encode() in index_html()
    parts = urlsplit(explore_lake.gateway)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    for path, cache in (
        (f"/explore/static/@{version}/dom.js", "public, max-age=31536000, immutable"),
        ("/explore/static/@0123abcd/dom.js", "no-cache"),  # an older version: today's file, not kept
        ("/explore/static/dom.js", "no-cache"),
    ):
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, path
        assert response.getheader("Cache-Control") == cache, path
        assert response.read() == (STATIC_DIR / "dom.js").read_bytes()
    conn.request("GET", f"/explore/static/@{version}/../_api.py")
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    conn.close()


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
    assert missing.json() == {"error": "this server needs an API key (send Authorization: Bearer <key>)"}
    wrong = request(gateway + "/explore/api/services", key="nope")
    assert wrong.status == 401
    assert wrong.json() == {"error": "invalid token"}
    allowed = request(gateway + "/explore/api/services", key="s3cret")
    assert allowed.status == 200
    assert allowed.json()["data"]["services"] == []
    sql = request(gateway + "/explore/api/sql", method="POST", body={"sql": "SELECT 1 AS one"})
    assert sql.status == 401
    sql = request(gateway + "/explore/api/sql", method="POST", body={"sql": "SELECT 1 AS one"}, key="s3cret")
    assert sql.json()["data"]["rows"] == [[1]]
    # Pages hold no data: no key needed.
    status, content_type, body = raw_get(gateway, "/trace/0123456789abcdef0123456789abcdef")
    assert (status, body) == (200, index_html())
    assert content_type.startswith("text/html")
    # The terminal companions send the key as sirius query does (flag or MICROMEGAS_API_KEY).
    from cli_subprocess import SIRIUS, embedded_env

    flightsql = next(e.url for e in stack.endpoints if e.name == "flightsql")
    env = embedded_env(keep_otel=False)
    refused = subprocess.run(
        [*SIRIUS, "services", "--uri", flightsql], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "sirius services:" in refused.stderr
    accepted = subprocess.run(
        [*SIRIUS, "services", "--uri", flightsql],
        env=env | {"MICROMEGAS_API_KEY": "s3cret"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "no services in this range" in accepted.stdout


def test_sirius_up_prints_and_serves_explore() -> None:
    from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir

    with reachable_tmp_dir("sirius-explore-up-") as root:
        proc = subprocess.Popen(
            [*SIRIUS, "up", "--fast-unsafe", "--data-dir", str(root / "data"), *ZERO_PORTS],
            env=embedded_env(keep_otel=False),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            explore = None
            for line in proc.stdout:
                if line.startswith("open Explore in a browser: "):
                    explore = line.split(": ", 1)[1].strip()
                if line.startswith("sirius is up"):
                    break
            assert explore is not None
            assert explore.startswith("http://127.0.0.1:")
            assert explore.endswith("/")
            status, content_type, body = raw_get(explore, "/")
            assert (status, body) == (200, index_html())
            assert content_type.startswith("text/html")
            services = request(explore + "explore/api/services")
            assert services.status == 200
            assert services.json()["data"]["services"] == []
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_sirius_gateway_serves_explore(explore_lake: ExploreLake) -> None:
    from cli_subprocess import SIRIUS, embedded_env

    proc = subprocess.Popen(
        [*SIRIUS, "gateway", "--host", "127.0.0.1", "--port", "0", "--flight-uri", explore_lake.flightsql],
        env=embedded_env(keep_otel=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("gateway ")
        root = line.split()[1].removesuffix("/gateway")
        status, _content_type, body = raw_get(root, "/service/inventory")
        assert (status, body) == (200, index_html())
        services = request(root + "/explore/api/services").json()["data"]["services"]
        assert "inventory" in {s["service"] for s in services}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
