"""Migrations against a real PostgreSQL: exact Micromegas schema, versions, idempotence, concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import uuid
from typing import Any

import asyncpg
import pytest

from sirius.lakehouse._exceptions import MigrationError
from sirius.lakehouse._migrations import (
    _DATA_LAKE,
    _LAKEHOUSE,
    DATA_LAKE_SCHEMA_VERSION,
    LAKEHOUSE_SCHEMA_VERSION,
    SIRIUS_SCHEMA_VERSION,
    _Connections,
    _migrate_schema,
    migrate,
    schema_versions,
)
from sirius.lakehouse._pool import create_pool
from sirius.lakehouse._query_audit import AUDIT_COLUMNS
from sirius.lakehouse._view_ddl import CreateView, parse_view_ddl

# (column, udt_name, character_maximum_length, is_nullable) in ordinal order (micromegas-wire.md §7.1, §8)
PROCESSES = [
    ("process_id", "uuid", None, "YES"),
    ("exe", "varchar", 255, "YES"),
    ("username", "varchar", 255, "YES"),
    ("realname", "varchar", 255, "YES"),
    ("computer", "varchar", 255, "YES"),
    ("distro", "varchar", 255, "YES"),
    ("cpu_brand", "varchar", 255, "YES"),
    ("tsc_frequency", "int8", None, "YES"),
    ("start_time", "timestamptz", None, "YES"),
    ("start_ticks", "int8", None, "YES"),
    ("insert_time", "timestamptz", None, "YES"),
    ("parent_process_id", "uuid", None, "YES"),
    ("properties", "_micromegas_property", None, "YES"),
]
STREAMS = [
    ("stream_id", "uuid", None, "YES"),
    ("process_id", "uuid", None, "YES"),
    ("dependencies_metadata", "bytea", None, "YES"),
    ("objects_metadata", "bytea", None, "YES"),
    ("tags", "_text", None, "YES"),
    ("properties", "_micromegas_property", None, "YES"),
    ("insert_time", "timestamptz", None, "YES"),
    ("format", "text", None, "NO"),
]
BLOCKS = [
    ("block_id", "uuid", None, "YES"),
    ("stream_id", "uuid", None, "YES"),
    ("process_id", "uuid", None, "YES"),
    ("begin_time", "timestamptz", None, "YES"),
    ("begin_ticks", "int8", None, "YES"),
    ("end_time", "timestamptz", None, "YES"),
    ("end_ticks", "int8", None, "YES"),
    ("nb_objects", "int4", None, "YES"),
    ("object_offset", "int8", None, "YES"),
    ("payload_size", "int8", None, "YES"),
    ("insert_time", "timestamptz", None, "YES"),
]
LAKEHOUSE_PARTITIONS = [
    ("view_set_name", "varchar", 255, "YES"),
    ("view_instance_id", "varchar", 255, "YES"),
    ("begin_insert_time", "timestamptz", None, "YES"),
    ("end_insert_time", "timestamptz", None, "YES"),
    ("min_event_time", "timestamptz", None, "YES"),
    ("max_event_time", "timestamptz", None, "YES"),
    ("updated", "timestamptz", None, "YES"),
    ("file_path", "varchar", 2047, "YES"),
    ("file_size", "int8", None, "YES"),
    ("file_schema_hash", "bytea", None, "YES"),
    ("source_data_hash", "bytea", None, "YES"),
    ("num_rows", "int8", None, "NO"),
    ("partition_format_version", "int4", None, "NO"),
    ("sort_order", "_text", None, "YES"),
    ("max_sort_key_time", "timestamptz", None, "YES"),
]
TEMPORARY_FILES = [
    ("file_path", "varchar", 2047, "YES"),
    ("file_size", "int8", None, "YES"),
    ("expiration", "timestamptz", None, "YES"),
]
QUERY_DENY_LIST = [
    ("rule_id", "uuid", None, "NO"),
    ("created_at", "timestamptz", None, "NO"),
    ("created_by", "varchar", 255, "NO"),
    ("reason", "text", None, "NO"),
    ("match_expr", "text", None, "NO"),
    ("last_hit_at", "timestamptz", None, "YES"),
]
VIEW_SET_DEFINITIONS = [
    ("view_set_name", "varchar", 255, "NO"),
    ("definition_sql", "text", None, "NO"),
    ("extract_query", "text", None, "NO"),
    ("count_src_query", "text", None, "NO"),
    ("merge_partitions_query", "text", None, "NO"),
    ("update_group", "int4", None, "NO"),
    ("view_options", "text", None, "NO"),
    ("created_at", "timestamptz", None, "NO"),
    ("updated_at", "timestamptz", None, "NO"),
    ("updated_by", "text", None, "YES"),
]
API_KEYS = [
    ("key_id", "uuid", None, "NO"),
    ("key_hash", "bytea", None, "NO"),
    ("name", "varchar", 255, "NO"),
    ("created_at", "timestamptz", None, "NO"),
    ("created_by", "varchar", 255, "NO"),
    ("last_used_at", "timestamptz", None, "YES"),
    ("revoked_at", "timestamptz", None, "YES"),
    ("revoked_by", "varchar", 255, "YES"),
]
AUDIENCE_GRANTS = [
    ("audience", "varchar", 255, "NO"),
    ("axis", "varchar", 4, "NO"),
    ("selector", "varchar", 255, "NO"),
    ("created_at", "timestamptz", None, "NO"),
    ("created_by", "varchar", 255, "NO"),
]

# index name -> (unique, columns) (micromegas-wire.md §7.2 and §8)
INDEXES = {
    "processes": {
        "processes_process_id_unique": (True, "(process_id)"),
        "parent_process_id": (False, "(parent_process_id)"),
        "process_start_time": (False, "(start_time)"),
        "process_insert_time": (False, "(insert_time)"),
    },
    "streams": {
        "streams_stream_id_unique": (True, "(stream_id)"),
        "stream_process_id": (False, "(process_id)"),
        "stream_insert_time": (False, "(insert_time)"),
    },
    "blocks": {
        # Sirius v3 partitions blocks by insert_time: the unique index must hold the partition key;
        # block_id alone stays unique through the blocks_block_id_once trigger (test_block_partitions).
        "blocks_block_id_unique": (True, "(block_id, insert_time)"),
        "block_stream_id": (False, "(stream_id)"),
        "block_begin_time": (False, "(begin_time)"),
        "block_end_time": (False, "(end_time)"),
        "block_insert_time": (False, "(insert_time)"),
    },
    "lakehouse_partitions": {
        "lh_part_begin_insert": (False, "(view_set_name, view_instance_id, begin_insert_time)"),
        "lh_part_end_insert": (False, "(view_set_name, view_instance_id, end_insert_time)"),
        "lh_part_min_time": (False, "(view_set_name, view_instance_id, min_event_time)"),
        "lh_part_max_time": (False, "(view_set_name, view_instance_id, max_event_time)"),
        "lakehouse_partitions_file_path": (False, "(file_path)"),
        "lakehouse_partitions_no_overlap": (
            False,
            "gist (view_set_name, view_instance_id, file_schema_hash, tstzrange(begin_insert_time, end_insert_time))",
        ),
    },
    "temporary_files": {"temporary_files_expiration": (False, "(expiration)")},
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def columns(conn: asyncpg.Connection, table: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT column_name, udt_name, character_maximum_length, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [tuple(r) for r in rows]


async def indexes(conn: asyncpg.Connection, table: str) -> dict[str, tuple[bool, str]]:
    rows = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table)
    found = {}
    for name, definition in rows:
        # "CREATE [UNIQUE] INDEX name ON public.table USING btree (cols)"
        using = definition.split(" USING ", 1)[1]
        found[name] = (definition.startswith("CREATE UNIQUE"), using.removeprefix("btree "))
    return found


async def snapshot(dsn: str) -> dict[str, Any]:
    """Everything a migration could change, to compare before/after a re-run."""
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "columns": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT table_name, column_name, udt_name, column_default, is_nullable FROM information_schema.columns"
                    " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
                )
            ],
            "indexes": [tuple(r) for r in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes ORDER BY 1")],
            "constraints": [
                tuple(r) for r in await conn.fetch("SELECT conname, contype::text FROM pg_constraint ORDER BY 1")
            ],
            "types": [tuple(r) for r in await conn.fetch("SELECT typname FROM pg_type ORDER BY 1")],
            "versions": (await conn.fetch("TABLE migration"), await conn.fetch("TABLE lakehouse_migration")),
        }
    finally:
        await conn.close()


def test_latest_versions() -> None:
    assert (DATA_LAKE_SCHEMA_VERSION, LAKEHOUSE_SCHEMA_VERSION) == (7, 10)


def test_fresh_database_gets_the_exact_schema(pg_dsn: str) -> None:
    async def scenario() -> None:
        assert await schema_versions(pg_dsn) == (0, 0)
        await migrate(pg_dsn)
        assert await schema_versions(pg_dsn) == (7, 10)
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await columns(conn, "processes") == PROCESSES
            assert await columns(conn, "streams") == STREAMS
            assert await columns(conn, "blocks") == BLOCKS
            assert await columns(conn, "lakehouse_partitions") == LAKEHOUSE_PARTITIONS
            assert await columns(conn, "temporary_files") == TEMPORARY_FILES
            assert await columns(conn, "query_deny_list") == QUERY_DENY_LIST
            assert await columns(conn, "lakehouse_view_set_definitions") == VIEW_SET_DEFINITIONS
            # log_stats seeded as Micromegas 0.32 does; its DDL text parses back to its columns
            seeded = await conn.fetch("SELECT * FROM lakehouse_view_set_definitions")
            assert [(r["view_set_name"], r["update_group"], r["updated_by"]) for r in seeded] == [
                ("log_stats", 3000, None)
            ]
            parsed = parse_view_ddl(seeded[0]["definition_sql"])
            assert isinstance(parsed, CreateView)
            assert parsed.definition.extract_query == seeded[0]["extract_query"]
            assert parsed.definition.count_src_query == seeded[0]["count_src_query"]
            assert parsed.definition.merge_partitions_query == seeded[0]["merge_partitions_query"]
            assert parsed.definition.options.to_json() == seeded[0]["view_options"]
            assert await columns(conn, "ingestion_api_keys") == [*API_KEYS, ("audience", "varchar", 255, "NO")]
            assert await columns(conn, "analytics_api_keys") == API_KEYS
            assert await columns(conn, "audience_grants") == AUDIENCE_GRANTS
            assert await columns(conn, "migration") == [("version", "int4", None, "YES")]
            assert await columns(conn, "lakehouse_migration") == [("version", "int4", None, "YES")]
            assert await conn.fetch("TABLE migration") == [(7,)]
            assert await conn.fetch("TABLE lakehouse_migration") == [(10,)]
            # v4 and v6 tables are gone, as in Rust
            assert await conn.fetchval("SELECT to_regclass('partition_metadata')") is None
            # the composite type: (key TEXT, value TEXT)
            attributes = await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'micromegas_property'::regclass AND attnum > 0 ORDER BY attnum"
            )
            assert [tuple(a) for a in attributes] == [("key", "text"), ("value", "text")]
            defaults = dict(
                await conn.fetch(
                    "SELECT table_name || '.' || column_name, column_default FROM information_schema.columns"
                    " WHERE column_default IS NOT NULL AND table_schema = 'public'"
                )
            )
            assert defaults == {
                "streams.format": "'micromegas-transit'::text",
                "lakehouse_partitions.partition_format_version": "1",
                "lakehouse_view_set_definitions.view_options": "'{}'::text",
                "lakehouse_view_set_definitions.created_at": "now()",
                "lakehouse_view_set_definitions.updated_at": "now()",
            }
            assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'") == 1
        finally:
            await conn.close()

    run(scenario())


def test_indexes(pg_dsn: str) -> None:
    async def scenario() -> None:
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        try:
            for table, expected in INDEXES.items():
                assert await indexes(conn, table) == expected, table
            assert await indexes(conn, "ingestion_api_keys") == {
                "ingestion_api_keys_pkey": (True, "(key_id)"),
                "ingestion_api_keys_key_hash": (True, "(key_hash)"),
            }
            assert await indexes(conn, "audience_grants") == {
                "audience_grants_pkey": (True, "(audience, axis, selector)")
            }
            kind = await conn.fetchval(
                "SELECT contype::text FROM pg_constraint WHERE conname = 'lakehouse_partitions_no_overlap'"
            )
            assert kind == "x"
        finally:
            await conn.close()

    run(scenario())


def test_constraints_behave_like_micromegas(pg_dsn: str) -> None:
    t0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)

    async def scenario() -> None:
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        insert = (
            "INSERT INTO lakehouse_partitions VALUES($1, 'global', $2, $3, NULL, NULL, now(), NULL, 0, $4, $5, 0, 2)"
        )
        hash8 = (0).to_bytes(8, "little")
        try:
            await conn.execute(insert, "log_entries", t0, t0 + hour, b"\x04", hash8)
            await conn.execute(insert, "log_entries", t0 + hour, t0 + 2 * hour, b"\x04", hash8)  # adjacent
            await conn.execute(insert, "log_entries", t0, t0 + hour, b"\x05", hash8)  # other schema
            await conn.execute(insert, "measures", t0, t0 + hour, b"\x04", hash8)  # other view set
            with pytest.raises(asyncpg.ExclusionViolationError):
                await conn.execute(insert, "log_entries", t0 + hour / 2, t0 + 3 * hour / 2, b"\x04", hash8)
            assert await conn.fetchval("SELECT sort_order IS NULL FROM lakehouse_partitions LIMIT 1")
            grant = "INSERT INTO audience_grants VALUES($1, $2, $3, now(), 'test')"
            await conn.execute(grant, "public", "read", "*")
            await conn.execute(grant, "team_a", "mint", "group:admins")
            for audience, axis, selector in [
                ("bad audience!", "read", "*"),
                ("a", "mint", "someone"),
                ("a", "rd", "*"),
            ]:
                with pytest.raises(asyncpg.CheckViolationError):
                    await conn.execute(grant, audience, axis, selector)
            one_block = "INSERT INTO blocks (block_id, insert_time) VALUES('00000000-0000-0000-0000-000000000001', $1)"
            assert await conn.execute(one_block, t0) == "INSERT 0 1"
            # a second row with the id is skipped, whatever its insert_time (the dedup trigger)
            assert await conn.execute(one_block, t0) == "INSERT 0 0"
            assert await conn.execute(one_block, t0 + hour * 48) == "INSERT 0 0"
            assert await conn.fetchval("SELECT count(*) FROM blocks") == 1
        finally:
            await conn.close()

    run(scenario())


def test_rerun_is_a_no_op(pg_dsn: str) -> None:
    run(migrate(pg_dsn))
    before = run(snapshot(pg_dsn))
    run(migrate(pg_dsn))
    run(migrate(pg_dsn))
    assert run(snapshot(pg_dsn)) == before


def test_concurrent_migrations_from_separate_connections(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sirius.lakehouse._migrations")

    async def scenario() -> None:
        await asyncio.gather(*(migrate(pg_dsn) for _ in range(4)))

    run(scenario())
    # every step ran exactly once: the others waited on the lock, then found the work done
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upgrading")]
    assert len(steps) == len(set(steps)) == 7 + 10 + SIRIUS_SCHEMA_VERSION
    state = run(snapshot(pg_dsn))
    assert [tuple(r) for r in state["versions"][0]] == [(7,)]
    assert [tuple(r) for r in state["versions"][1]] == [(10,)]
    assert [t for t in state["types"] if t == ("micromegas_property",)] == [("micromegas_property",)]


def test_concurrent_migrations_from_separate_threads(pg_dsn: str) -> None:
    # Each thread has its own event loop, like separate service processes starting together.
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            asyncio.run(migrate(pg_dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert run(schema_versions(pg_dsn)) == (7, 10)


def test_concurrent_migrations_on_one_small_pool(pg_dsn: str) -> None:
    async def scenario() -> None:
        pool = await create_pool(pg_dsn, min_size=1, max_size=2)
        try:
            await asyncio.gather(*(migrate(pool) for _ in range(4)))
            assert await schema_versions(pool) == (7, 10)
        finally:
            await pool.close()

    run(scenario())


def test_pool_of_one_connection_is_refused(pg_dsn: str) -> None:
    async def scenario() -> None:
        pool = await create_pool(pg_dsn, min_size=1, max_size=1)
        try:
            with pytest.raises(MigrationError, match="two connections"):
                await migrate(pool)
        finally:
            await pool.close()

    run(scenario())


def test_upgrade_from_an_old_rust_database_keeps_its_rows(pg_dsn: str) -> None:
    block_id, stream_id, process_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    end = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)

    async def scenario() -> None:
        conns = _Connections(pg_dsn)
        await _migrate_schema(conns, _DATA_LAKE, target=1)
        await _migrate_schema(conns, _LAKEHOUSE, target=2)
        assert await schema_versions(pg_dsn) == (1, 2)
        conn = await asyncpg.connect(pg_dsn)
        try:
            # a v1 block row: ten positional columns, no insert_time yet
            await conn.execute(
                "INSERT INTO blocks VALUES($1, $2, $3, $4, 0, $5, 10, 3, 0, 42)",
                block_id,
                stream_id,
                process_id,
                end - dt.timedelta(seconds=1),
                end,
            )
            await conn.execute(
                "INSERT INTO streams VALUES($1, $2, '', '', '{log}', '{}', now())", stream_id, process_id
            )
            await migrate(pg_dsn)
            assert await conn.fetchval("SELECT insert_time FROM blocks") == end  # v2 backfill
            assert await conn.fetchval("SELECT format FROM streams") == "micromegas-transit"  # v4 default
            assert await indexes(conn, "blocks") == INDEXES["blocks"]
            assert await columns(conn, "lakehouse_partitions") == LAKEHOUSE_PARTITIONS
        finally:
            await conn.close()

    run(scenario())
    assert run(schema_versions(pg_dsn)) == (7, 10)


def test_failed_step_raises_and_leaves_the_last_complete_version(pg_dsn: str) -> None:
    async def scenario() -> None:
        conns = _Connections(pg_dsn)
        await _migrate_schema(conns, _DATA_LAKE)
        await _migrate_schema(conns, _LAKEHOUSE, target=2)
        conn = await asyncpg.connect(pg_dsn)
        try:
            # a v2 partition whose num_rows only a Parquet footer could tell
            await conn.execute(
                "INSERT INTO lakehouse_partitions (view_set_name, file_path, file_metadata) VALUES('v', 'p', 'x')"
            )
        finally:
            await conn.close()
        with pytest.raises(MigrationError, match="Parquet footers"):
            await migrate(pg_dsn)
        assert await schema_versions(pg_dsn) == (7, 2)
        conn = await asyncpg.connect(pg_dsn)
        try:  # the failed v3 step was rolled back entirely
            names = [c[0] for c in await columns(conn, "lakehouse_partitions")]
            assert "num_rows" not in names
        finally:
            await conn.close()

    run(scenario())


def test_newer_schema_from_a_newer_micromegas_is_tolerated(pg_dsn: str) -> None:
    async def scenario() -> None:
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE migration SET version = 9")
        finally:
            await conn.close()
        await migrate(pg_dsn)
        assert await schema_versions(pg_dsn) == (9, 10)

    run(scenario())


def test_unreachable_database_is_a_migration_error() -> None:
    with pytest.raises(MigrationError):
        run(migrate("postgresql://postgres@127.0.0.1:1/nothing"))


def test_sirius_tables_live_outside_the_micromegas_numbering(pg_dsn: str) -> None:
    """The audit and identity tables come with their own version table; Micromegas's two versions are untouched."""

    async def scenario() -> None:
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert SIRIUS_SCHEMA_VERSION == 3
            assert await conn.fetch("TABLE sirius_migration") == [(3,)]
            for table in ("sirius_api_key_audiences", "sirius_group_members"):
                assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
            assert await conn.fetch("TABLE lakehouse_migration") == [(LAKEHOUSE_SCHEMA_VERSION,)]
            names = [c[0] for c in await columns(conn, "flightsql_query_audit")]
            assert names == list(AUDIT_COLUMNS)
            index = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'flightsql_query_audit_time'"
            )
            assert index.endswith('("time")')
        finally:
            await conn.close()
        await migrate(pg_dsn)  # idempotent

    run(scenario())
