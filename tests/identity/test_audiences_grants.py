"""Audiences beyond a key's own: unstamped data, and read grants (``MICROMEGAS_AUDIENCE_GRANTS``, ``audience_grants``).

Micromegas's rules, on a real stack: data written with a credential bound to no audience (an
environment key without ``"audience"``) is unstamped and counts as ``MICROMEGAS_UNSTAMPED_AUDIENCE``
(default ``public``, which every authenticated principal reads; empty: admins only). A grant
``{"team-b": ["user:<name>", "group:<g>"]}`` lets a principal read ``team-b`` by name or by a
stored group (``sirius keys group add``), without re-stamping anything; so does a row of
Micromegas's ``audience_grants`` table (read axis), seen by running services within the key TTL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _audience_lake import AudienceLake, Principal, build, daemon_pass, send_native
from waiting import wait_until

from sirius.admin.cli import main
from sirius.identity import AudienceGrants, IdentityConfigurationError
from sirius.identity import Principal as IdentityPrincipal

LEGACY_KEY = "legacy-key-without-audience"


def _processes(lake: AudienceLake, principal: Principal) -> set[str]:
    frame = lake.query(principal, "SELECT CAST(process_id AS STRING) AS p FROM processes")
    return set(frame["p"])


def _native_ids(lake: AudienceLake, audience: str) -> set[str]:
    return {i for i, owner in lake.owner.items() if owner == audience}


@pytest.mark.parametrize("unstamped", [None, ""], ids=["default-public", "fail-closed"])
def test_unstamped_data_is_public_by_default_and_admin_only_when_fail_closed(
    unstamped: str | None,
    stack_factory: Any,
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MICROMEGAS_API_KEYS", json.dumps([{"name": "legacy", "key": LEGACY_KEY}]))
    if unstamped is not None:
        monkeypatch.setenv("MICROMEGAS_UNSTAMPED_AUDIENCE", unstamped)
    lake = build(stack_factory, pg_dsn, capsys)
    legacy = send_native(lake.stack.url, LEGACY_KEY, "legacy")
    daemon_pass(lake.stack)
    reader_a, reader_b, admin = lake.readers
    assert legacy in _processes(lake, admin)
    for reader in (reader_a, reader_b):
        assert (legacy in _processes(lake, reader)) is (unstamped is None), reader.name
    log = f"SELECT count(*) AS n FROM view_instance('log_entries', '{legacy}')"
    expected = int(lake.query(admin, log, ranged=True)["n"].iloc[0])
    assert expected > 0
    assert int(lake.query(reader_a, log, ranged=True)["n"].iloc[0]) == (expected if unstamped is None else 0)


def test_read_grants_add_audiences_by_name_and_by_stored_group(
    stack_factory: Any, pg_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grants = {"team-b": ["user:reader-team-a"], "team-a": {"read": ["group:auditors"], "mint": []}}
    monkeypatch.setenv("MICROMEGAS_AUDIENCE_GRANTS", json.dumps(grants))
    lake = build(stack_factory, pg_dsn, capsys)
    daemon_pass(lake.stack)
    reader_a, reader_b, admin = lake.readers
    team_a, team_b = _native_ids(lake, "team-a"), _native_ids(lake, "team-b")
    process_ids = _processes(lake, admin)
    assert process_ids & team_a
    assert process_ids & team_b
    assert _processes(lake, reader_a) == process_ids & (team_a | team_b)  # its own, and team-b by name
    assert _processes(lake, reader_b) == process_ids & team_b

    capsys.readouterr()
    assert main(["keys", "--sql-connection-string", pg_dsn, "--by", "test", "group", "add", "auditors", "reader-team-b"]) == 0  # fmt: skip
    wait_until(
        "the stored group to grant team-a to reader-team-b",
        lambda: _processes(lake, reader_b) == process_ids & (team_a | team_b),
        timeout=10,
    )


def test_read_grants_stored_in_postgresql_are_seen_by_running_services(
    stack_factory: Any, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = build(stack_factory, pg_dsn, capsys)
    daemon_pass(lake.stack)
    reader_a, _, admin = lake.readers
    team_a, team_b = _native_ids(lake, "team-a"), _native_ids(lake, "team-b")
    process_ids = _processes(lake, admin)
    assert _processes(lake, reader_a) == process_ids & team_a

    # Micromegas's audience_grants table (read axis), as its web app writes it
    grant = "INSERT INTO audience_grants VALUES ('team-b', 'read', 'user:reader-team-a', now(), 'test')"
    lake.stack.call(lake.stack.stack.lake.pool.execute(grant))
    wait_until(
        "the stored grant to reach the running services",
        lambda: _processes(lake, reader_a) == process_ids & (team_a | team_b),
        timeout=10,
    )


def test_grant_map_shapes_are_checked_at_start() -> None:
    grants = AudienceGrants.parse('{"public": ["*"], "ops": {"read": ["group:sre"], "mint": ["user:a@x"]}}')
    alice = IdentityPrincipal("alice@x", "oidc", groups=frozenset({"sre"}))
    assert grants.granted(alice) == {"public", "ops"}
    assert grants.granted(IdentityPrincipal("bob", "db_key")) == {"public"}
    for bad in ('["team"]', '{"a b": ["*"]}', '{"team": ["someone"]}', '{"team": {"write": []}}', '{"t": [], "t": []}'):
        with pytest.raises(IdentityConfigurationError, match="MICROMEGAS_AUDIENCE_GRANTS"):
            AudienceGrants.parse(bad)
