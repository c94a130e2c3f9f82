"""What ``sirius up`` prints works as printed: the gateway URL answers, the export lines point at it."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner

from sirius.admin._stack import Endpoint
from sirius.admin._up_banner import client_exports, service_lines


@pytest.fixture
def up() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A running ``sirius up`` on free ports: (service URLs, exported variables) as it printed them."""
    with reachable_tmp_dir("sirius-banner-") as root:
        proc = subprocess.Popen(
            [*SIRIUS, "up", "--data-dir", str(root / "data"), *ZERO_PORTS],
            env=embedded_env(keep_otel=False),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            banner = read_up_banner(proc)
            yield banner.urls, banner.exports
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


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
        env={**embedded_env(keep_otel=False), "MICROMEGAS_ANALYTICS_URI": exported["MICROMEGAS_ANALYTICS_URI"]},
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
