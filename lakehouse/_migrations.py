"""Versioned PostgreSQL migrations of the data-lake and lakehouse schemas, Micromegas-compatible.

Two schemas, each with its own one-row version table and advisory-lock key, exactly as the Rust
services keep them (``micromegas-wire.md`` §7 and §8), so Sirius and Micromegas can share a database:

=========== ======================= ======== ======
schema      version table           lock key latest
=========== ======================= ======== ======
data lake   ``migration``           0        7
lakehouse   ``lakehouse_migration`` 1        10
sirius      ``sirius_migration``    SIRI     3
=========== ======================= ======== ======

The third schema holds Sirius's own tables (the query audit log; the audiences of analytics keys
and the stored groups, ``admins`` among them), which Micromegas does not have.

Protocol (§7.4): read the version without the lock; if it is behind, take
``pg_advisory_xact_lock(key)`` in a transaction on one connection and hold it for the whole
migration, re-read the version (another node may have finished meanwhile), then apply each
missing step in its *own* transaction on a second connection, each ending with the version
update. A crash leaves the database at the last completed version and the lock is released with
the connection. Every step replays Micromegas's DDL in order, so a database migrated by Sirius is
indistinguishable from one migrated by Rust (columns dropped along the way stay hidden, as there).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass

import asyncpg

from ._block_partitions import ensure_block_partitions, partition_blocks_table
from ._exceptions import MigrationError
from ._pool import pg_errors

__all__ = [
    "DATA_LAKE_SCHEMA_VERSION",
    "LAKEHOUSE_SCHEMA_VERSION",
    "SIRIUS_SCHEMA_VERSION",
    "migrate",
    "schema_versions",
]

_log = logging.getLogger(__name__)

Step = Callable[[asyncpg.Connection], Awaitable[None]]
"""One migration step; runs inside a transaction and must leave the version table at N."""


@dataclass(frozen=True, slots=True)
class _Schema:
    name: str
    version_table: str
    lock_key: int
    steps: tuple[Step, ...]  # steps[n] upgrades version n to n + 1

    @property
    def latest(self) -> int:
        return len(self.steps)


def _sql_step(version: int, table: str, sql: str) -> Step:
    async def step(conn: asyncpg.Connection) -> None:
        await conn.execute(sql)
        if version > 1:  # version 1 creates the table with its row
            await conn.execute(f"UPDATE {table} SET version = {version}")  # noqa: S608 - constants

    return step


# ---------------------------------------------------------------------------------------------
# data lake (rust/ingestion/src/sql_telemetry_db.rs, sql_migration.rs)

_DATA_LAKE_V1 = """
CREATE TYPE micromegas_property AS (key TEXT, value TEXT);
CREATE TABLE processes(
    process_id UUID,
    exe VARCHAR(255),
    username VARCHAR(255),
    realname VARCHAR(255),
    computer VARCHAR(255),
    distro VARCHAR(255),
    cpu_brand VARCHAR(255),
    tsc_frequency BIGINT,
    start_time TIMESTAMPTZ,
    start_ticks BIGINT,
    insert_time TIMESTAMPTZ,
    parent_process_id UUID,
    properties micromegas_property[]);
CREATE INDEX process_id ON processes(process_id);
CREATE INDEX parent_process_id ON processes(parent_process_id);
CREATE INDEX process_start_time ON processes(start_time);
CREATE TABLE streams(
    stream_id UUID,
    process_id UUID,
    dependencies_metadata BYTEA,
    objects_metadata BYTEA,
    tags TEXT[],
    properties micromegas_property[],
    insert_time TIMESTAMPTZ);
CREATE INDEX stream_id ON streams(stream_id);
CREATE INDEX stream_process_id ON streams(process_id);
CREATE INDEX stream_insert_time ON streams(insert_time);
CREATE TABLE blocks(
    block_id UUID,
    stream_id UUID,
    process_id UUID,
    begin_time TIMESTAMPTZ,
    begin_ticks BIGINT,
    end_time TIMESTAMPTZ,
    end_ticks BIGINT,
    nb_objects INT,
    object_offset BIGINT,
    payload_size BIGINT);
CREATE INDEX block_id ON blocks(block_id);
CREATE INDEX block_stream_id ON blocks(stream_id);
CREATE TABLE migration(version INTEGER);
INSERT INTO migration VALUES(1);
"""

_DATA_LAKE_V2 = """
ALTER TABLE blocks ADD insert_time TIMESTAMPTZ;
UPDATE blocks SET insert_time = end_time WHERE insert_time IS NULL;
CREATE INDEX block_begin_time ON blocks(begin_time);
CREATE INDEX block_end_time ON blocks(end_time);
CREATE INDEX block_insert_time ON blocks(insert_time);
CREATE INDEX process_insert_time ON processes(insert_time);
"""

# Rust builds these with CREATE UNIQUE INDEX CONCURRENTLY outside any transaction, to avoid
# blocking writers of a large live lake. Here they are built inside the step's transaction: the
# final state is identical, and CONCURRENTLY would wait for every transaction holding an older
# snapshot -- including other migrators blocked on our advisory lock, which wait for us in turn:
# an undetectable deadlock when several nodes start together. The cost is that writers of a big
# pre-v3 lake pause while the indexes build; fresh databases are empty.
_DATA_LAKE_V3 = """
CREATE UNIQUE INDEX IF NOT EXISTS processes_process_id_unique ON processes(process_id);
CREATE UNIQUE INDEX IF NOT EXISTS streams_stream_id_unique ON streams(stream_id);
CREATE UNIQUE INDEX IF NOT EXISTS blocks_block_id_unique ON blocks(block_id);
DROP INDEX IF EXISTS process_id;
DROP INDEX IF EXISTS stream_id;
DROP INDEX IF EXISTS block_id;
"""

_DATA_LAKE_V4 = "ALTER TABLE streams ADD COLUMN format TEXT NOT NULL DEFAULT 'micromegas-transit';"

_API_KEY_COLUMNS = """(
    key_id UUID PRIMARY KEY,
    key_hash BYTEA NOT NULL,
    name VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    revoked_by VARCHAR(255))"""

_DATA_LAKE_V5 = f"""
CREATE TABLE ingestion_api_keys {_API_KEY_COLUMNS};
CREATE UNIQUE INDEX ingestion_api_keys_key_hash ON ingestion_api_keys(key_hash);
CREATE TABLE analytics_api_keys {_API_KEY_COLUMNS};
CREATE UNIQUE INDEX analytics_api_keys_key_hash ON analytics_api_keys(key_hash);
"""

_DATA_LAKE_V6 = """
ALTER TABLE ingestion_api_keys ADD COLUMN audience VARCHAR(255);
UPDATE ingestion_api_keys SET audience = 'public' WHERE audience IS NULL;
ALTER TABLE ingestion_api_keys ALTER COLUMN audience SET NOT NULL;
ALTER TABLE ingestion_api_keys ADD CONSTRAINT ingestion_api_keys_audience_name
    CHECK (audience ~ '^[A-Za-z0-9_-]+$');
"""

_DATA_LAKE_V7 = """
CREATE TABLE audience_grants(
    audience VARCHAR(255) NOT NULL,
    axis VARCHAR(4) NOT NULL CHECK (axis IN ('read', 'mint')),
    selector VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    PRIMARY KEY (audience, axis, selector),
    CONSTRAINT audience_grants_audience_name CHECK (audience ~ '^[A-Za-z0-9_-]+$'),
    CONSTRAINT audience_grants_selector_shape CHECK (selector = '*' OR selector ~ '^(user|group):.+$'));
"""

_DATA_LAKE = _Schema(
    name="data lake",
    version_table="migration",
    lock_key=0,
    steps=tuple(
        _sql_step(n, "migration", sql)
        for n, sql in enumerate(
            (_DATA_LAKE_V1, _DATA_LAKE_V2, _DATA_LAKE_V3, _DATA_LAKE_V4, _DATA_LAKE_V5, _DATA_LAKE_V6, _DATA_LAKE_V7),
            start=1,
        )
    ),
)

# ---------------------------------------------------------------------------------------------
# lakehouse (rust/analytics/src/lakehouse/migration.rs)

_LAKEHOUSE_V1 = """
CREATE TABLE lakehouse_partitions(
    view_set_name VARCHAR(255),
    view_instance_id VARCHAR(255),
    begin_insert_time TIMESTAMPTZ,
    end_insert_time TIMESTAMPTZ,
    min_event_time TIMESTAMPTZ,
    max_event_time TIMESTAMPTZ,
    updated TIMESTAMPTZ,
    file_path VARCHAR(2047),
    file_size BIGINT,
    file_schema_hash BYTEA,
    source_data_hash BYTEA);
CREATE INDEX lh_part_begin_insert ON lakehouse_partitions(view_set_name, view_instance_id, begin_insert_time);
CREATE INDEX lh_part_end_insert ON lakehouse_partitions(view_set_name, view_instance_id, end_insert_time);
CREATE INDEX lh_part_min_time ON lakehouse_partitions(view_set_name, view_instance_id, min_event_time);
CREATE INDEX lh_part_max_time ON lakehouse_partitions(view_set_name, view_instance_id, max_event_time);
CREATE TABLE temporary_files(
    file_path VARCHAR(2047),
    file_size BIGINT,
    expiration TIMESTAMPTZ);
CREATE INDEX temporary_files_expiration ON temporary_files(expiration);
CREATE TABLE lakehouse_migration(version INTEGER);
INSERT INTO lakehouse_migration VALUES(1);
"""

# v2 stored Parquet footers in the partition row; v4 moved them to their own table and v6
# dropped that table (footers are read from the files). Replayed so the catalog matches Rust's.
_LAKEHOUSE_V2 = "ALTER TABLE lakehouse_partitions ADD file_metadata BYTEA;"


async def _lakehouse_v3(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        ALTER TABLE lakehouse_partitions ADD num_rows BIGINT;
        CREATE INDEX lakehouse_partitions_file_path ON lakehouse_partitions(file_path);
        """
    )
    # Rust backfills num_rows by parsing each stored Parquet footer. Only pre-v3 lakes that
    # already hold partitions need that; rather than guess row counts, refuse and say why.
    pending = await conn.fetchval("SELECT count(*) FROM lakehouse_partitions WHERE num_rows IS NULL")
    if pending:
        msg = (
            f"lakehouse schema v2 holds {pending} partitions whose num_rows must be read from their "
            "Parquet footers; upgrade this database with Micromegas's own migrator first"
        )
        raise MigrationError(msg)
    await conn.execute(
        """
        ALTER TABLE lakehouse_partitions ALTER COLUMN num_rows SET NOT NULL;
        UPDATE lakehouse_migration SET version = 3;
        """
    )


_LAKEHOUSE_V4 = """
CREATE TABLE partition_metadata(
    file_path VARCHAR(2047) PRIMARY KEY,
    metadata BYTEA NOT NULL,
    insert_time TIMESTAMPTZ NOT NULL);
INSERT INTO partition_metadata (file_path, metadata, insert_time)
    SELECT file_path, file_metadata, COALESCE(updated, now()) FROM lakehouse_partitions
    WHERE file_path IS NOT NULL AND file_metadata IS NOT NULL
    ON CONFLICT (file_path) DO NOTHING;
ALTER TABLE lakehouse_partitions DROP COLUMN file_metadata;
"""

# Rust's v5 also rewrote old footers for Arrow 57; the table holding them is dropped at v6.
_LAKEHOUSE_V5 = """
ALTER TABLE lakehouse_partitions ADD COLUMN partition_format_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE partition_metadata ADD COLUMN partition_format_version INTEGER NOT NULL DEFAULT 1;
"""

_LAKEHOUSE_V6 = "DROP TABLE IF EXISTS partition_metadata;"

# The exclusion constraint makes overlapping partitions of one view instance and schema
# impossible whoever writes them; btree_gist supplies the equality operators for GiST.
_LAKEHOUSE_V7_COLUMN = "ALTER TABLE lakehouse_partitions ADD COLUMN sort_order TEXT[];"
_LAKEHOUSE_V7_CONSTRAINT = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE lakehouse_partitions ADD CONSTRAINT lakehouse_partitions_no_overlap EXCLUDE USING gist (
    view_set_name WITH =,
    view_instance_id WITH =,
    file_schema_hash WITH =,
    tstzrange(begin_insert_time, end_insert_time) WITH &&);
"""


async def _lakehouse_v7(conn: asyncpg.Connection) -> None:
    await conn.execute(_LAKEHOUSE_V7_COLUMN)
    # pgserver's bundled PostgreSQL ships without contrib's btree_gist (observed with 0.1.4). Then
    # the constraint is left out and partition writers rely on their advisory locks alone.
    available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'btree_gist'")
    if available:
        await conn.execute(_LAKEHOUSE_V7_CONSTRAINT)
    else:
        _log.warning(
            "btree_gist is not available: lakehouse_partitions_no_overlap is not created "
            "(partition writers still serialise through advisory locks)"
        )
    await conn.execute("UPDATE lakehouse_migration SET version = 7")


_LAKEHOUSE_V8 = "ALTER TABLE lakehouse_partitions ADD COLUMN max_sort_key_time TIMESTAMPTZ;"

_LAKEHOUSE_V9 = """
CREATE TABLE query_deny_list(
    rule_id UUID PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    reason TEXT NOT NULL,
    match_expr TEXT NOT NULL,
    last_hit_at TIMESTAMPTZ);
"""

# v10 (Micromegas 0.32): view sets defined by DDL (CREATE MATERIALIZED VIEW). The three queries
# are stored verbatim; view_options is JSON text of the other options (time columns, deltas).
_LAKEHOUSE_V10 = """
CREATE TABLE lakehouse_view_set_definitions(
    view_set_name VARCHAR(255) PRIMARY KEY,
    definition_sql TEXT NOT NULL,
    extract_query TEXT NOT NULL,
    count_src_query TEXT NOT NULL,
    merge_partitions_query TEXT NOT NULL,
    update_group INTEGER NOT NULL,
    view_options TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by TEXT);
"""

# Micromegas 0.32 moved log_stats out of its code into this table: the v10 step seeds its
# definition, so a Micromegas service sharing the database keeps serving it. Sirius builds
# log_stats itself and ignores this row (a built-in view set wins over a stored definition).
_LOG_STATS_COUNT = """
        SELECT sum(nb_objects) as count
        FROM blocks
        WHERE array_has("streams.tags", 'log')
        AND insert_time >= '{begin}'
        AND insert_time < '{end}'
        ;"""
_LOG_STATS_EXTRACT = """
        SELECT date_bin('1 minute', time) as time_bin,
               process_id,
               level,
               target,
               count(*) as count
        FROM log_entries
        WHERE insert_time >= '{begin}'
        AND insert_time < '{end}'
        GROUP BY process_id, level, target, time_bin
        ORDER BY time_bin, process_id, level, target
        ;"""
_LOG_STATS_MERGE = """
        SELECT time_bin,
               process_id,
               level,
               target,
               sum(count) as count
        FROM {source}
        GROUP BY process_id, level, target, time_bin
        ;"""
_LOG_STATS_OPTIONS = (
    '{"max_time_column": "time_bin", "merge_partition_delta": "1 day", '
    '"merge_sort_order": ["time_bin", "process_id", "level", "target"], '
    '"min_time_column": "time_bin", "source_partition_delta": "1 day"}'
)
_LOG_STATS_DDL = (
    "CREATE MATERIALIZED VIEW log_stats WITH (\n"
    f"  extract_query = $${_LOG_STATS_EXTRACT}$$,\n"
    f"  count_src_query = $${_LOG_STATS_COUNT}$$,\n"
    f"  merge_partitions_query = $${_LOG_STATS_MERGE}$$,\n"
    "  update_group = 3000,\n  time_column = 'time_bin',\n  source_partition_delta = '1 day',\n"
    "  merge_partition_delta = '1 day',\n  merge_sort_order = 'time_bin, process_id, level, target'\n)"
)


async def _lakehouse_v10(conn: asyncpg.Connection) -> None:
    await conn.execute(_LAKEHOUSE_V10)
    await conn.execute(
        "INSERT INTO lakehouse_view_set_definitions (view_set_name, definition_sql, extract_query,"
        " count_src_query, merge_partitions_query, update_group, view_options)"
        " VALUES ('log_stats', $1, $2, $3, $4, 3000, $5) ON CONFLICT (view_set_name) DO NOTHING",
        _LOG_STATS_DDL,
        _LOG_STATS_EXTRACT,
        _LOG_STATS_COUNT,
        _LOG_STATS_MERGE,
        _LOG_STATS_OPTIONS,
    )
    await conn.execute("UPDATE lakehouse_migration SET version = 10")


def _lakehouse_steps() -> tuple[Step, ...]:
    sql = {1: _LAKEHOUSE_V1, 2: _LAKEHOUSE_V2, 4: _LAKEHOUSE_V4, 5: _LAKEHOUSE_V5}
    sql |= {6: _LAKEHOUSE_V6, 8: _LAKEHOUSE_V8, 9: _LAKEHOUSE_V9}
    special: dict[int, Step] = {3: _lakehouse_v3, 7: _lakehouse_v7, 10: _lakehouse_v10}
    return tuple(special.get(n) or _sql_step(n, "lakehouse_migration", sql[n]) for n in range(1, 11))


_LAKEHOUSE = _Schema(name="lakehouse", version_table="lakehouse_migration", lock_key=1, steps=_lakehouse_steps())

# ---------------------------------------------------------------------------------------------
# Sirius's own tables. Micromegas has none of them, so they live in a third schema with its own
# version table and lock key: the two schemas above keep Micromegas's numbering, and a Rust
# service sharing the database neither sees nor trips over these steps.

_SIRIUS_V1 = """
CREATE TABLE flightsql_query_audit(
    query_id VARCHAR(64) NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    client_ip TEXT NOT NULL,
    client TEXT NOT NULL,
    agent TEXT NOT NULL,
    entrypoint TEXT NOT NULL,
    session TEXT,
    notebook TEXT,
    cell TEXT,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    user_name TEXT,
    service_account BOOLEAN NOT NULL,
    service_account_name TEXT,
    org_id TEXT,
    sql TEXT NOT NULL,
    sql_hash VARCHAR(16) NOT NULL,
    range_begin TIMESTAMPTZ,
    range_end TIMESTAMPTZ,
    row_limit BIGINT,
    context_init_ms DOUBLE PRECISION NOT NULL,
    planning_ms DOUBLE PRECISION NOT NULL,
    execution_ms DOUBLE PRECISION NOT NULL,
    setup_ms DOUBLE PRECISION NOT NULL,
    total_ms DOUBLE PRECISION NOT NULL,
    status VARCHAR(16) NOT NULL,
    error TEXT,
    error_class VARCHAR(16),
    output_rows BIGINT,
    bytes_scanned BIGINT NOT NULL,
    peak_memory_bytes BIGINT,
    spilled_bytes BIGINT NOT NULL,
    spill_count BIGINT NOT NULL,
    deny_rule_id UUID);
CREATE INDEX flightsql_query_audit_time ON flightsql_query_audit(time);
CREATE TABLE sirius_migration(version INTEGER);
INSERT INTO sirius_migration VALUES(1);
"""

# v2: what Sirius's keys carry beyond Micromegas's key tables (the audiences of analytics keys,
# stored groups with the reserved ``admins``), and a NOTIFY on every change to who may call, so
# running services drop a revoked key at once (``sirius.identity``'s key store LISTENs). The
# triggers on Micromegas's tables fire on the columns that matter only: ``last_used_at`` stamps
# stay silent. Micromegas's own tools changing its tables notify the services the same way.
_SIRIUS_V2 = """
CREATE TABLE sirius_api_key_audiences(
    key_id UUID NOT NULL,
    audience VARCHAR(255) NOT NULL CHECK (audience ~ '^[A-Za-z0-9_-]+$'),
    PRIMARY KEY (key_id, audience));
CREATE TABLE sirius_group_members(
    group_name VARCHAR(255) NOT NULL CHECK (group_name ~ '^[A-Za-z0-9_.-]+$'),
    member VARCHAR(255) NOT NULL CHECK (member <> ''),
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    PRIMARY KEY (group_name, member));
CREATE FUNCTION sirius_identity_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sirius_identity', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER sirius_identity_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF key_hash, name, audience, revoked_at ON ingestion_api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION sirius_identity_changed();
CREATE TRIGGER sirius_identity_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF key_hash, name, revoked_at ON analytics_api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION sirius_identity_changed();
CREATE TRIGGER sirius_identity_changed
    AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON sirius_api_key_audiences
    FOR EACH STATEMENT EXECUTE FUNCTION sirius_identity_changed();
CREATE TRIGGER sirius_identity_changed
    AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON sirius_group_members
    FOR EACH STATEMENT EXECUTE FUNCTION sirius_identity_changed();
"""


async def _sirius_v3(conn: asyncpg.Connection) -> None:
    """v3: ``blocks`` partitioned by day of ``insert_time`` (``_block_partitions``), rows moved in one transaction."""
    await partition_blocks_table(conn, time.time_ns())
    await conn.execute("UPDATE sirius_migration SET version = 3")


_SIRIUS = _Schema(
    name="sirius",
    version_table="sirius_migration",
    lock_key=0x53495249,  # "SIRI": clear of Micromegas's keys 0 and 1
    steps=(_sql_step(1, "sirius_migration", _SIRIUS_V1), _sql_step(2, "sirius_migration", _SIRIUS_V2), _sirius_v3),
)

DATA_LAKE_SCHEMA_VERSION = _DATA_LAKE.latest
"""Latest data-lake schema version (Micromegas 0.29 / ``main`` at 29b0be2: 7)."""

LAKEHOUSE_SCHEMA_VERSION = _LAKEHOUSE.latest
"""Latest lakehouse schema version (10: ``lakehouse_view_set_definitions``)."""

SIRIUS_SCHEMA_VERSION = _SIRIUS.latest
"""Latest version of Sirius's own tables (1: ``flightsql_query_audit``; 2: key audiences, stored groups
and the identity change notification; 3: ``blocks`` partitioned by day), in ``sirius_migration``."""


# ---------------------------------------------------------------------------------------------
# runner


class _Connections:
    """Hands out connections from a pool or from a DSN (one fresh connection each)."""

    def __init__(self, dsn_or_pool: str | asyncpg.Pool) -> None:
        self._target = dsn_or_pool

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncpg.Connection]:
        if isinstance(self._target, asyncpg.Pool):
            # Released connections are reset by asyncpg (rollback, pg_advisory_unlock_all).
            async with self._target.acquire() as conn:
                yield conn
            return
        conn = await asyncpg.connect(self._target, timeout=10.0)
        try:
            yield conn
        finally:
            await conn.close()

    def serialized(self) -> AbstractAsyncContextManager[object]:
        """Serialise migrations that share a pool within one event loop.

        Each migration holds two connections and waits on the advisory lock while holding the
        first; concurrent migrations on one small pool could otherwise take every connection and
        wait for each other forever. Other processes are kept out by the advisory lock.
        """
        if not isinstance(self._target, asyncpg.Pool):
            return nullcontext()
        if self._target.get_max_size() < 2:
            msg = "migrate() needs a pool of at least two connections (lock holder + migrator)"
            raise MigrationError(msg)
        loop = asyncio.get_running_loop()
        lock = _LOOP_LOCKS.get(loop)
        if lock is None:
            lock = _LOOP_LOCKS[loop] = asyncio.Lock()
        return lock


_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _read_version(conn: asyncpg.Connection, schema: _Schema) -> int:
    # A missing version table means a fresh database (version 0). to_regclass avoids raising,
    # which would abort the caller's transaction.
    if await conn.fetchval("SELECT to_regclass($1) IS NULL", schema.version_table):
        return 0
    version = await conn.fetchval(f"SELECT version FROM {schema.version_table}")  # noqa: S608 - constant name
    return 0 if version is None else int(version)


async def _migrate_schema(conns: _Connections, schema: _Schema, target: int | None = None) -> None:
    target = schema.latest if target is None else target
    with pg_errors(f"migrating the {schema.name} schema", MigrationError):
        async with conns.connect() as conn:
            version = await _read_version(conn, schema)
            if version >= target:
                _warn_if_newer(schema, version)
                return
            async with conns.connect() as lock_conn, lock_conn.transaction():
                await lock_conn.execute("SELECT pg_advisory_xact_lock($1)", schema.lock_key)
                version = await _read_version(conn, schema)  # another node may have finished
                while version < target:
                    _log.debug("upgrading the %s schema from v%d to v%d", schema.name, version, version + 1)
                    async with conn.transaction():
                        await schema.steps[version](conn)
                        reached = await _read_version(conn, schema)
                    if reached != version + 1:
                        msg = f"{schema.name} step {version + 1} left the schema at version {reached}"
                        raise MigrationError(msg)
                    version = reached
                _warn_if_newer(schema, version)


def _warn_if_newer(schema: _Schema, version: int) -> None:
    # Newer Micromegas releases only add tables and trailing nullable columns, which Sirius's
    # positional inserts tolerate; refusing to start would break a shared deployment.
    if version > schema.latest:
        _log.warning(
            "the %s schema is at v%d, newer than Sirius knows (v%d); continuing",
            schema.name,
            version,
            schema.latest,
        )


async def migrate(dsn_or_pool: str | asyncpg.Pool) -> None:
    """Bring the data-lake and lakehouse schemas, and Sirius's own tables, to their latest versions.

    Safe to call from every service at start-up, concurrently and repeatedly: an up-to-date
    database costs a few cheap reads and no lock. Then makes sure today's and the next two days'
    ``blocks`` partitions exist (``_block_partitions``; a busy ``blocks`` is left to the daemon).

    Args:
        dsn_or_pool: a ``postgresql://`` DSN, or a pool with at least two connections.

    Raises:
        MigrationError: PostgreSQL failed or refused a step; the schema is left at the last
            completed version.
    """
    conns = _Connections(dsn_or_pool)
    async with conns.serialized():
        await _migrate_schema(conns, _DATA_LAKE)
        await _migrate_schema(conns, _LAKEHOUSE)
        await _migrate_schema(conns, _SIRIUS)
    await _ensure_block_partitions(dsn_or_pool)


async def _ensure_block_partitions(dsn_or_pool: str | asyncpg.Pool) -> None:
    """Today's and the next days' ``blocks`` partitions, at every start (``_block_partitions``)."""
    pool = dsn_or_pool if isinstance(dsn_or_pool, asyncpg.Pool) else None
    with pg_errors("creating the blocks partitions", MigrationError):
        try:
            if pool is not None:
                await ensure_block_partitions(pool, time.time_ns())
                return
            async with asyncpg.create_pool(dsn_or_pool, min_size=1, max_size=1) as own:
                await ensure_block_partitions(own, time.time_ns())
        except asyncpg.LockNotAvailableError:
            # Busy readers of blocks: the default partition takes the rows until a later try.
            _log.warning("blocks partitions not created now (blocks is busy); the daemon's hourly pass retries")


async def schema_versions(dsn_or_pool: str | asyncpg.Pool) -> tuple[int, int]:
    """Return the ``(data lake, lakehouse)`` schema versions; 0 means not created yet.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    with pg_errors("reading schema versions"):
        async with _Connections(dsn_or_pool).connect() as conn:
            return await _read_version(conn, _DATA_LAKE), await _read_version(conn, _LAKEHOUSE)
