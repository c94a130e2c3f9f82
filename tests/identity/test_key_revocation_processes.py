"""A key revoked with ``sirius keys revoke`` stops working on separately running services.

``sirius ingest`` and ``sirius flight`` run as their own processes over one database, as in a
deployment; keys are minted and revoked by ``sirius keys`` in yet other processes. Nothing is
restarted: the services learn of the revocation from PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_subprocess import SIRIUS, embedded_env
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from native_samples import sample_process
from pyarrow import flight
from waiting import wait_until

from sirius.tracing import process_info_to_cbor

STATED_DELAY_SECONDS = 5.0


@pytest.fixture
def service_env(pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    env = embedded_env()
    env["MICROMEGAS_SQL_CONNECTION_STRING"] = pg_dsn
    env["MICROMEGAS_OBJECT_STORE_URI"] = (tmp_path / "objects").as_uri()
    return env


def _start(argv: list[str], env: dict[str, str], service: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``sirius <argv>`` and return it with the URL it printed for ``service``."""
    proc = subprocess.Popen([*SIRIUS, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # each line arrives when printed
        words = line.split()
        if words[:1] == [service]:
            return proc, words[1]
    proc.wait(30)
    pytest.fail(f"sirius {argv[0]} ended before listening: {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture
def services(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    started: list[subprocess.Popen[str]] = []
    try:
        ingest, ingestion_url = _start(["ingest", "--host", "127.0.0.1", "--port", "0"], service_env, "ingestion")
        started.append(ingest)
        flight_proc, flight_uri = _start(["flight", "--host", "127.0.0.1", "--port", "0"], service_env, "flightsql")
        started.append(flight_proc)
        yield {"ingestion": ingestion_url, "flightsql": flight_uri}
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(30)


def _keys(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run([*SIRIUS, "keys", *argv], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _native(url: str, key: str) -> int:
    headers = {"Content-Type": "application/cbor", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{url}/ingestion/insert_process", process_info_to_cbor(sample_process()), headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _query(uri: str, key: str) -> object:
    try:
        return FlightSQLClient(uri, auth_provider=StaticTokenAuthProvider(key)).query("SELECT 1 AS one")
    except Exception as exc:  # the refusal is what the test looks at
        return exc


def test_services_in_other_processes_refuse_a_revoked_key_without_a_restart(
    services: dict[str, str], service_env: dict[str, str]
) -> None:
    writer = _keys(service_env, "mint", "--kind", "ingestion", "--name", "deploy-writer", "--secret-only").strip()
    reader = _keys(service_env, "mint", "--kind", "analytics", "--name", "deploy-reader", "--secret-only").strip()
    wait_until("the writer to be accepted", lambda: _native(services["ingestion"], writer) == 200, timeout=10)
    wait_until(
        "the reader to be accepted",
        lambda: not isinstance(_query(services["flightsql"], reader), Exception),
        timeout=10,
    )

    listed = [json.loads(line) for line in _keys(service_env, "list", "--json").splitlines()]
    for record in listed:
        _keys(service_env, "revoke", record["key_id"])
    revoked_at = time.monotonic()  # both revocations committed

    def refused() -> bool:
        answer = _query(services["flightsql"], reader)
        revoked = isinstance(answer, flight.FlightUnauthenticatedError) and "has been revoked" in str(answer)
        return revoked and _native(services["ingestion"], writer) == 401

    wait_until("both services to refuse the revoked keys", refused, timeout=STATED_DELAY_SECONDS)
    assert time.monotonic() - revoked_at < STATED_DELAY_SECONDS
