"""``sirius up`` as a user runs it: a subprocess on the embedded default, stopped by signals."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # test_embedded_postgres.py covers both start methods explicitly.
    with reachable_tmp_dir("sirius-up-") as path:
        yield path / "data"


def test_up_smoke_on_the_embedded_default(data_dir: Path) -> None:
    result = subprocess.run(
        [*SIRIUS, "up", "--smoke", "--data-dir", str(data_dir), *ZERO_PORTS],
        env=embedded_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke: OK - 3 streams, 3 blocks, 9 events stored and decoded" in result.stdout
    assert any((data_dir / "objects" / "blobs").rglob("*")), "block objects are in the local store"


def _start(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [*SIRIUS, "up", "--data-dir", str(data_dir), *ZERO_PORTS],
        env=embedded_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    endpoints = read_up_banner(proc).urls
    assert set(endpoints) == {"ingestion", "otlp-grpc", "otlp-http", "flightsql", "gateway"}
    return proc, endpoints


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_until_a_signal_then_stops_cleanly(data_dir: Path, sig: signal.Signals) -> None:
    proc, urls = _start(data_dir)
    try:
        with urllib.request.urlopen(f"{urls['ingestion']}/ready", timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{urls['gateway']}/health", timeout=30) as response:
            assert response.status == 200
        query = subprocess.run(
            [*SIRIUS, "query", "SELECT count(*) AS n FROM processes", "--uri", urls["flightsql"], "--format", "csv"],
            env=embedded_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert query.returncode == 0, query.stderr
        assert query.stdout.splitlines()[0] == "n"
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "sirius stopped" in out
    # The store is consistent: a second start on the same directory reuses the cluster.
    proc, urls = _start(data_dir)
    try:
        with urllib.request.urlopen(f"{urls['ingestion']}/ready", timeout=30) as response:
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_migrate_needs_a_database() -> None:
    result = subprocess.run(
        [*SIRIUS, "migrate"], env=embedded_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "MICROMEGAS_SQL_CONNECTION_STRING" in result.stderr


def test_migrate_against_a_database(pg_dsn: str) -> None:
    env = {**embedded_env(), "MICROMEGAS_SQL_CONNECTION_STRING": pg_dsn}
    for _ in range(2):  # idempotent
        result = subprocess.run([*SIRIUS, "migrate"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "schema is up to date" in result.stdout


def test_ingest_refuses_a_public_bind_without_keys(pg_dsn: str, tmp_path: Path) -> None:
    env = {
        **embedded_env(),
        "MICROMEGAS_SQL_CONNECTION_STRING": pg_dsn,
        "MICROMEGAS_OBJECT_STORE_URI": tmp_path.as_uri(),
    }
    result = subprocess.run(
        [*SIRIUS, "ingest", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--disable-auth" in result.stderr
