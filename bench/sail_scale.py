"""Benchmark: one aggregate on one DataFusion process vs Sail ``local-cluster`` with 1 and 2 workers.

A fresh database and local store get a lake written through the production paths
(``_observability_lake.build_lake``, the shape ``bench/scale_curve.py`` uses: ``--rows``
``log_entries`` rows from 100 processes over 10 executables in ten one-minute global partitions).
Then the queries run on our DataFusion session (``SessionFactory``, session created beforehand)
scanning ``log_entries`` (``SessionSettings(log_stats_rewrite=False)``: the same aggregate work
Sail does), and through ``sirius.distributed.SailEngine`` on a Sail server started for each worker count
(``SailCluster``; each Sail statement opens its Spark Connect session, registers the views and
the functions, runs and collects: the whole cost a user sees). DataFusion and Sail runs alternate
(``--runs`` each, median kept) so a loaded machine slows both alike; every Sail answer is compared
with DataFusion's (timestamps at microseconds, as the Sail views have them). The default session,
which answers these counting questions from the pre-aggregated ``log_stats`` view instead of
scanning, is timed too (``log_stats`` column) and its answer checked equal: it is what a user of
the FlightSQL server gets, and the yardstick for what distribution buys on these questions.

``--rows`` takes several sizes (``--rows 10000000,100000000``): each gets its own database and
store, built and measured in turn, so the scale curve comes from one invocation.

Run: ``.venv/bin/python bench/sail_scale.py [--rows 10000000] [--workers 1,2] [--runs 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from _observability_lake import Clock, LakeShape, build_lake
from _postgres import create_database, drop_database, maintenance_dsn
from _query_set import QUERIES, compare_tables, render

from sirius.distributed import SailCluster, SailClusterConfig, SailEngine
from sirius.lakehouse import Lakehouse, LocalObjectStore, SessionFactory, SessionSettings, create_pool, migrate

QUERY_NAMES = ("count by level", "by process+level", "minute histogram by level")
PROCESSES = 100


def _micros(table: pa.Table) -> pa.Table:
    columns = [
        c.cast(pa.timestamp("us", tz=c.type.tz), safe=False) if pa.types.is_timestamp(c.type) else c
        for c in table.columns
    ]
    return pa.table(columns, names=table.column_names)


async def _bench(admin_dsn: str, tmp: Path, rows: int, args: argparse.Namespace) -> None:
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn, max_size=12)
    try:
        await migrate(pool)
        clock = Clock()
        lake = Lakehouse(pool, LocalObjectStore(tmp / "objects", durable=False), clock=clock)
        start = time.perf_counter()
        shape = LakeShape(
            processes=PROCESSES,
            exes=10,
            log_events=rows // PROCESSES,
            metric_events=1,
            services=1,
            traces=1,
            minutes=10,
        )
        built = await build_lake(lake, clock.set, shape)
        files = built.files["log_entries"]
        size_mb = sum(os.path.getsize(f) for f in files) / 1e6
        print(
            f"{built.rows['log_entries']:,} log_entries rows in {len(files)} files ({size_mb:.0f} MB),"
            f" built in {time.perf_counter() - start:.0f} s; {os.cpu_count()} cores,"
            f" load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        scanning = SessionFactory(lake, SessionSettings(log_stats_rewrite=False))
        rewriting = SessionFactory(lake)
        queries = [q for q in QUERIES if q.name in QUERY_NAMES]
        for workers in args.workers:
            with SailCluster(SailClusterConfig(workers=workers)) as cluster:
                engine = SailEngine(cluster.url)
                await engine.query(lake, "SELECT count(*) FROM log_entries")  # workers start with a session's job
                for query in queries:
                    ours_sql = render(query, "sirius", built.parameters)
                    sail_sql = render(query, "sail", built.parameters)
                    ours, theirs, stats = [], [], []
                    for _ in range(args.runs):
                        session = await scanning.create()
                        t0 = time.perf_counter()
                        table = (await session.sql(ours_sql)).to_arrow_table()
                        ours.append(time.perf_counter() - t0)
                        assert session.log_stats_rewrites == 0, "the scanning session must scan"
                        t0 = time.perf_counter()
                        answer = await engine.query(lake, sail_sql)
                        theirs.append(time.perf_counter() - t0)
                        session = await rewriting.create()
                        t0 = time.perf_counter()
                        shortcut = (await session.sql(ours_sql)).to_arrow_table()
                        stats.append(time.perf_counter() - t0)
                    for name, other in (("Sail", _micros(answer)), ("log_stats", shortcut)):
                        problems = compare_tables(_micros(table), other, ordered=query.ordered, rel=query.tolerance)
                        if problems:
                            raise SystemExit(f"{query.name}: {name}'s answer differs from the scan's: {problems[:2]}")
                    a, b, c = (statistics.median(times) for times in (ours, theirs, stats))
                    per_row = (b - a) / built.rows["log_entries"] * 1e9
                    print(
                        f"  {rows:>11,} rows  {workers} worker(s)  {query.name:26}"
                        f" DataFusion {a * 1e3:8.1f} ms   Sail {b * 1e3:8.1f} ms"
                        f"   {b / a:5.2f}x   overhead {per_row:+.1f} ns/row"
                        f"   log_stats {c * 1e3:6.1f} ms (rewritten: {session.log_stats_rewrites})"
                        f"   load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
    finally:
        await pool.close()
        await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument(
        "--rows",
        default=[10_000_000],
        type=lambda s: [int(x) for x in s.split(",")],
        help="log_entries rows; several sizes comma-separated, each measured on its own lake",
    )
    parser.add_argument("--workers", default="1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--runs", type=int, default=5, help="runs of each query per engine (median kept)")
    args = parser.parse_args()
    for rows in args.rows:
        with (
            tempfile.TemporaryDirectory(prefix="sirius-sail-bench-") as tmp,
            maintenance_dsn(args.dsn, Path(tmp)) as admin,
        ):
            asyncio.run(_bench(admin, Path(tmp), rows, args))


if __name__ == "__main__":
    main()
