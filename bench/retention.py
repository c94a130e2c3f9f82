"""Benchmark: retention of N block rows by row DELETE (plain table) vs partition drop (partitioned).

Two throwaway databases hold the same ``blocks`` rows spread over ``--days`` days: one with
Micromegas's plain table (Sirius schema before v3), one with the table partitioned by day (v3).
The lakehouse clock is set ``--days`` days after the first row's day, at midnight (so both
layouts expire the same whole days), and ``apply_retention`` runs with ``--retention-days`` on
each -- the same code, which takes the batched row-DELETE path on the plain table and the
detach/read keys/drop path on the partitioned one (objects in an in-memory store, so the figure
is PostgreSQL's side, key reading included). Reported per layout: retention wall time, WAL
written (``pg_wal_lsn_diff``), and the ``VACUUM`` that follows (the dead tuples row deletes
leave). Then the insert cost: ``--inserts`` single-row inserts (``DataLake.insert_block``'s
statement, one connection) into each layout in three rounds; the partitioned one has day
partitions for the last 90 days, and its rounds alternate with the dedup trigger on and off (the
machine's load drifts; interleaving keeps the comparison fair). Last, the plain database is
converted to the partitioned layout by ``migrate()`` (the one-time upgrade), timed.

Run: ``.venv/bin/python bench/retention.py [--rows 1000000] [--days 10] [--retention-days 5]
[--inserts 5000] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from _postgres import create_database, drop_database, maintenance_dsn

from sirius.lakehouse import InMemoryObjectStore, Lakehouse, apply_retention, create_pool, migrate
from sirius.lakehouse._block_partitions import ensure_block_partitions
from sirius.lakehouse._migrations import _DATA_LAKE, _LAKEHOUSE, _SIRIUS, _Connections, _migrate_schema

BASE = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
INSERT = "INSERT INTO blocks VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING"

_FILL = """
INSERT INTO blocks
SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), t - interval '1 second', 0, t, 1, 10, 0, 16384, t
FROM (SELECT $1::timestamptz + (g % $3) * interval '1 day' + (1 + (g * 7919) % 86398) * interval '1 second' AS t
      FROM generate_series($2::bigint, $2::bigint + $4 - 1) g) rows
"""


async def _prepare(dsn: str, *, partitioned: bool, rows: int, days: int) -> None:
    if partitioned:
        await migrate(dsn)
    else:  # Micromegas's plain table: stop before Sirius v3
        conns = _Connections(dsn)
        await _migrate_schema(conns, _DATA_LAKE)
        await _migrate_schema(conns, _LAKEHOUSE)
        await _migrate_schema(conns, _SIRIUS, target=2)
    pool = await create_pool(dsn, max_size=2)
    try:
        if partitioned:
            await ensure_block_partitions(pool, int(BASE.timestamp()) * 10**9, days_ahead=days + 1)
            # The fill is not what is measured: skip the per-row dedup check (ids are fresh anyway).
            await pool.execute("ALTER TABLE blocks DISABLE TRIGGER blocks_block_id_once")
        step = 200_000
        for start in range(0, rows, step):
            await pool.execute(_FILL, BASE, start, days, min(step, rows - start))
        if partitioned:
            await pool.execute("ALTER TABLE blocks ENABLE TRIGGER blocks_block_id_once")
        await pool.execute("VACUUM ANALYZE blocks")
    finally:
        await pool.close()


async def _retention(dsn: str, days: int, retention_days: int) -> dict[str, float]:
    pool = await create_pool(dsn, max_size=4)
    store = InMemoryObjectStore()
    now = BASE + dt.timedelta(days=days)  # the cutoff falls on a midnight: both layouts delete the same rows
    try:
        lake = Lakehouse(pool, store, clock=lambda: now)
        before = await pool.fetchval("SELECT count(*) FROM blocks")
        lsn = await pool.fetchval("SELECT pg_current_wal_lsn()")
        started = time.perf_counter()
        report = await apply_retention(lake, retention_days, batch_size=1000)
        elapsed = time.perf_counter() - started
        wal = await pool.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
        started = time.perf_counter()
        await pool.execute("VACUUM blocks")
        vacuum = time.perf_counter() - started
        after = await pool.fetchval("SELECT count(*) FROM blocks")
        return {
            "rows": before,
            "deleted": before - after,
            "reported": report.blocks,
            "dropped_rows": report.blocks_in_dropped_partitions,
            "partitions_dropped": report.block_partitions_dropped,
            "seconds": elapsed,
            "wal_mb": float(wal) / 2**20,
            "vacuum_seconds": vacuum,
        }
    finally:
        await store.close()
        await pool.close()


async def _insert_rows(conn: asyncpg.Connection, count: int) -> float:
    now = dt.datetime.now(dt.UTC)
    rows = [(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), now, 0, now, 1, 10, 0, 16384, now) for _ in range(count)]
    started = time.perf_counter()
    for row in rows:
        await conn.execute(INSERT, *row)
    return (time.perf_counter() - started) / count * 1e6


async def _inserts(dsn: str, count: int, *, partitioned: bool) -> tuple[list[float], list[float], int]:
    """µs per single-row insert, in alternating rounds: (as configured, without the dedup trigger), partitions."""
    pool = await create_pool(dsn, max_size=2)
    try:
        if partitioned:  # a 90-day lake's worth of partitions: the last 90 days, today, the next two
            await ensure_block_partitions(pool, (int(time.time()) - 90 * 86_400) * 10**9, days_ahead=92)
        partitions = await pool.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass('blocks')")
        with_trigger: list[float] = []
        without: list[float] = []
        async with pool.acquire() as conn:
            await _insert_rows(conn, 200)  # warm-up: plans cached
            for _ in range(3):
                with_trigger.append(await _insert_rows(conn, count // 6))
                if partitioned:
                    await conn.execute("ALTER TABLE blocks DISABLE TRIGGER blocks_block_id_once")
                    without.append(await _insert_rows(conn, count // 6))
                    await conn.execute("ALTER TABLE blocks ENABLE TRIGGER blocks_block_id_once")
        return with_trigger, without, partitions
    finally:
        await pool.close()


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM blocks"))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--retention-days", type=int, default=5)
    parser.add_argument("--inserts", type=int, default=5000)
    parser.add_argument("--dsn", default=None, help="maintenance DSN (default: local :5432, else embedded)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="sirius-bench-retention-") as tmp,
        maintenance_dsn(args.dsn, Path(tmp)) as admin,
    ):
        for partitioned in (False, True):
            label = "partitioned (drop)" if partitioned else "plain (row DELETE)"
            dsn = await create_database(admin)
            try:
                started = time.perf_counter()
                await _prepare(dsn, partitioned=partitioned, rows=args.rows, days=args.days)
                print(f"{label}: filled {args.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
                r = await _retention(dsn, args.days, args.retention_days)
                print(
                    f"{label}: retention deleted {r['deleted']:,} of {r['rows']:,} rows"
                    f" ({r['dropped_rows']:,} with {r['partitions_dropped']} dropped partitions)"
                    f" in {r['seconds']:.2f} s, WAL {r['wal_mb']:.1f} MiB, VACUUM after {r['vacuum_seconds']:.2f} s",
                    flush=True,
                )
                assert r["reported"] == r["deleted"]
                on, off, partitions = await _inserts(dsn, args.inserts, partitioned=partitioned)
                rounds = ", ".join(f"{m:.0f}" for m in on)
                print(f"{label}: single-row insert µs/row by round: {rounds} ({partitions} partitions)", flush=True)
                if off:
                    rounds = ", ".join(f"{m:.0f}" for m in off)
                    print(f"{label}: same, dedup trigger disabled, interleaved rounds: {rounds}", flush=True)
                else:  # the one-time conversion of the plain table (Sirius schema step 3), rows as they are now
                    rows = await _count(dsn)
                    started = time.perf_counter()
                    await migrate(dsn)
                    elapsed = time.perf_counter() - started
                    assert await _count(dsn) == rows
                    print(f"{label}: converted to the partitioned table ({rows:,} rows): {elapsed:.1f} s", flush=True)
            finally:
                await drop_database(admin, dsn)


if __name__ == "__main__":
    asyncio.run(main())
