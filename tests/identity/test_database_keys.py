"""Database keys end to end: minted with ``sirius keys``, used by real clients on a running stack, revoked.

Each test runs ``sirius up``'s stack (native ingestion, OTLP gRPC and HTTP, FlightSQL, the gateway)
over its own PostgreSQL database. Keys are minted and revoked with the ``sirius keys`` command;
clients are the ones users run: plain HTTP to the native routes, the OpenTelemetry SDK exporters
with an ``authorization`` header, the ``micromegas`` FlightSQL client, and HTTP to the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # _audience_lake, a helper of this folder

from _audience_lake import export_spans, gateway_query
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from native_samples import sample_process
from pyarrow import flight
from waiting import wait_until

from sirius.admin.cli import main
from sirius.tracing import process_info_to_cbor

# The longest a change may go unseen should PostgreSQL's notification be lost (the default TTL).
STATED_DELAY_SECONDS = 5.0


class Keys:
    """``sirius keys …`` against the test's database, as an operator runs it."""

    def __init__(self, dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.dsn = dsn
        self._capsys = capsys

    def run(self, *argv: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        code = main(["keys", "--sql-connection-string", self.dsn, "--by", "test", *argv])
        captured = self._capsys.readouterr()
        return code, captured.out, captured.err

    def mint(self, kind: str, name: str, *extra: str) -> str:
        code, out, err = self.run("mint", "--kind", kind, "--name", name, "--secret-only", *extra)
        assert code == 0, err
        return out.strip()

    def key_id(self, name: str) -> str:
        code, out, _ = self.run("list", "--json")
        assert code == 0
        return next(record["key_id"] for record in map(json.loads, out.splitlines()) if record["name"] == name)


@pytest.fixture
def keys(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> Keys:
    return Keys(pg_dsn, capsys)


def _urls(stack: Any) -> dict[str, str]:
    return {endpoint.name: endpoint.url for endpoint in stack.endpoints}


def _native(urls: dict[str, str], key: str | None) -> int:
    """Status of ``POST /ingestion/insert_process`` with a real process record."""
    headers = {"Content-Type": "application/cbor"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = process_info_to_cbor(sample_process())
    request = urllib.request.Request(f"{urls['ingestion']}/ingestion/insert_process", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _flight(urls: dict[str, str], key: str | None, sql: str = "SELECT 1 AS one") -> Any:
    """The ``micromegas`` client's answer to ``sql``, or the error it raised."""
    provider = StaticTokenAuthProvider(key) if key is not None else None
    try:
        return FlightSQLClient(urls["flightsql"], auth_provider=provider).query(sql)
    except Exception as exc:  # the refusal is what the tests look at
        return exc


def _unauthenticated(result: Any, reason: str = "") -> bool:
    return isinstance(result, flight.FlightUnauthenticatedError) and reason in str(result)


def _accepted_everywhere(urls: dict[str, str], ingestion: str, analytics: str) -> bool:
    return _native(urls, ingestion) == 200 and not isinstance(_flight(urls, analytics), Exception)


def test_minted_keys_work_on_their_own_services_and_nowhere_else(stack_factory, keys: Keys) -> None:
    stack = stack_factory(daemon=False)
    urls = _urls(stack)
    assert _native(urls, None) == 200  # no credential configured yet: authentication is off

    writer = keys.mint("ingestion", "collector-a", "--audience", "team-a")
    reader = keys.mint("analytics", "dashboards")
    assert writer.startswith("mmk_")
    assert reader.startswith("mmk_")
    # The running stack learns of the keys without a restart, and from then on requires one.
    wait_until("the stack to require keys", lambda: _native(urls, None) == 401, timeout=STATED_DELAY_SECONDS)

    # The ingestion key writes through every ingestion listener ...
    assert _native(urls, writer) == 200
    assert export_spans(urls, writer, "keys-http", "http") == "SUCCESS"
    assert export_spans(urls, writer, "keys-grpc", "grpc") == "SUCCESS"
    # ... and reads nothing.
    assert _unauthenticated(_flight(urls, writer), "'collector-a' is an ingestion key")
    assert gateway_query(urls, writer)[0] == 401

    # The analytics key reads (FlightSQL and the gateway) and writes nothing.
    assert _flight(urls, reader)["one"].tolist() == [1]
    assert gateway_query(urls, reader) == (200, [{"one": 1}])
    assert _native(urls, reader) == 401
    assert export_spans(urls, reader, "keys-http", "http") == "FAILURE"
    assert export_spans(urls, reader, "keys-grpc", "grpc") == "FAILURE"

    # A made-up key and no key are refused everywhere.
    forged = "mmk_" + "A" * 43
    assert _native(urls, forged) == 401
    assert export_spans(urls, None, "keys-http", "http") == "FAILURE"
    assert _unauthenticated(_flight(urls, forged), "invalid token")
    assert _unauthenticated(_flight(urls, None), "invalid token")
    status, body = gateway_query(urls, None)
    assert status == 401
    assert "needs an API key" in body["error"]

    rows = stack.call(stack.stack.lake.pool.fetch("SELECT exe FROM processes ORDER BY exe"))
    assert {"keys-http", "keys-grpc"} <= {row["exe"] for row in rows}


def test_a_revoked_key_is_refused_by_every_running_service_within_the_stated_delay(stack_factory, keys: Keys) -> None:
    # Two stacks over one database: two sets of services, each with its own key store.
    first, second = _urls(stack_factory(daemon=False)), _urls(stack_factory(daemon=False))
    writer = keys.mint("ingestion", "rotating-writer")
    reader = keys.mint("analytics", "rotating-reader")
    for urls in (first, second):
        wait_until("the minted keys to work", lambda u=urls: _accepted_everywhere(u, writer, reader), timeout=10)

    revoked_at = time.monotonic()
    for name in ("rotating-writer", "rotating-reader"):
        code, out, _ = keys.run("revoke", keys.key_id(name))
        assert code == 0
        assert "revoked" in out

    def refused_everywhere() -> bool:
        return all(
            _native(urls, writer) == 401 and _unauthenticated(_flight(urls, reader), "has been revoked")
            for urls in (first, second)
        )

    wait_until("every service to refuse the revoked keys", refused_everywhere, timeout=STATED_DELAY_SECONDS)
    elapsed = time.monotonic() - revoked_at
    assert elapsed < STATED_DELAY_SECONDS
    assert export_spans(first, writer, "keys-grpc", "grpc") == "FAILURE"
    status, body = gateway_query(second, reader)
    assert status == 401
    assert "revoked" in body["error"]


def test_a_revocation_without_notification_is_seen_within_the_cache_ttl(
    stack_factory, keys: Keys, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROMEGAS_API_KEY_CACHE_TTL_SECONDS", "1")
    urls = _urls(stack_factory(daemon=False))
    writer = keys.mint("ingestion", "quiet-writer")
    wait_until("the minted key to work", lambda: _native(urls, writer) == 200, timeout=10)

    async def revoke_silently() -> None:
        # Triggers off for this session: no NOTIFY reaches the services, only the TTL reload can.
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("UPDATE ingestion_api_keys SET revoked_at = now(), revoked_by = 'psql'")
        finally:
            await conn.close()

    asyncio.run(revoke_silently())
    revoked_at = time.monotonic()
    wait_until("the TTL reload to drop the key", lambda: _native(urls, writer) == 401, timeout=3.0)
    assert time.monotonic() - revoked_at < 3.0


def test_environment_keys_keep_working_beside_database_keys(
    stack_factory, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROMEGAS_API_KEYS", json.dumps([{"name": "legacy", "key": "legacy-secret"}]))
    urls = _urls(stack_factory(daemon=False))
    assert _native(urls, None) == 401  # environment keys: enforced from the start
    reader = keys.mint("analytics", "new-reader")
    wait_until("the database key to work", lambda: not isinstance(_flight(urls, reader), Exception), timeout=10)
    # The environment key still works on both sides, as before database keys existed.
    assert _native(urls, "legacy-secret") == 200
    assert export_spans(urls, "legacy-secret", "keys-grpc", "grpc") == "SUCCESS"
    assert _flight(urls, "legacy-secret")["one"].tolist() == [1]
    assert gateway_query(urls, "legacy-secret")[0] == 200
    # Once database keys exist the deployment is no longer environment-keys-only: the legacy key
    # is not an admin unless named.
    refused = _flight(urls, "legacy-secret", "SELECT * FROM list_query_denials()")
    assert isinstance(refused, flight.FlightUnauthorizedError)


def test_admin_functions_are_refused_to_non_admins_with_permission_denied(
    stack_factory, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROMEGAS_ADMINS", json.dumps(["auditor"]))
    urls = _urls(stack_factory(daemon=False))
    viewer = keys.mint("analytics", "viewer")
    boss = keys.mint("analytics", "boss", "--admin")  # joins the stored admins group
    auditor = keys.mint("analytics", "auditor")  # named in MICROMEGAS_ADMINS
    wait_until("the keys to work", lambda: not isinstance(_flight(urls, auditor), Exception), timeout=10)

    admin_sql = {
        "retire_partitions": "SELECT * FROM retire_partitions('log_entries', 'global', now() - INTERVAL '1 hour', now())",
        "deny_queries": "SELECT * FROM deny_queries('client = ''x''', 'why')",
        "list_query_denials": "SELECT * FROM list_query_denials()",
        "DROP MATERIALIZED VIEW": "DROP MATERIALIZED VIEW IF EXISTS some_view",
    }
    for name, sql in admin_sql.items():
        refused = _flight(urls, viewer, sql)
        assert isinstance(refused, flight.FlightUnauthorizedError), (name, refused)  # PERMISSION_DENIED
        assert f"permission denied: {name} is reserved to lakehouse administrators" in str(refused)
    status, body = gateway_query(urls, viewer, admin_sql["list_query_denials"])
    assert status == 403
    assert "reserved to lakehouse administrators" in body["error"]
    # Ordinary queries are the viewer's as before.
    assert _flight(urls, viewer)["one"].tolist() == [1]

    for admin in (boss, auditor):
        listed = _flight(urls, admin, admin_sql["list_query_denials"])
        assert not isinstance(listed, Exception), listed
    code, out, _ = keys.run("group", "list", "admins")
    assert (code, out) == (0, "admins\tboss\n")
    # Leaving the group takes the rights away from the running services.
    assert keys.run("group", "remove", "admins", "boss")[0] == 0
    wait_until(
        "boss to lose admin rights",
        lambda: isinstance(_flight(urls, boss, admin_sql["list_query_denials"]), flight.FlightUnauthorizedError),
        timeout=STATED_DELAY_SECONDS,
    )


def test_only_the_sha256_of_a_secret_is_stored(keys: Keys, pg_dsn: str) -> None:
    secrets = {kind: keys.mint(kind, f"{kind}-hashed") for kind in ("ingestion", "analytics")}

    async def rows() -> dict[str, list[asyncpg.Record]]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return {
                kind: await conn.fetch(f"SELECT key_hash, row_to_json(k)::text AS everything FROM {kind}_api_keys k")
                for kind in secrets  # constant table names
            }
        finally:
            await conn.close()

    stored = asyncio.run(rows())
    for kind, secret in secrets.items():
        assert len(secret) == 4 + 43  # mmk_ and 32 random bytes in base64url
        (row,) = stored[kind]
        assert bytes(row["key_hash"]) == hashlib.sha256(secret.encode()).digest()
        assert secret not in row["everything"]
        assert secret.removeprefix("mmk_") not in row["everything"]
    code, out, _ = keys.run("list", "--all")
    assert code == 0
    assert "ingestion-hashed" in out
    assert not any(secret in out for secret in secrets.values())


def test_import_carries_environment_keys_into_the_database(
    keys: Keys, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    keyring = [{"name": "old-agent", "key": "agent-secret", "audience": "team-b"}, {"name": "old-ci", "key": "ci"}]
    monkeypatch.setenv("MICROMEGAS_API_KEYS", json.dumps(keyring))
    code, out, _ = keys.run("import", "--kind", "ingestion", "--exclude", "old-ci")
    assert code == 0
    assert "old-agent: imported" in out
    assert "old-ci" not in out
    code, out, _ = keys.run("import", "--kind", "ingestion")
    assert code == 0
    assert "old-agent: already present" in out
    assert "old-ci: imported" in out

    path = tmp_path / "keyring.json"
    path.write_text(json.dumps([{"name": "reader", "key": "r", "audience": "x"}]))
    code, _, err = keys.run("import", "--kind", "analytics", "--source", "file", "--path", str(path))
    assert code == 2
    assert "only valid with --kind ingestion" in err

    code, out, _ = keys.run("list", "--json")
    listed = {record["name"]: record for record in map(json.loads, out.splitlines())}
    assert set(listed) == {"old-agent", "old-ci"}
    assert listed["old-agent"]["audiences"] == ["team-b"]
    assert listed["old-ci"]["audiences"] == ["public"]

    # A revoked key is not revived by importing it again, and the import says so.
    assert keys.run("revoke", listed["old-ci"]["key_id"])[0] == 0
    code, out, _ = keys.run("import", "--kind", "ingestion", "--only", "old-ci")
    assert code == 1
    assert "already present (revoked)" in out


def test_bad_requests_change_nothing(keys: Keys) -> None:
    for argv, reason in (
        (("mint", "--kind", "ingestion", "--name", "x", "--audience", "bad audience"), "audience 'bad audience'"),
        (("mint", "--kind", "ingestion", "--name", "x", "--audience", "a", "--audience", "b"), "exactly one"),
        (("mint", "--kind", "analytics", "--name", " "), "key name"),
        (("revoke", "not-a-uuid"), "is not a key id"),
        (("revoke", str(uuid.uuid4())), "no key"),
    ):
        code, _, err = keys.run(*argv)
        assert code == 2, (argv, err)
        assert reason in err, (argv, err)
    code, out, _ = keys.run("list", "--all", "--json")
    assert (code, out) == (0, "")
