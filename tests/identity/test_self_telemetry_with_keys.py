"""``sirius up`` keeps tracing itself after the first database key turns authentication on.

Its self-telemetry sends to its own ingestion service; once a key exists, requests without one
are refused, so the stack gives its sink a key valid in that process only.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from waiting import wait_until


@pytest.fixture
def up(pg_dsn: str) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    with reachable_tmp_dir("sirius-keys-self-") as data_dir:
        env = embedded_env(self_telemetry=True)
        env["MICROMEGAS_SQL_CONNECTION_STRING"] = pg_dsn
        proc = subprocess.Popen(
            [*SIRIUS, "up", "--self-telemetry", "--data-dir", str(data_dir / "data"), *ZERO_PORTS],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            yield read_up_banner(proc).urls, env
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_self_telemetry_is_delivered_once_database_keys_require_credentials(
    up: tuple[dict[str, str], dict[str, str]],
) -> None:
    urls, env = up
    minted = subprocess.run(
        # an admin: the stack's own telemetry (every caller's audit lines) is stamped with the
        # audience ``sirius``, which other readers do not see
        [*SIRIUS, "keys", "mint", "--kind", "analytics", "--name", "reader", "--admin", "--secret-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reader = minted.stdout.strip()
    client = FlightSQLClient(urls["flightsql"], auth_provider=StaticTokenAuthProvider(reader))
    # Anonymous queries are refused from now on: authentication is on.
    wait_until(
        "the stack to require keys",
        lambda: _refused(FlightSQLClient(urls["flightsql"])),
        timeout=5.0,
    )
    assert client.query("SELECT 4242 AS after_keys")["after_keys"].tolist() == [4242]

    def audited() -> bool:
        # The query's audit line reaches the lake only through the stack's own (keyed) sink.
        rows = client.query(
            "SELECT msg FROM log_entries WHERE exe = 'sirius' AND target = 'flightsql_query_audit' "
            "AND msg LIKE '%SELECT 4242 AS after_keys%'"
        )
        return len(rows) > 0

    wait_until("the stack's self-telemetry to deliver with authentication on", audited, timeout=90)

    # A reader that is not an admin does not see Sirius's own telemetry (other callers' queries).
    other = subprocess.run(
        [*SIRIUS, "keys", "mint", "--kind", "analytics", "--name", "team-reader", "--audience", "team-a",
         "--secret-only"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    team = FlightSQLClient(urls["flightsql"], auth_provider=StaticTokenAuthProvider(other))
    wait_until("the team reader's key to work", lambda: not _refused(team), timeout=10)
    sirius_rows = "SELECT count(*) AS n FROM log_entries WHERE exe = 'sirius'"
    assert client.query(sirius_rows)["n"].tolist()[0] > 0
    assert team.query(sirius_rows)["n"].tolist() == [0]


def _refused(client: FlightSQLClient) -> bool:
    try:
        client.query("SELECT 1")
    except Exception as exc:  # the refusal is what the probe looks at
        return "invalid token" in str(exc)
    return False
