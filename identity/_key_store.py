"""Database keys: an in-memory snapshot of the key tables, kept fresh, and the authenticator over it.

Keys live in Micromegas's tables ``ingestion_api_keys`` and ``analytics_api_keys`` (data-lake
schema v5/v6), which hold only the SHA-256 of each secret. Sirius adds, in its own schema,
``sirius_api_key_audiences`` (the audiences of analytics keys, which Micromegas's table lacks)
and ``sirius_group_members`` (stored groups, the reserved ``admins`` among them). The snapshot
also holds the read grants of Micromegas's ``audience_grants`` table (v7), which no trigger
notifies: they are seen within the TTL.

Rather than query PostgreSQL on every request (the listeners call authenticators from event
loops and gRPC threads, where a round trip would stall other requests), a :class:`KeyStore`
holds a snapshot of every key hash and group membership, reloaded by a background thread:

* at once when PostgreSQL signals a change (``LISTEN sirius_identity``; triggers on the key and
  group tables ``NOTIFY`` it on insert, delete and revocation, whoever made the change);
* every ``ttl_seconds`` (default 5 s) in any case, the backstop should a notification be lost.

So a revoked key is refused by every running service within milliseconds, and at worst within
the TTL. Should PostgreSQL stay unreachable past ``max_staleness_seconds`` (default 60 s), database
keys are refused ("key store unavailable") rather than trusted on stale data.

A presented secret is hashed (SHA-256) and looked up by its digest; the stored digest is then
compared with ``hmac.compare_digest``. The lookup's timing depends only on the digest, which
tells an attacker nothing about any secret.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

import asyncpg

from ._audiences import AudienceGrants
from ._env_keys import bearer_token
from ._exceptions import AuthenticationError, IdentityConfigurationError
from ._principal import Principal

__all__ = ["NOTIFY_CHANNEL", "DatabaseKeys", "KeyKind", "KeyRecord", "KeyStore", "hash_secret"]

_LOG = logging.getLogger(__name__)

NOTIFY_CHANNEL = "sirius_identity"
"""The PostgreSQL channel the key and group tables' triggers notify."""

_RECONNECT_SECONDS = 1.0


class KeyKind(Enum):
    """Which table a key lives in, hence which services accept it (Micromegas keeps them apart)."""

    INGESTION = "ingestion"
    ANALYTICS = "analytics"

    @property
    def table(self) -> str:
        """The key table (a constant: never built from input)."""
        return f"{self.value}_api_keys"


def hash_secret(secret: str) -> bytes:
    """SHA-256 of the whole key string: the only form in which a key is stored."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key row as the snapshot holds it (never the secret)."""

    key_id: uuid.UUID
    kind: KeyKind
    name: str
    key_hash: bytes
    audiences: frozenset[str]
    revoked: bool


@dataclass(frozen=True, slots=True)
class _Snapshot:
    keys: Mapping[bytes, KeyRecord] = field(default_factory=dict)
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    has_admins: bool = False
    in_use: bool = False
    loaded_at: float = float("-inf")
    read_grants: AudienceGrants = field(default_factory=AudienceGrants)


class KeyStore:
    """The key and group tables' snapshot, reloaded on notification and every ``ttl_seconds``.

    Args:
        dsn: ``postgresql://`` URI of the lakehouse database.
        ttl_seconds: the longest a change can go unseen should a notification be lost.
        max_staleness_seconds: past this without a successful reload, database keys are refused.
    """

    def __init__(self, dsn: str, *, ttl_seconds: float = 5.0, max_staleness_seconds: float = 60.0) -> None:
        if ttl_seconds <= 0 or max_staleness_seconds < ttl_seconds:
            msg = "the key cache TTL must be positive and no longer than the staleness limit"
            raise IdentityConfigurationError(msg)
        self._dsn = dsn
        self.ttl_seconds = ttl_seconds
        self._max_staleness = max_staleness_seconds
        self._snapshot = _Snapshot()
        self._used: set[uuid.UUID] = set()
        self._used_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._task: concurrent.futures.Future[None] | None = None
        self._stopping = False
        self._first_load = threading.Event()
        self._first_error: BaseException | None = None
        self.reloads = 0
        """Snapshots loaded so far (tests and logs)."""
        self._reloaded = threading.Condition()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> KeyStore:
        """Load the first snapshot (blocking) and keep it fresh in a background thread.

        Raises:
            IdentityConfigurationError: PostgreSQL cannot be read within ``timeout`` seconds.
        """
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sirius-key-store", daemon=True)
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        if not self._first_load.wait(timeout) or self._first_error is not None:
            error = self._first_error
            self.stop()
            msg = f"cannot read the API keys from PostgreSQL: {error or 'timed out'}"
            raise IdentityConfigurationError(msg) from error
        return self

    def stop(self) -> None:
        """Stop the background thread (idempotent)."""
        loop, thread, task = self._loop, self._thread, self._task
        if loop is None or thread is None:
            return
        self._stopping = True
        if task is not None:
            task.cancel()  # the run loop closes its connection, then stops the event loop
        thread.join(timeout=10.0)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = self._task = None

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        try:
            while not self._stopping:
                conn: asyncpg.Connection | None = None
                try:
                    conn = await asyncpg.connect(self._dsn, timeout=10.0)
                    await conn.add_listener(NOTIFY_CHANNEL, self._notified)
                    while not self._stopping:
                        self._wake.clear()  # before reading: a change during the read wakes the next wait
                        await self._reload(conn)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.ttl_seconds)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    if not self._first_load.is_set():
                        self._first_error = exc
                        self._first_load.set()
                        return
                    _LOG.warning("key store: reload failed (%s); retrying", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), _RECONNECT_SECONDS)
                finally:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(conn.close(timeout=2.0))
        finally:
            asyncio.get_running_loop().stop()

    def _notified(self, *_args: object) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- loading ----------------------------------------------------------------------------

    async def _reload(self, conn: asyncpg.Connection) -> None:
        await self._flush_last_used(conn)
        keys = await _fetch(
            conn,
            "SELECT 'ingestion' AS kind, key_id, key_hash, name, ARRAY[audience]::text[] AS audiences,"
            " revoked_at IS NOT NULL AS revoked FROM ingestion_api_keys",
        )
        keys += await _fetch(
            conn,
            "SELECT 'analytics' AS kind, k.key_id, k.key_hash, k.name,"
            " COALESCE(ARRAY(SELECT a.audience::text FROM sirius_api_key_audiences a WHERE a.key_id = k.key_id"
            " ORDER BY 1), ARRAY[]::text[]) AS audiences,"
            " k.revoked_at IS NOT NULL AS revoked FROM analytics_api_keys k",
            fallback="SELECT 'analytics' AS kind, key_id, key_hash, name, ARRAY[]::text[] AS audiences,"
            " revoked_at IS NOT NULL AS revoked FROM analytics_api_keys",
        )
        members = await _fetch(conn, "SELECT group_name, member FROM sirius_group_members")
        # Micromegas's stored grants (read axis); no trigger notifies them: seen within the TTL.
        grants = await _fetch(conn, "SELECT audience, selector FROM audience_grants WHERE axis = 'read'")
        self._snapshot = replace(_build_snapshot(keys, members), read_grants=_read_grants(grants))
        with self._reloaded:
            self.reloads += 1
            self._reloaded.notify_all()
        self._first_load.set()

    async def _flush_last_used(self, conn: asyncpg.Connection) -> None:
        with self._used_lock:
            used, self._used = self._used, set()
        if not used:
            return
        ids = list(used)
        for kind in KeyKind:
            # A column-specific trigger ignores these updates: no reload storm from usage stamps.
            await conn.execute(f"UPDATE {kind.table} SET last_used_at = now() WHERE key_id = ANY($1::uuid[])", ids)  # noqa: S608 - constant table

    def wait_for_reload(self, timeout: float) -> bool:
        """Block until the next snapshot is loaded (True) or ``timeout`` seconds pass (False)."""
        with self._reloaded:
            seen = self.reloads
            return self._reloaded.wait_for(lambda: self.reloads > seen, timeout)

    # -- queries ----------------------------------------------------------------------------

    def _fresh(self) -> _Snapshot:
        snapshot = self._snapshot
        if time.monotonic() - snapshot.loaded_at > self._max_staleness:
            msg = "key store unavailable: the API keys could not be read from PostgreSQL"
            raise AuthenticationError(msg)
        return snapshot

    @property
    def in_use(self) -> bool:
        """True once a database key exists (live or revoked): authentication is then enforced."""
        return self._snapshot.in_use

    @property
    def has_admins(self) -> bool:
        """True when the reserved admins group has a member."""
        return self._snapshot.has_admins

    def groups_of(self, name: str) -> frozenset[str]:
        """The stored groups ``name`` belongs to."""
        return self._snapshot.groups.get(name, frozenset())

    @property
    def read_grants(self) -> AudienceGrants:
        """The read grants stored in ``audience_grants`` (Micromegas's table)."""
        return self._snapshot.read_grants

    def lookup(self, secret: str) -> KeyRecord | None:
        """The key whose hash is that of ``secret`` (revoked ones included), else None.

        Raises:
            AuthenticationError: the snapshot is too old to be trusted.
        """
        digest = hash_secret(secret)
        record = self._fresh().keys.get(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        if not record.revoked:
            with self._used_lock:
                self._used.add(record.key_id)
        return record


async def _fetch(conn: asyncpg.Connection, sql: str, fallback: str | None = None) -> list[asyncpg.Record]:
    """Rows of ``sql``; none when its table does not exist yet (an older schema holds no key)."""
    try:
        return list(await conn.fetch(sql))
    except asyncpg.UndefinedTableError:
        if fallback is None:
            return []
        return await _fetch(conn, fallback)


def _read_grants(rows: Iterable[asyncpg.Record]) -> AudienceGrants:
    read: dict[str, set[str]] = {}
    for row in rows:
        read.setdefault(row["audience"], set()).add(row["selector"])
    return AudienceGrants({audience: frozenset(selectors) for audience, selectors in read.items()})


def _build_snapshot(keys: Iterable[asyncpg.Record], members: Iterable[asyncpg.Record]) -> _Snapshot:
    by_hash: dict[bytes, KeyRecord] = {}
    any_key = False
    for row in keys:
        any_key = True
        record = KeyRecord(
            key_id=row["key_id"],
            kind=KeyKind(row["kind"]),
            name=row["name"],
            key_hash=bytes(row["key_hash"]),
            audiences=frozenset(a for a in row["audiences"] or () if a),
            revoked=row["revoked"],
        )
        previous = by_hash.get(record.key_hash)
        if previous is None or previous.revoked:  # a live row wins over a revoked one
            by_hash[record.key_hash] = record
    groups: dict[str, set[str]] = {}
    for row in members:
        groups.setdefault(row["member"], set()).add(row["group_name"])
    has_admins = any("admins" in names for names in groups.values())
    return _Snapshot(
        keys=by_hash,
        groups={member: frozenset(names) for member, names in groups.items()},
        has_admins=has_admins,
        in_use=any_key,
        loaded_at=time.monotonic(),
    )


class DatabaseKeys:
    """Authenticates ``Bearer <key>`` against one key table through a :class:`KeyStore`.

    An ingestion service uses the ingestion keys and the query services the analytics keys, as
    in Micromegas: a key of the other kind is refused with a reason saying so.

    Args:
        store: the started key store.
        kind: the table this service accepts.
    """

    def __init__(self, store: KeyStore, kind: KeyKind) -> None:
        self._store = store
        self._kind = kind

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The key's principal (method ``db_key``), None for an unknown credential.

        Raises:
            AuthenticationError: the key is revoked, of the other kind, or the store is stale.
        """
        token = bearer_token(authorization)
        if token is None or not self._store.in_use:
            return None
        record = self._store.lookup(token)
        if record is None:
            return None
        if record.revoked:
            msg = f"API key {record.name!r} has been revoked"
            raise AuthenticationError(msg)
        if record.kind is not self._kind:
            msg = f"API key {record.name!r} is an {record.kind.value} key; this service needs an {self._kind.value} key"
            raise AuthenticationError(msg)
        return Principal(record.name, "db_key", audiences=record.audiences)
