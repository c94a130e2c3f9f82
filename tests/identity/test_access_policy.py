"""The access policy: who is authenticated, who is an admin, and how keys are compared.

Policies are built as the services build them (``build_authenticator``) over real key stores on
the test's PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from sirius.identity import (
    ANONYMOUS,
    AuthenticationError,
    EnvKeys,
    IdentityConfig,
    IdentityConfigurationError,
    KeyKind,
    KeyStore,
    ServiceRole,
    add_group_member,
    build_authenticator,
    mint_key,
    start_key_store,
)
from sirius.lakehouse import migrate

ENV = EnvKeys.parse(json.dumps([{"name": "ci", "key": "ci-key"}, {"name": "ops", "key": "ops-key", "audience": "a"}]))


def _run_sql(dsn: str, action: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            return await action(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def _until(store: KeyStore, condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait, reload by reload, until the store's snapshot satisfies ``condition``."""
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the key store never saw the change"
        store.wait_for_reload(timeout=remaining)


@pytest.fixture
def store(pg_dsn: str) -> Iterator[KeyStore]:
    asyncio.run(migrate(pg_dsn))
    started = start_key_store(IdentityConfig(sql_connection_string=pg_dsn))
    assert started is not None
    try:
        yield started
    finally:
        started.stop()


def test_nothing_configured_means_authentication_off() -> None:
    policy = build_authenticator(IdentityConfig(), ServiceRole.ANALYTICS)
    assert not policy.enabled
    assert policy.require(None) == ANONYMOUS
    assert policy.require("Bearer anything") == ANONYMOUS


def test_environment_keys_only_make_every_caller_an_admin() -> None:
    policy = build_authenticator(IdentityConfig(env_keys=ENV), ServiceRole.ANALYTICS)
    assert policy.enabled
    principal = policy.require("Bearer ci-key")
    assert (principal.name, principal.method, principal.is_admin) == ("ci", "env_key", True)
    assert policy.require("Bearer ops-key").audiences == frozenset({"a"})
    with pytest.raises(AuthenticationError, match="missing credentials"):
        policy.require(None)
    with pytest.raises(AuthenticationError, match="invalid token"):
        policy.require("Bearer nope")
    with pytest.raises(AuthenticationError, match="invalid token"):
        policy.require("Basic ci-key")


def test_named_admins_end_the_everyone_is_admin_rule() -> None:
    policy = build_authenticator(IdentityConfig(env_keys=ENV, admins=frozenset({"ops"})), ServiceRole.INGESTION)
    assert not policy.require("Bearer ci-key").is_admin
    assert policy.require("Bearer ops-key").is_admin


def test_database_keys_end_the_everyone_is_admin_rule(store: KeyStore, pg_dsn: str) -> None:
    minted = _run_sql(pg_dsn, lambda c: mint_key(c, KeyKind.ANALYTICS, "reader", created_by="t", audiences=["x", "y"]))
    _run_sql(pg_dsn, lambda c: add_group_member(c, "admins", "ci", created_by="t"))
    _run_sql(pg_dsn, lambda c: add_group_member(c, "oncall", "reader", created_by="t"))
    policy = build_authenticator(IdentityConfig(env_keys=ENV), ServiceRole.ANALYTICS, store)
    _until(store, lambda: store.has_admins and store.groups_of("reader"))  # notified by PostgreSQL
    reader = policy.require(f"Bearer {minted.secret}")
    assert (reader.name, reader.method, reader.is_admin) == ("reader", "db_key", False)
    assert reader.audiences == frozenset({"x", "y"})
    assert reader.groups == frozenset({"oncall"})
    assert policy.require("Bearer ci-key").is_admin  # in the stored admins group
    assert not policy.require("Bearer ops-key").is_admin  # an env key, not named
    ingestion = build_authenticator(IdentityConfig(env_keys=ENV), ServiceRole.INGESTION, store)
    with pytest.raises(AuthenticationError, match="'reader' is an analytics key"):
        ingestion.require(f"Bearer {minted.secret}")


def test_keys_are_compared_in_constant_time(store: KeyStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    minted = _run_sql(pg_dsn, lambda c: mint_key(c, KeyKind.INGESTION, "writer", created_by="t"))
    _until(store, lambda: store.lookup(minted.secret) is not None)
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((bytes(a), bytes(b)))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    # Environment keys: every key is compared, whichever matches (nothing leaks its position).
    assert ENV.authenticate("Bearer ci-key").name == "ci"
    assert [pair[0] for pair in compared] == [b"ci-key", b"ci-key"]
    compared.clear()
    # Database keys: the stored SHA-256 is compared with the presented secret's.
    policy = build_authenticator(IdentityConfig(), ServiceRole.INGESTION, store)
    assert policy.require(f"Bearer {minted.secret}").name == "writer"
    digest = hashlib.sha256(minted.secret.encode()).digest()
    assert compared == [(digest, digest)]


def test_an_unreachable_key_store_is_a_start_error() -> None:
    config = IdentityConfig(sql_connection_string="postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(IdentityConfigurationError, match="cannot read the API keys from PostgreSQL"):
        start_key_store(config)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("MICROMEGAS_API_KEYS", "{not json", "not valid JSON"),
        ("MICROMEGAS_API_KEYS", json.dumps([{"name": "x"}]), "non-empty string 'key'"),
        ("MICROMEGAS_ADMINS", json.dumps([1]), "list of non-empty strings"),
        ("MICROMEGAS_API_KEY_CACHE_TTL_SECONDS", "0", "positive number of seconds"),
    ],
)
def test_malformed_settings_are_refused_with_the_variable_named(variable: str, value: str, reason: str) -> None:
    with pytest.raises(IdentityConfigurationError, match=reason) as info:
        IdentityConfig.resolve(environ={variable: value})
    assert variable in str(info.value)
