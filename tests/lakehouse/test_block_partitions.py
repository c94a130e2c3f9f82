"""``blocks`` partitioned by day on a real PostgreSQL: the migration, idempotent inserts, retention by partition drop.

Retention is checked from PostgreSQL's own books: the catalog (``pg_inherits``, ``pg_class``) for
the partitions, an ``AFTER DELETE`` row trigger added by the test for every row delete (it fires
in every partition, so a row delete in a dropped partition would be recorded), and
``pg_stat_user_tables.n_tup_del`` for the partitions that stay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
import uuid
from typing import Any

import asyncpg
import pytest

from sirius.lakehouse import (
    ConfigurationError,
    DataLake,
    LakehouseConfig,
    MaintenanceDaemon,
    PassKind,
    apply_retention,
    create_pool,
    list_partitions,
    migrate,
)
from sirius.lakehouse._block_partitions import detach_block_partition, ensure_block_partitions, list_block_partitions
from sirius.lakehouse._migrations import _DATA_LAKE, _LAKEHOUSE, _SIRIUS, _Connections, _migrate_schema
from sirius.lakehouse._retention_policy import RetentionPolicy, parse_retention_by_view
from sirius.tracing.transit import Block

DAY = dt.timedelta(days=1)
NS_PER_DAY = 86_400 * 10**9


def _ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**9


def _name(t: dt.datetime) -> str:
    return f"blocks_p{t:%Y%m%d}"


async def _attached(conn: Any) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'blocks'::regclass ORDER BY 1"
    )
    return [r[0] for r in rows]


async def _tables_like(conn: Any, pattern: str) -> list[str]:
    return [
        r[0]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname LIKE $1 AND relkind IN ('r', 'p') ORDER BY 1", pattern
        )
    ]


# Micromegas readers' queries (rust/analytics: blocks_view, process_streams, log_stats count) and a full dump.
READER_QUERIES = (
    "SELECT count(*), sum(payload_size), sum(nb_objects) FROM blocks",
    "SELECT md5(string_agg(b::text, '|' ORDER BY block_id)) FROM blocks b",
    "SELECT (insert_time AT TIME ZONE 'UTC')::date AS day, count(*) FROM blocks GROUP BY 1 ORDER BY 1 NULLS FIRST",
    "SELECT block_id FROM blocks WHERE stream_id = '00000000-0000-0000-0000-0000000000aa' ORDER BY insert_time LIMIT 1",
    "SELECT sum(nb_objects) FROM blocks WHERE insert_time >= now() - interval '3 days' AND insert_time < now()",
    "SELECT b.block_id, s.tags FROM blocks b JOIN streams s USING (stream_id) ORDER BY b.block_id LIMIT 5",
)


def test_migration_of_a_populated_plain_table_keeps_every_row_and_answer(pg_dsn: str) -> None:
    async def scenario() -> None:
        conns = _Connections(pg_dsn)
        await _migrate_schema(conns, _DATA_LAKE)
        await _migrate_schema(conns, _LAKEHOUSE)
        await _migrate_schema(conns, _SIRIUS, target=2)  # the layout before Sirius v3: Micromegas's plain table
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'blocks'") == "r"
            columns_before = await conn.fetch(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_name = 'blocks' ORDER BY ordinal_position"
            )
            await conn.execute(
                "INSERT INTO streams VALUES('00000000-0000-0000-0000-0000000000aa', gen_random_uuid(), '', '', '{log}',"
                " '{}', now())"
            )
            # 5,000 blocks over the last 12 days, two without insert_time (a foreign writer's)
            await conn.execute(
                "INSERT INTO blocks SELECT gen_random_uuid(),"
                " CASE WHEN g % 7 = 0 THEN '00000000-0000-0000-0000-0000000000aa'::uuid ELSE gen_random_uuid() END,"
                " gen_random_uuid(), now() - g * interval '200 seconds', g, now() - g * interval '199 seconds',"
                " g + 10, g % 50, g * 3, 1000 + g, now() - g * interval '200 seconds'"
                " FROM generate_series(1, 5000) g"
            )
            await conn.execute("INSERT INTO blocks (block_id, nb_objects) VALUES (gen_random_uuid(), 1), (NULL, 2)")
            answers_before = [await conn.fetch(sql) for sql in READER_QUERIES]
            days = await conn.fetchval(
                "SELECT count(DISTINCT (insert_time AT TIME ZONE 'UTC')::date) FROM blocks WHERE insert_time IS NOT NULL"
            )

            await migrate(pg_dsn)

            assert await conn.fetch("TABLE sirius_migration") == [(3,)]
            assert await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'blocks'") == "p"
            columns_after = await conn.fetch(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_name = 'blocks' ORDER BY ordinal_position"
            )
            assert columns_after == columns_before
            assert [await conn.fetch(sql) for sql in READER_QUERIES] == answers_before
            assert answers_before[0][0][0] == 5002
            index_names = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'blocks' ORDER BY 1")
            assert [r[0] for r in index_names] == [
                "block_begin_time",
                "block_end_time",
                "block_insert_time",
                "block_stream_id",
                "blocks_block_id_unique",
            ]
            # nothing of the old table or the swap is left behind
            assert await _tables_like(conn, "sirius\\_unpartitioned%") == []
            assert await _tables_like(conn, "sirius\\_blocks%") == []
            partitions = await _attached(conn)
            today = dt.datetime.now(dt.UTC)
            for ahead in range(3):  # today and the next two days exist for the inserts to come
                assert _name(today + ahead * DAY) in partitions
            assert "blocks_default" in partitions
            assert len(partitions) >= days + 1
            # every row sits in its day's partition; only the rows without insert_time in the default one
            misplaced = await conn.fetchval(
                "SELECT count(*) FROM blocks WHERE tableoid::regclass::text"
                " <> coalesce('blocks_p' || to_char(insert_time AT TIME ZONE 'UTC', 'YYYYMMDD'), 'blocks_default')"
            )
            assert misplaced == 0
            assert await conn.fetchval("SELECT count(*) FROM blocks_default") == 2
        finally:
            await conn.close()
        await migrate(pg_dsn)  # a second run changes nothing

    asyncio.run(scenario())


def _block(block_id: uuid.UUID, stream_id: uuid.UUID, process_id: uuid.UUID) -> Block:
    t = 1_772_445_600_000_000_000
    return Block(
        block_id=block_id,
        stream_id=stream_id,
        process_id=process_id,
        begin_time_ns=t,
        begin_ticks=1,
        end_time_ns=t + 10**9,
        end_ticks=2,
        payload=None,  # type: ignore[arg-type] - insert_block stores the row only
        nb_objects=3,
        object_offset=0,
    )


def test_retried_block_inserts_stay_idempotent_across_partitions(pg_dsn: str) -> None:
    """A retry landing on another day (another partition) or racing the first insert is a no-op."""

    async def scenario() -> None:
        pool = await create_pool(pg_dsn, max_size=10)
        try:
            await migrate(pool)
            now = [dt.datetime(2026, 3, 2, 23, 59, 59, tzinfo=dt.UTC)]
            lake = DataLake(pool, clock=lambda: now[0])
            await ensure_block_partitions(pool, _ns(now[0]), days_ahead=2)
            block = _block(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
            await lake.insert_block(block, 100)
            now[0] += dt.timedelta(seconds=2)  # past midnight: the retry routes to the next day's partition
            await lake.insert_block(block, 100)
            now[0] += 3 * DAY  # days later, into the default partition
            await lake.insert_block(block, 100)
            rows = await pool.fetch("SELECT tableoid::regclass::text AS part, insert_time FROM blocks")
            assert [(r["part"], r["insert_time"]) for r in rows] == [
                ("blocks_p20260302", dt.datetime(2026, 3, 2, 23, 59, 59, tzinfo=dt.UTC))
            ]
            # a producer clock 30 days behind: the lookup reaches back to the block's end, still one row
            behind = dataclasses.replace(
                _block(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()), end_time_ns=_ns(now[0] - 30 * DAY)
            )
            await lake.insert_block(behind, 100)
            now[0] += 10 * DAY
            await lake.insert_block(behind, 100)
            assert await pool.fetchval("SELECT count(*) FROM blocks WHERE block_id = $1", behind.block_id) == 1
            # eight concurrent first inserts of one block, on eight connections: one row
            racing = _block(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
            await asyncio.gather(*(lake.insert_block(racing, 100) for _ in range(8)))
            assert await pool.fetchval("SELECT count(*) FROM blocks WHERE block_id = $1", racing.block_id) == 1
            # one statement carrying the same block twice (the bulk path's shape) keeps the first
            twice = uuid.uuid4()
            status = await pool.execute(
                "INSERT INTO blocks (block_id, nb_objects, insert_time) VALUES ($1, 1, $2), ($1, 2, $3) ON CONFLICT DO NOTHING",
                twice,
                now[0],
                now[0] - 3 * DAY,
            )
            assert status == "INSERT 0 1"
            assert await pool.fetchval("SELECT nb_objects FROM blocks WHERE block_id = $1", twice) == 1
            # Micromegas's own writers name the conflict target, which a partitioned table cannot offer
            with pytest.raises(asyncpg.InvalidColumnReferenceError):
                await pool.execute("INSERT INTO blocks (block_id) VALUES ($1) ON CONFLICT (block_id) DO NOTHING", twice)
        finally:
            await pool.close()

    asyncio.run(scenario())


async def _poll(what: str, probe: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)  # poll interval: the loop waits on the condition
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


_DELETE_LOG = """
CREATE TABLE test_block_deletes(part TEXT, block_id UUID);
CREATE FUNCTION test_log_block_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_block_deletes VALUES (TG_TABLE_NAME, OLD.block_id);
    RETURN NULL;
END $$;
CREATE TRIGGER test_log_block_delete AFTER DELETE ON blocks FOR EACH ROW EXECUTE FUNCTION test_log_block_delete();
"""


def test_retention_drops_whole_day_partitions_and_the_boundary_day_in_exact_mode(local_lake_env: Any) -> None:
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
    midnight = now.replace(hour=0)

    async def scenario(h: Any) -> None:
        lake, pool = h.lake, h.lake.pool
        await ensure_block_partitions(pool, _ns(midnight - 6 * DAY), days_ahead=8)  # D-6 … D+2
        await pool.execute(_DELETE_LOG)
        kept: list[Block] = []
        expired: list[Block] = []
        p = await h.process()
        log = await h.stream(p, "log")
        # two blocks a day from D-6 to D-4 (whole days before the cutoff D-3 12:00), one on D-3 at
        # 10:00 (expired, in the boundary day), one on D-3 at 14:00 (kept), two today; one block of
        # D-30, before every day partition: it lives in the default partition.
        when = [midnight - n * DAY + dt.timedelta(hours=h_) for n in (6, 5, 4) for h_ in (3, 9)]
        when += [midnight - 3 * DAY + dt.timedelta(hours=10), midnight - 30 * DAY]
        later = [midnight - 3 * DAY + dt.timedelta(hours=14), midnight + dt.timedelta(hours=1), now]
        for t in when + later:
            h.clock.set(t)
            log.log_static_interop(4, "t", f"at {t}", ticks=h.ticks(0))
            (expired if t in when else kept).append(await h.seal(log))
        assert await pool.fetchval("SELECT count(*) FROM blocks_default") == 1
        # a retention run that died after detaching D-6: its retired table waits, objects still there
        d6 = next(x for x in await list_block_partitions(pool) if x.name == _name(midnight - 6 * DAY))
        assert await detach_block_partition(pool, d6) == f"blocks_retired_p{midnight - 6 * DAY:%Y%m%d}"
        assert await pool.fetchval("SELECT count(*) FROM blocks") == len(when + later) - 2

        h.clock.set(now)
        day_tables = await _tables_like(pool, "blocks\\_p%")
        report = await apply_retention(lake, 3, batch_size=1)

        assert report.block_partitions_dropped == 3
        assert report.blocks_in_dropped_partitions == 6
        assert report.blocks == 6 + 1  # the whole days, and the default partition's expired row
        attached = await _attached(pool)
        for n in (6, 5, 4):
            assert _name(midnight - n * DAY) not in attached
        dropped = {_name(midnight - n * DAY) for n in (5, 4)}  # D-6 was already detached (renamed)
        assert dropped <= set(day_tables)
        # the dropped days are gone from pg_class, not only detached; the others stay
        assert await _tables_like(pool, "blocks\\_p%") == sorted(set(day_tables) - dropped)
        assert await _tables_like(pool, "blocks\\_retired%") == []
        # the one row delete was in the default partition; the day the cutoff falls in waits whole
        logged = await pool.fetch("SELECT part, block_id FROM test_block_deletes ORDER BY part")
        assert [(r["part"], r["block_id"]) for r in logged] == [("blocks_default", expired[7].block_id)]
        boundary = expired[6]
        assert await pool.fetchval("SELECT count(*) FROM blocks WHERE block_id = $1", boundary.block_id) == 1

        # exact mode: the expired rows of the boundary day go too, row by row
        exact = await apply_retention(lake, RetentionPolicy(3, exact=True), batch_size=1)
        assert (exact.blocks, exact.block_partitions_dropped) == (1, 0)
        logged = await pool.fetch("SELECT part, block_id FROM test_block_deletes ORDER BY part")
        assert [(r["part"], r["block_id"]) for r in logged] == [
            ("blocks_default", expired[7].block_id),
            (_name(midnight - 3 * DAY), boundary.block_id),
        ]

        async def stats() -> dict[str, int]:
            rows = await pool.fetch("SELECT relname, n_tup_del FROM pg_stat_user_tables WHERE relname LIKE 'blocks%'")
            found = {r[0]: r[1] for r in rows}
            return found if found.get(_name(midnight - 3 * DAY)) == 1 else {}

        deletes = await _poll("the boundary partition's row delete in pg_stat_user_tables", stats)
        assert deletes[_name(midnight)] == 0
        assert not any(name.startswith(("blocks_retired", _name(midnight - 4 * DAY))) for name in deletes)
        # the objects of every expired block are gone, the others stay
        keys = set(await lake.store.list_keys("blobs/"))
        assert keys == {f"blobs/{b.process_id}/{b.stream_id}/{b.block_id}" for b in kept}
        remaining = {r[0] for r in await pool.fetch("SELECT block_id FROM blocks")}
        assert remaining == {b.block_id for b in kept}
        # the next run finds nothing more to do
        again = await apply_retention(lake, RetentionPolicy(3, exact=True), batch_size=1)
        assert (again.blocks, again.block_partitions_dropped) == (0, 0)

    local_lake_env(scenario)


def test_per_view_retention_drops_only_that_views_old_partitions(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        await h.sample(at_second=10.25)
        await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, h.T0 + dt.timedelta(seconds=12.5))
        views = {p.view_set_name for p in await list_partitions(lake.pool)}
        assert {"log_entries", "measures", "blocks", "processes"} <= views
        blocks = await lake.pool.fetchval("SELECT count(*) FROM blocks")
        h.clock.set(h.T0 + 10 * DAY)

        # default 30 days, log_entries 7: only log_entries' partitions go; raw blocks are kept
        report = await apply_retention(lake, RetentionPolicy(30, (("log_entries", 7),)))
        after = {p.view_set_name for p in await list_partitions(lake.pool)}
        assert after == views - {"log_entries"}
        assert report.partitions == 1
        assert (report.blocks, report.streams, report.processes) == (0, 0, 0)
        assert await lake.pool.fetchval("SELECT count(*) FROM blocks") == blocks

        # default 3 days, measures 20: raw blocks follow the longest (20), measures' partitions stay
        report = await apply_retention(lake, RetentionPolicy(3, (("measures", 20),)))
        assert {p.view_set_name for p in await list_partitions(lake.pool)} == {"measures"}
        assert report.blocks == 0
        assert await lake.pool.fetchval("SELECT count(*) FROM blocks") == blocks

        # past every retention: the rest goes, blocks included
        h.clock.set(h.T0 + 21 * DAY)
        report = await apply_retention(lake, RetentionPolicy(3, (("measures", 20),)))
        assert await list_partitions(lake.pool) == []
        assert report.blocks == blocks
        assert await lake.pool.fetchval("SELECT count(*) FROM blocks") == 0

    local_lake_env(scenario)


def test_partitions_created_ahead_move_in_what_the_default_partition_holds(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        pool = h.lake.pool
        day = h.T0.replace(hour=0)
        p = await h.process()
        log = await h.stream(p, "log")
        h.clock.set(h.T0 + DAY)  # tomorrow's partition does not exist yet: the row goes to the default one
        log.log_static_interop(4, "t", "early", ticks=h.ticks(0))
        block = await h.seal(log)
        assert await pool.fetchval("SELECT tableoid::regclass::text FROM blocks") == "blocks_default"

        h.clock.set(h.T0 + dt.timedelta(minutes=10))
        report = await MaintenanceDaemon(h.lake).run_pass(PassKind.HOUR, h.clock())
        assert report.failures == {}
        attached = await _attached(pool)
        assert {_name(day), _name(day + DAY), _name(day + 2 * DAY)} <= set(attached)
        row = await pool.fetchrow("SELECT tableoid::regclass::text AS part, block_id FROM blocks")
        assert (row["part"], row["block_id"]) == (_name(day + DAY), block.block_id)
        assert await ensure_block_partitions(pool, _ns(h.T0)) == []  # idempotent

    local_lake_env(scenario)


def test_retention_overrides_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_retention_by_view("") == ()
    assert parse_retention_by_view("log_entries=7, measures = 90,") == (("log_entries", 7), ("measures", 90))
    for bad, message in [
        ("log_entries", "is not view_set=days"),
        ("log-entries=7", "is not view_set=days"),
        ("log_entries=0", "positive integer"),
        ("log_entries=seven", "positive integer"),
        ("log_entries=7,log_entries=8", "given twice"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            parse_retention_by_view(bad)
    monkeypatch.setenv("MICROMEGAS_RETENTION_DAYS", "30")
    monkeypatch.setenv("SIRIUS_RETENTION_DAYS_BY_VIEW", "log_entries=7,measures=365")
    config = LakehouseConfig.resolve("postgresql://postgres@127.0.0.1/x", "file:///tmp/lake")
    policy = config.retention_policy
    assert (policy.default_days, policy.days_for("log_entries"), policy.days_for("streams"), policy.raw_days) == (
        30,
        7,
        30,
        365,
    )
    assert not config.retention_policy.exact
    monkeypatch.setenv("SIRIUS_RETENTION_EXACT", "1")
    assert LakehouseConfig.resolve("postgresql://postgres@127.0.0.1/x", "file:///tmp/lake").retention_policy.exact
    monkeypatch.setenv("SIRIUS_RETENTION_EXACT", "maybe")
    with pytest.raises(ConfigurationError, match="SIRIUS_RETENTION_EXACT must be 1 or 0"):
        LakehouseConfig.resolve("postgresql://postgres@127.0.0.1/x", "file:///tmp/lake")
    monkeypatch.setenv("SIRIUS_RETENTION_EXACT", "0")
    monkeypatch.setenv("SIRIUS_RETENTION_DAYS_BY_VIEW", "log_entries=-1")
    with pytest.raises(ConfigurationError, match="SIRIUS_RETENTION_DAYS_BY_VIEW"):
        LakehouseConfig.resolve("postgresql://postgres@127.0.0.1/x", "file:///tmp/lake")
