"""The ``blocks`` table partitioned by day of ``insert_time``, so retention drops whole days.

Layout (Sirius schema v3, ``partition_blocks_table``): ``blocks`` is a range-partitioned table
with Micromegas's columns, types and index names; one partition per UTC day named
``blocks_pYYYYMMDD`` covering ``[day, day + 1)``, and ``blocks_default`` for every row no day
partition takes (a NULL ``insert_time``, a day not created yet), so an insert never fails.

A partitioned table's unique index must contain the partition key, so ``blocks_block_id_unique``
covers ``(block_id, insert_time)``. Global ``block_id`` uniqueness, which retried inserts rely on,
is kept by the ``BEFORE INSERT`` trigger ``blocks_block_id_once``: under a transaction advisory
lock on the id, a row whose ``block_id`` is already stored is skipped, whatever its
``insert_time`` -- the retried block keeps its first row. The lookup visits only the partitions
from a day before ``least(end_time, insert_time)`` (all of them for a row without ``end_time``):
the first row was inserted after the block ended, so older partitions cannot hold it, and the
probe stays a few index lookups however many days are kept. It misses only when the producer's
clock ran more than a day ahead of the server's at the first insert *and* the retry comes more
than a day later. Writers therefore say
``ON CONFLICT DO NOTHING`` without a target (``ON CONFLICT (block_id)`` names an index a
partitioned table cannot have).

Day partitions are created ahead (``ensure_block_partitions``: today and the next two days, at
every migration and every hourly pass) as stand-alone tables attached to ``blocks``, which locks
``blocks`` only in ``SHARE UPDATE EXCLUSIVE`` mode; rows the default partition holds for that day
are moved in first. Retention detaches an expired partition and renames it
``blocks_retired_pYYYYMMDD`` (``detach_block_partition``); ``_retention`` then deletes its objects
and drops it. DDL that needs ``blocks`` exclusively waits at most ``DDL_LOCK_TIMEOUT`` and is
retried at the next pass rather than queueing every reader behind it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from ._time_range import NS_PER_DAY

__all__ = [
    "DEFAULT_PARTITION",
    "BlockPartition",
    "blocks_partitioned",
    "detach_block_partition",
    "ensure_block_partitions",
    "list_block_partitions",
    "list_retired_block_tables",
    "partition_blocks_table",
    "quote_ident",
]

_log = logging.getLogger(__name__)

DEFAULT_PARTITION = "blocks_default"
"""The partition of rows no day partition takes."""

DAYS_AHEAD = 2
"""Day partitions created beyond today."""

DDL_LOCK_TIMEOUT = "2s"
"""How long attaching or detaching a partition waits for its locks before giving up until the next pass."""

_DAY_NAME = re.compile(r"^blocks_p(\d{8})$")
_RETIRED_PREFIX = "blocks_retired_p"


def _maintenance_lock_key() -> int:
    digest = hashlib.blake2b(b"blocks partitions", digest_size=8).digest()
    return int(struct.unpack("<q", digest)[0])


_MAINTENANCE_LOCK_KEY = _maintenance_lock_key()

# The trigger's lock is in the two-key advisory lock space (classid, objid), separate from the
# one-key space of the other Sirius locks; classid 21314 (0x5342, "SB") keeps it apart from other
# users of the two-key form.

_DEDUP_FUNCTION = """
CREATE OR REPLACE FUNCTION sirius_blocks_block_id_once() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- The first row of this block was inserted after the block ended (its end_time, give or take
    -- a day of clock skew) and before now: partitions older than that cannot hold it, and
    -- skipping them keeps the probe to a few partitions however many days are kept. Without an
    -- end_time (a foreign writer's row) every partition is looked at.
    since timestamptz := CASE WHEN NEW.end_time IS NOT NULL
                              THEN least(NEW.end_time, NEW.insert_time) - interval '1 day' END;
BEGIN
    IF NEW.block_id IS NULL THEN
        RETURN NEW;
    END IF;
    -- Serialise inserts of one id: the second waits for the first to commit, then sees its row
    -- (READ COMMITTED takes a new snapshot per statement of a volatile function).
    PERFORM pg_advisory_xact_lock(21314, hashtext(NEW.block_id::text));
    IF since IS NULL THEN
        IF EXISTS (SELECT 1 FROM blocks WHERE block_id = NEW.block_id) THEN
            RETURN NULL;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM blocks WHERE block_id = NEW.block_id AND insert_time >= since) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;
"""

# Micromegas's index names; the unique one gains the partition key.
_INDEXES = (
    "CREATE UNIQUE INDEX blocks_block_id_unique ON blocks(block_id, insert_time)",
    "CREATE INDEX block_stream_id ON blocks(stream_id)",
    "CREATE INDEX block_begin_time ON blocks(begin_time)",
    "CREATE INDEX block_end_time ON blocks(end_time)",
    "CREATE INDEX block_insert_time ON blocks(insert_time)",
)


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier.

    >>> quote_ident('a"b')
    '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class BlockPartition:
    """One attached partition of ``blocks``; ``begin_ns``/``end_ns`` are None unless a day partition."""

    name: str
    begin_ns: int | None = None
    end_ns: int | None = None

    @property
    def is_day(self) -> bool:
        """Whether Sirius created it as a day partition (its range is known from its name)."""
        return self.begin_ns is not None


def _day_start(ns: int) -> int:
    return ns - ns % NS_PER_DAY


def _day_name(day_ns: int) -> str:
    return f"blocks_p{datetime.fromtimestamp(day_ns / 1e9, UTC):%Y%m%d}"


def _literal(ns: int) -> str:
    # A timestamptz literal for DDL (bounds cannot be bind parameters); computed from an int.
    return f"'{datetime.fromtimestamp(ns // 1_000_000_000, UTC):%Y-%m-%d %H:%M:%S}+00'"


def _partition_of(name: str) -> BlockPartition:
    match = _DAY_NAME.match(name)
    if match is None:
        return BlockPartition(name)
    day = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
    begin = int(day.timestamp()) * 1_000_000_000
    return BlockPartition(name, begin, begin + NS_PER_DAY)


async def blocks_partitioned(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Whether ``blocks`` is the partitioned table (False for Micromegas's plain table)."""
    kind = await conn.fetchval("SELECT relkind::text FROM pg_class WHERE oid = to_regclass('blocks')")
    return kind == "p"


async def list_block_partitions(conn: asyncpg.Connection | asyncpg.Pool) -> list[BlockPartition]:
    """The partitions attached to ``blocks``, day partitions in day order, then the others by name."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass('blocks') ORDER BY c.relname"
    )
    partitions = [_partition_of(r[0]) for r in names]
    return sorted(partitions, key=lambda p: (not p.is_day, p.begin_ns or 0, p.name))


async def list_retired_block_tables(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Detached partitions whose objects are still to be deleted (left by a retention run)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
        " AND starts_with(c.relname, $1) ORDER BY c.relname",
        _RETIRED_PREFIX,
    )
    return [r[0] for r in rows]


async def _attach_day(conn: asyncpg.Connection, day_ns: int) -> None:
    """Create the partition of one day, moving in the rows the default partition holds for it."""
    name, begin, end = quote_ident(_day_name(day_ns)), _literal(day_ns), _literal(day_ns + NS_PER_DAY)
    await conn.execute(f"CREATE TABLE {name} (LIKE blocks INCLUDING DEFAULTS)")
    # Attaching checks that the default partition holds no row of the new range: move them first.
    await conn.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE insert_time >= {begin} AND insert_time < {end}"  # noqa: S608 - generated names and literals
        f" RETURNING *) INSERT INTO {name} SELECT * FROM moved"
    )
    await conn.execute(f"ALTER TABLE blocks ATTACH PARTITION {name} FOR VALUES FROM ({begin}) TO ({end})")


async def ensure_block_partitions(pool: asyncpg.Pool, now_ns: int, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Create the day partitions of today and the next ``days_ahead`` days that are missing.

    Cheap when they exist (one catalog read). Creation runs under an advisory lock, so services
    starting together create each partition once, and waits at most ``DDL_LOCK_TIMEOUT`` for the
    default partition (``asyncpg.LockNotAvailableError`` then; the default partition takes the
    rows meanwhile). Does nothing when ``blocks`` is not partitioned.

    Returns:
        The names of the partitions created.
    """
    today = _day_start(now_ns)
    wanted = {_day_name(today + n * NS_PER_DAY): today + n * NS_PER_DAY for n in range(days_ahead + 1)}
    async with pool.acquire() as conn:
        if not await blocks_partitioned(conn):
            return []
        if not set(wanted) - {p.name for p in await list_block_partitions(conn)}:
            return []
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MAINTENANCE_LOCK_KEY)
            existing = {p.name for p in await list_block_partitions(conn)}  # another node may have made them
            created = [name for name in wanted if name not in existing]
            for name in created:
                await _attach_day(conn, wanted[name])
    if created:
        _log.info("blocks partitions created: %s", ", ".join(created))
    return created


async def detach_block_partition(pool: asyncpg.Pool, partition: BlockPartition) -> str | None:
    """Detach a day partition from ``blocks`` and rename it ``blocks_retired_p…`` (one transaction).

    Its rows leave ``blocks`` at once; its objects are deleted afterwards by the caller, which
    then drops the table. Waits at most ``DDL_LOCK_TIMEOUT`` for ``blocks``
    (``asyncpg.LockNotAvailableError``).

    Returns:
        The retired table's name, or None when the partition was no longer attached.
    """
    retired = _RETIRED_PREFIX + partition.name.removeprefix("blocks_p")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MAINTENANCE_LOCK_KEY)
        if partition.name not in {p.name for p in await list_block_partitions(conn)}:
            return None
        await conn.execute(f"ALTER TABLE blocks DETACH PARTITION {quote_ident(partition.name)}")
        await conn.execute(f"ALTER TABLE {quote_ident(partition.name)} RENAME TO {quote_ident(retired)}")
    return retired


async def partition_blocks_table(conn: asyncpg.Connection, now_ns: int) -> None:
    """Replace a plain ``blocks`` table by the partitioned one, every row kept (inside the caller's transaction).

    Writers wait for the whole copy (``EXCLUSIVE`` lock); readers go on until the final swap. Day
    partitions are created for every day that has rows and for today and the next
    ``DAYS_AHEAD`` days; rows without ``insert_time`` go to the default partition. Indexes are
    built after the copy, and the deduplicating trigger is added last, so the copy pays for
    neither per row.
    """
    if await blocks_partitioned(conn):
        return
    await conn.execute("LOCK TABLE blocks IN EXCLUSIVE MODE")
    rows = await conn.fetch(
        "SELECT DISTINCT (insert_time AT TIME ZONE 'UTC')::date AS day FROM blocks WHERE insert_time IS NOT NULL"
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC).date()
    days = {(r["day"] - epoch).days * NS_PER_DAY for r in rows}
    today = _day_start(now_ns)
    days |= {today + n * NS_PER_DAY for n in range(DAYS_AHEAD + 1)}
    await conn.execute(
        "CREATE TABLE sirius_blocks_partitioned (LIKE blocks INCLUDING DEFAULTS) PARTITION BY RANGE (insert_time)"
    )
    await conn.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF sirius_blocks_partitioned DEFAULT")
    for day in sorted(days):
        await conn.execute(
            f"CREATE TABLE {quote_ident(_day_name(day))} PARTITION OF sirius_blocks_partitioned"
            f" FOR VALUES FROM ({_literal(day)}) TO ({_literal(day + NS_PER_DAY)})"
        )
    await conn.execute("INSERT INTO sirius_blocks_partitioned SELECT * FROM blocks")
    # The old indexes keep their names until the old table is dropped: move them aside.
    old_indexes = await conn.fetch(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'blocks'::regclass"
    )
    for (index,) in old_indexes:
        await conn.execute(f"ALTER INDEX {quote_ident(index)} RENAME TO {quote_ident('sirius_unpartitioned_' + index)}")
    for sql in _INDEXES:
        await conn.execute(sql.replace(" ON blocks(", " ON sirius_blocks_partitioned("))
    await conn.execute("DROP TABLE blocks")  # readers wait from here to the commit only
    await conn.execute("ALTER TABLE sirius_blocks_partitioned RENAME TO blocks")
    await conn.execute(_DEDUP_FUNCTION)
    await conn.execute(
        "CREATE TRIGGER blocks_block_id_once BEFORE INSERT ON blocks"
        " FOR EACH ROW EXECUTE FUNCTION sirius_blocks_block_id_once()"
    )
