"""The maintenance daemon's per-pass lease: one daemon runs each kind of pass at a time.

Several daemons may run against one lakehouse (a standby for failover, or replicas of one
deployment). Every partition write is safe in numbers on its own (transaction advisory locks in
``_partition_update``), but without a lease a second daemon enters every pass too and blocks on
each partition's lock inside an open transaction, holding a pooled connection while the first
daemon computes. The lease makes that standby cheap: before a pass, a daemon asks for the pass
kind's lease with ``pg_try_advisory_lock``; when another daemon holds it, the pass is skipped at
once and no connection is kept.

The lease is a *session-level* advisory lock on a connection checked out of the pool for the
pass, not a transaction-level one: a transaction lock would need a transaction left open for the
whole pass (minutes for the hour and day passes), an "idle in transaction" session that
``idle_in_transaction_session_timeout`` kills and monitoring flags, while a session lock needs only
an idle connection. It is released explicitly at the end of the pass, again by asyncpg's reset
when the connection returns to the pool (``pg_advisory_unlock_all``), and by PostgreSQL when the
session ends: a daemon killed mid-pass (SIGKILL, a lost host) frees the lease as soon as the server
sees its connection close, and the next pass of any daemon takes over. Work the dead daemon left
half done is redone by that pass (every partition update is idempotent); its slice of time is
otherwise covered by the next longer pass (the minute pass heals the seconds).

A lease is one per pass kind, so a long hour pass does not hold back the second passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import AsyncIterator

import asyncpg

from ._pool import pg_errors

__all__ = ["pass_lease", "pass_lease_key"]


def pass_lease_key(kind: str) -> int:
    """Advisory-lock key of the lease of one pass kind (``second``, ``minute``, ``hour``, ``day``).

    >>> pass_lease_key("second") == pass_lease_key("second") != pass_lease_key("minute")
    True
    """
    # The same stable 64-bit scheme as the partition locks, in a namespace of its own.
    digest = hashlib.blake2b(f"daemon pass lease\x1f{kind}".encode(), digest_size=8).digest()
    return int(struct.unpack("<q", digest)[0])


@contextlib.asynccontextmanager
async def pass_lease(pool: asyncpg.Pool, kind: str) -> AsyncIterator[bool]:
    """Hold the lease of pass ``kind`` for the block if no other daemon does; yield whether held.

    When another daemon holds it, the connection goes back to the pool before the block runs
    (the caller skips its pass). When held, one connection stays checked out, idle, until the
    block ends.

    Raises:
        MetadataStoreError: PostgreSQL failed while taking the lease.
    """
    key = pass_lease_key(kind)
    with pg_errors(f"taking the {kind} pass lease"):
        conn = await pool.acquire()
    try:
        with pg_errors(f"taking the {kind} pass lease"):
            held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
    except BaseException:
        await pool.release(conn)
        raise
    if not held:
        await pool.release(conn)
        yield False
        return
    try:
        yield True
    finally:
        try:
            # Explicit, though releasing the connection resets it (pg_advisory_unlock_all): the
            # lease must not outlive the pass whatever the pool does.
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
        finally:
            await pool.release(conn)
