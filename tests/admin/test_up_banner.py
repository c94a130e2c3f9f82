"""What ``sirius up`` prints works as printed: the gateway URL answers, the export lines point at it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sirius.admin._stack import Endpoint
from sirius.admin._up_banner import client_exports, service_lines

SIRIUS = [sys.executable, "-m", "sirius.admin.cli"]
ZERO_PORTS = [
    arg for name in ("ingestion", "otlp-grpc", "otlp-http", "flight", "gateway") for arg in (f"--{name}-port", "0")
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}


@pytest.fixture
def up() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A running ``sirius up`` on free ports: (service URLs, exported variables) as it printed them."""
    root = Path(tempfile.mkdtemp(prefix="sirius-banner-", dir="/tmp"))
    os.chmod(root, 0o755)  # the postgres OS user must reach the embedded cluster when run as root
    proc = subprocess.Popen(
        [*SIRIUS, "up", "--data-dir", str(root / "data"), *ZERO_PORTS],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    exported: dict[str, str] = {}
    try:
        for line in proc.stdout:  # blocks until the line is printed: no sleeps
            if line.startswith("sirius is up"):
                break
            words = line.split()
            if words[:1] == ["export"]:
                exported.update(word.split("=", 1) for word in shlex.split(line)[1:])
            elif len(words) == 2 and not exported:
                urls[words[0]] = words[1]
        else:
            pytest.fail(f"sirius up ended early (exit {proc.wait(60)})")
        yield urls, exported
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_printed_urls_answer_and_exports_point_at_them(up: tuple[dict[str, str], dict[str, str]]) -> None:
    urls, exported = up
    assert set(urls) == {"ingestion", "otlp-grpc", "otlp-http", "flightsql", "gateway"}

    # The gateway line is a URL that answers a plain GET (a browser), describing the query route.
    with urllib.request.urlopen(urls["gateway"], timeout=30) as response:
        assert response.status == 200
        assert "POST /gateway/query" in json.loads(response.read())["routes"]

    # OTEL_EXPORTER_OTLP_ENDPOINT + protocol: the SDK posts to <endpoint>/v1/traces over HTTP.
    assert exported["OTEL_EXPORTER_OTLP_ENDPOINT"] == urls["otlp-http"]
    assert exported["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    request = urllib.request.Request(
        f"{exported['OTEL_EXPORTER_OTLP_ENDPOINT']}/v1/traces",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200

    assert exported["MICROMEGAS_TELEMETRY_URL"] == urls["ingestion"]
    with urllib.request.urlopen(f"{exported['MICROMEGAS_TELEMETRY_URL']}/health", timeout=30) as response:
        assert response.status == 200

    # With the exported MICROMEGAS_ANALYTICS_URI, `sirius query` needs no --uri.
    assert exported["MICROMEGAS_ANALYTICS_URI"] == urls["flightsql"]
    query = subprocess.run(
        [*SIRIUS, "query", "SELECT 1 AS one", "--format", "csv"],
        env={**_env(), "MICROMEGAS_ANALYTICS_URI": exported["MICROMEGAS_ANALYTICS_URI"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == ["one", "1"]


def test_banner_lines() -> None:
    endpoints = [
        Endpoint("ingestion", "http://127.0.0.1:9000"),
        Endpoint("otlp-http", "http://127.0.0.1:4318"),
        Endpoint("flightsql", "grpc://127.0.0.1:50051"),
    ]
    assert service_lines(endpoints)[0] == "ingestion    http://127.0.0.1:9000"
    assert client_exports(endpoints) == [
        "export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        "export MICROMEGAS_TELEMETRY_URL=http://127.0.0.1:9000",
        "export MICROMEGAS_ANALYTICS_URI=grpc://127.0.0.1:50051",
    ]
