"""Managing database keys and stored groups: mint, list, revoke, import; group membership.

Keys go into Micromegas's tables (``ingestion_api_keys``, ``analytics_api_keys``): a random
``mmk_`` secret (32 bytes of OS entropy, base64url without padding, as Micromegas mints them) is
shown once to whoever mints it and stored only as its SHA-256. An ingestion key is bound to one
write audience (Micromegas's ``audience`` column, default ``public``); an analytics key may carry
read audiences (Sirius's ``sirius_api_key_audiences``). Admins are the members of the stored
``admins`` group (``sirius_group_members``), which ``mint(..., admin=True)`` joins the key's name to.

Every change notifies the running services through the tables' triggers (``sirius_identity``),
so a revoked key is refused at once; nothing here needs to reach them.
"""

from __future__ import annotations

import re
import secrets
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ._access import ADMINS_GROUP
from ._exceptions import KeyManagementError
from ._key_store import KeyKind, hash_secret

__all__ = [
    "DEFAULT_INGESTION_AUDIENCE",
    "ImportedKey",
    "KeyInfo",
    "MintedKey",
    "add_group_member",
    "generate_secret",
    "import_key",
    "list_group_members",
    "list_keys",
    "mint_key",
    "remove_group_member",
    "revoke_key",
]

DEFAULT_INGESTION_AUDIENCE = "public"
"""The write audience of an ingestion key minted without one (Micromegas's default)."""

_AUDIENCE = re.compile(r"^[A-Za-z0-9_-]+$")
_GROUP = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A key just minted: the only time its secret exists outside the caller's hands."""

    key_id: uuid.UUID
    kind: KeyKind
    name: str
    secret: str
    audiences: tuple[str, ...]
    admin: bool


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as listed: everything but its secret (which is not stored)."""

    key_id: uuid.UUID
    kind: KeyKind
    name: str
    audiences: tuple[str, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


@dataclass(frozen=True, slots=True)
class ImportedKey:
    """The outcome of importing one existing key (an entry of ``MICROMEGAS_API_KEYS``)."""

    key_id: uuid.UUID
    name: str
    imported: bool
    """False when a key with this secret was already stored (then nothing changed)."""
    revoked: bool
    """True when the stored key is revoked (an import never revives a revoked key)."""


def generate_secret() -> str:
    """A new key: ``mmk_`` and 256 bits of OS entropy, base64url without padding."""
    return "mmk_" + urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _check_name(name: str, what: str = "key name") -> str:
    name = name.strip()
    if not name or len(name) > _MAX_NAME:
        msg = f"the {what} must be 1 to {_MAX_NAME} characters"
        raise KeyManagementError(msg)
    return name


def _check_audiences(kind: KeyKind, audiences: Iterable[str]) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(a.strip() for a in audiences))
    for audience in values:
        if not _AUDIENCE.match(audience) or len(audience) > _MAX_NAME:
            msg = f"audience {audience!r} must be letters, digits, '_' or '-'"
            raise KeyManagementError(msg)
    if kind is KeyKind.INGESTION:
        if len(values) > 1:
            msg = "an ingestion key writes to exactly one audience"
            raise KeyManagementError(msg)
        return values or (DEFAULT_INGESTION_AUDIENCE,)
    return values


async def _insert(
    conn: asyncpg.Connection, kind: KeyKind, name: str, digest: bytes, *, created_by: str, audiences: Sequence[str]
) -> uuid.UUID:
    key_id = uuid.uuid4()
    if kind is KeyKind.INGESTION:
        await conn.execute(
            "INSERT INTO ingestion_api_keys (key_id, key_hash, name, created_at, created_by, audience)"
            " VALUES ($1, $2, $3, now(), $4, $5)",
            key_id,
            digest,
            name,
            created_by,
            audiences[0],
        )
    else:
        await conn.execute(
            "INSERT INTO analytics_api_keys (key_id, key_hash, name, created_at, created_by)"
            " VALUES ($1, $2, $3, now(), $4)",
            key_id,
            digest,
            name,
            created_by,
        )
        await conn.executemany(
            "INSERT INTO sirius_api_key_audiences (key_id, audience) VALUES ($1, $2)",
            [(key_id, audience) for audience in audiences],
        )
    return key_id


async def mint_key(
    conn: asyncpg.Connection,
    kind: KeyKind,
    name: str,
    *,
    created_by: str,
    audiences: Iterable[str] = (),
    admin: bool = False,
) -> MintedKey:
    """Create a key; its secret is in the result and nowhere else.

    Args:
        conn: a connection to the lakehouse database (migrated).
        kind: ingestion (write) or analytics (read) key.
        name: the principal's name (several keys may share one, e.g. while rotating).
        created_by: who mints it (kept in ``created_by``).
        audiences: the ingestion key's one write audience (default ``public``), or the analytics
            key's read audiences.
        admin: also make ``name`` a member of the ``admins`` group.

    Raises:
        KeyManagementError: a bad name or audience; nothing is stored.
    """
    name = _check_name(name)
    values = _check_audiences(kind, audiences)
    secret = generate_secret()
    async with conn.transaction():
        key_id = await _insert(conn, kind, name, hash_secret(secret), created_by=created_by, audiences=values)
        if admin:
            await add_group_member(conn, ADMINS_GROUP, name, created_by=created_by)
    return MintedKey(key_id, kind, name, secret, values, admin)


async def import_key(
    conn: asyncpg.Connection,
    kind: KeyKind,
    name: str,
    secret: str,
    *,
    created_by: str,
    audience: str | None = None,
) -> ImportedKey:
    """Store an existing key (e.g. from ``MICROMEGAS_API_KEYS``) so it keeps working from the database.

    Importing the same secret again changes nothing and says so; a revoked key stays revoked.

    Raises:
        KeyManagementError: a bad name, secret or audience; nothing is stored.
    """
    name = _check_name(name)
    if not secret:
        msg = f"key {name!r}: the secret is empty"
        raise KeyManagementError(msg)
    values = _check_audiences(kind, [audience] if audience else [])
    digest = hash_secret(secret)
    async with conn.transaction():
        existing = await conn.fetchrow(
            f"SELECT key_id, name, revoked_at IS NOT NULL AS revoked FROM {kind.table} WHERE key_hash = $1",  # noqa: S608 - constant table
            digest,
        )
        if existing is not None:
            return ImportedKey(existing["key_id"], existing["name"], imported=False, revoked=existing["revoked"])
        key_id = await _insert(conn, kind, name, digest, created_by=created_by, audiences=values)
    return ImportedKey(key_id, name, imported=True, revoked=False)


async def list_keys(
    conn: asyncpg.Connection, kind: KeyKind | None = None, *, include_revoked: bool = False
) -> list[KeyInfo]:
    """The stored keys (live only unless ``include_revoked``), oldest first; never a secret."""
    keys: list[KeyInfo] = []
    for each in (kind,) if kind is not None else tuple(KeyKind):
        audiences = (
            "ARRAY[k.audience]::text[]"
            if each is KeyKind.INGESTION
            else "ARRAY(SELECT a.audience::text FROM sirius_api_key_audiences a WHERE a.key_id = k.key_id ORDER BY 1)"
        )
        live = "" if include_revoked else " WHERE k.revoked_at IS NULL"
        rows = await conn.fetch(
            f"SELECT k.key_id, k.name, {audiences} AS audiences, k.created_at, k.created_by,"  # noqa: S608 - constants
            f" k.last_used_at, k.revoked_at, k.revoked_by FROM {each.table} k{live} ORDER BY k.created_at, k.name"
        )
        keys.extend(
            KeyInfo(
                key_id=row["key_id"],
                kind=each,
                name=row["name"],
                audiences=tuple(row["audiences"] or ()),
                created_at=row["created_at"],
                created_by=row["created_by"],
                last_used_at=row["last_used_at"],
                revoked_at=row["revoked_at"],
                revoked_by=row["revoked_by"],
            )
            for row in rows
        )
    return sorted(keys, key=lambda k: (k.created_at, k.name))


async def revoke_key(conn: asyncpg.Connection, key_id: str | uuid.UUID, *, revoked_by: str) -> KeyInfo:
    """Revoke the key ``key_id`` (of either kind); every running service refuses it within seconds.

    Raises:
        KeyManagementError: no such key, or it was already revoked (nothing changes).
    """
    try:
        parsed = key_id if isinstance(key_id, uuid.UUID) else uuid.UUID(str(key_id))
    except ValueError:
        msg = f"{key_id!r} is not a key id (a UUID, as `sirius keys list` shows)"
        raise KeyManagementError(msg) from None
    async with conn.transaction():
        for kind in KeyKind:
            row = await conn.fetchrow(
                f"UPDATE {kind.table} SET revoked_at = now(), revoked_by = $2"  # noqa: S608 - constant table
                " WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id",
                parsed,
                revoked_by,
            )
            if row is not None:
                return next(k for k in await list_keys(conn, kind, include_revoked=True) if k.key_id == parsed)
            if await conn.fetchval(f"SELECT 1 FROM {kind.table} WHERE key_id = $1", parsed):  # noqa: S608
                msg = f"key {parsed} is already revoked"
                raise KeyManagementError(msg)
    msg = f"no key {parsed}"
    raise KeyManagementError(msg)


async def add_group_member(conn: asyncpg.Connection, group: str, member: str, *, created_by: str) -> bool:
    """Make ``member`` (a key name, an OIDC email or subject) a member of ``group``; False if it was.

    Raises:
        KeyManagementError: a bad group or member name.
    """
    group = _check_name(group, "group name")
    if not _GROUP.match(group):
        msg = f"group {group!r} must be letters, digits, '.', '_' or '-'"
        raise KeyManagementError(msg)
    member = _check_name(member, "member name")
    status = await conn.execute(
        "INSERT INTO sirius_group_members (group_name, member, created_at, created_by)"
        " VALUES ($1, $2, now(), $3) ON CONFLICT DO NOTHING",
        group,
        member,
        created_by,
    )
    return status.endswith(" 1")


async def remove_group_member(conn: asyncpg.Connection, group: str, member: str) -> bool:
    """Remove ``member`` from ``group``; False if it was not a member."""
    status = await conn.execute(
        "DELETE FROM sirius_group_members WHERE group_name = $1 AND member = $2", group.strip(), member.strip()
    )
    return status.endswith(" 1")


async def list_group_members(conn: asyncpg.Connection, group: str | None = None) -> list[tuple[str, str]]:
    """``(group, member)`` pairs, of one group or all, sorted."""
    rows = await conn.fetch(
        "SELECT group_name, member FROM sirius_group_members WHERE $1::text IS NULL OR group_name = $1"
        " ORDER BY group_name, member",
        group,
    )
    return [(row["group_name"], row["member"]) for row in rows]
