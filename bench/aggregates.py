"""Benchmark: the observability query set on our session against DuckDB over the same partitions.

Builds a lake (``_observability_lake.build_lake``: transit log and metrics blocks of 100
processes, OTLP spans of 20 services, materialised by the daemon's batch update into one-minute
global partitions) with 10 M ``log_entries`` rows, 10 M ``measures`` rows and ``--spans``
``otel_spans`` rows (``--large``: 100 M log and measure rows), then runs every query of
``_query_set.QUERIES`` through ``SessionFactory`` and through DuckDB reading the same Parquet
files, alternating the engines query by query (``--runs`` each, median kept) so a loaded machine
slows both alike. Prints per-query times, ratio ours / DuckDB and their geometric mean.

Ours = ``session.sql(q)`` + ``to_arrow_table()`` (planning and execution) on a session created
beforehand and closed after (its DataFusion context back to the factory's pool, so Parquet
metadata cached by earlier queries is reused, as in a server); "fresh ctx" = the same with a new
context per session (``pooled_contexts=0``, the behaviour before the pool), timed in the same
alternation. Session creation (partition selection in PostgreSQL + registration) and closing are
reported on their own lines, pooled and fresh. DuckDB = ``con.sql(q).to_arrow_table()`` on one connection whose views
were created beforehand. "before" = our session with the settings it had before issue 14
(Parquet filter pushdown on, page index off, no automatic rewrite onto ``log_stats``,
``measure_stats`` or ``span_stats``, a fresh context per session), timed in the same alternation.
A query our session planned over one of them (``_log_stats_rewrite.py``) is marked ¹.

Run: ``.venv/bin/python bench/aggregates.py [--dsn …] [--large] [--runs 5] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
from _observability_lake import Clock, LakeShape, ObservabilityLake, build_lake
from _postgres import create_database, drop_database, maintenance_dsn
from _query_set import PREAGGREGATED, QUERIES, Query, compare_tables, duckdb_connection, render

from sirius.lakehouse import Lakehouse, LocalObjectStore, SessionFactory, SessionSettings, create_pool, migrate


def shape_for(large: bool, spans: int) -> LakeShape:
    per_process = 1_000_000 if large else 100_000
    return LakeShape(
        processes=100,
        exes=10,
        log_events=per_process,
        metric_events=per_process,
        services=20,
        traces=spans // 6,
        minutes=10,
    )


async def _ours(factory: SessionFactory, sql: str) -> tuple[float, object, int]:
    session = await factory.create()
    start = time.perf_counter()
    table = (await session.sql(sql)).to_arrow_table()
    elapsed = time.perf_counter() - start
    rewrites = session.log_stats_rewrites + session.measure_stats_rewrites + session.span_stats_rewrites
    session.close()  # its context back to the pool (dropped when the factory does not pool)
    return elapsed, table, rewrites


async def _session_costs(factory: SessionFactory, runs: int) -> tuple[float, float]:
    """Median creation and closing time of a session (no query run on it)."""
    creations, closes = [], []
    for _ in range(runs):
        start = time.perf_counter()
        session = await factory.create()
        created = time.perf_counter()
        session.close()
        creations.append(created - start)
        closes.append(time.perf_counter() - created)
    return statistics.median(creations), statistics.median(closes)


def _theirs(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[float, object]:
    start = time.perf_counter()
    table = con.sql(sql).to_arrow_table()
    return time.perf_counter() - start, table


async def run_set(lake: Lakehouse, built: ObservabilityLake, runs: int) -> None:
    factory = SessionFactory(lake)
    fresh = SessionFactory(lake, SessionSettings(pooled_contexts=0))
    for label, f in (("pooled", factory), ("fresh ctx", fresh), ("pooled", factory), ("fresh ctx", fresh)):
        create, close = await _session_costs(f, max(runs, 5))
        print(
            f"session creation ({label}; PostgreSQL selection + registration): median {create * 1e3:.1f} ms,"
            f" close {close * 1e3:.2f} ms"
        )
    con = duckdb_connection(built.files)
    # The settings before issue 14 (Parquet filter pushdown on, page index off, no automatic
    # rewrite onto a pre-aggregate), same run.
    before = SessionFactory(
        lake,
        SessionSettings(
            pushdown_filters=True,
            page_index=False,
            log_stats_rewrite=False,
            measure_stats_rewrite=False,
            span_stats_rewrite=False,
            pooled_contexts=0,
        ),
    )
    print(
        "| query | ours ms | DuckDB ms | ours / DuckDB | fresh ctx ms | fresh ctx / DuckDB"
        " | before: ms | before / DuckDB | rows |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios, unpooled, old = [], [], []
    for query in QUERIES:
        ratio, fresh_ratio, previous = await _row(
            factory, con, built, query, query, runs=runs, before=before, fresh=fresh
        )
        ratios.append(ratio)
        unpooled.append(fresh_ratio)
        old.append(previous)
    for label, values in (("ours", ratios), ("fresh ctx", unpooled), ("before", old)):
        geomean = math.exp(sum(math.log(r) for r in values) / len(values))
        print(f"{label}: geometric mean / DuckDB {geomean:.2f}x, worst {max(values):.2f}x")
    print("(goal: every query <= 1.0x, geometric mean <= 0.8x; ¹ planned over a pre-aggregate)")
    print("\nThe counting questions from log_stats (ours) against DuckDB over log_entries:")
    print("| query | ours ms | DuckDB ms | ours / DuckDB | rows |")
    print("| --- | --- | --- | --- | --- |")
    by_name = {q.name: q for q in QUERIES}
    for query in PREAGGREGATED:
        await _row(factory, con, built, query, by_name[query.name], runs=runs)


async def _row(
    factory: SessionFactory,
    con: duckdb.DuckDBPyConnection,
    built: ObservabilityLake,
    ours_query: Query,
    theirs_query: Query,
    *,
    runs: int,
    before: SessionFactory | None = None,
    fresh: SessionFactory | None = None,
) -> tuple[float, float, float]:
    """Time one query on the engines, alternating; print its row; return the ratios of medians."""
    ours_sql = render(ours_query, "sirius", built.parameters)
    theirs_sql = render(theirs_query, "duckdb", built.parameters)
    ours, theirs, unpooled, old = [], [], [], []
    for _ in range(runs):
        seconds, table, rewrites = await _ours(factory, ours_sql)
        ours.append(seconds)
        seconds, reference = _theirs(con, theirs_sql)
        theirs.append(seconds)
        if fresh is not None:
            unpooled.append((await _ours(fresh, ours_sql))[0])
        if before is not None:
            old.append((await _ours(before, ours_sql))[0])
    problems = compare_tables(table, reference, ordered=theirs_query.ordered, rel=theirs_query.tolerance)  # type: ignore[arg-type]
    a, b = statistics.median(ours), statistics.median(theirs)
    c = statistics.median(old) if old else math.nan
    d = statistics.median(unpooled) if unpooled else math.nan
    flag = "" if not problems else f" MISMATCH {problems[:1]}"
    label = f"{ours_query.name} ¹" if rewrites else ours_query.name
    extra = f" {d * 1e3:.1f} | {d / b:.2f}x |" if unpooled else ""
    extra += f" {c * 1e3:.1f} | {c / b:.2f}x |" if old else ""
    print(
        f"| {label} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f}x |{extra} {table.num_rows}{flag} |",  # type: ignore[attr-defined]
        flush=True,
    )
    return a / b, d / b, c / b


async def _bench(admin_dsn: str, tmp: Path, args: argparse.Namespace) -> None:
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn, max_size=12)
    try:
        await migrate(pool)
        clock = Clock()
        lake = Lakehouse(pool, LocalObjectStore(tmp / "objects", durable=False), clock=clock)
        shape = shape_for(args.large, args.spans)
        start = time.perf_counter()
        built = await build_lake(lake, clock.set, shape, log=lambda line: print(line, flush=True))
        print(f"lake built in {time.perf_counter() - start:.0f} s: {built.rows}", flush=True)
        if args.keep:
            for view, paths in built.files.items():
                target = Path(args.keep) / view
                target.mkdir(parents=True, exist_ok=True)
                for i, path in enumerate(paths):
                    shutil.copy(path, target / f"{i:04d}.parquet")
            (Path(args.keep) / "parameters.json").write_text(json.dumps(dataclasses.asdict(built.parameters)))
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()}, runs {args.runs} (median)", flush=True)
        await run_set(lake, built, args.runs)
        print(f"load average after: {os.getloadavg()}")
    finally:
        await pool.close()
        await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--large", action="store_true", help="100 M log and measure rows instead of 10 M")
    parser.add_argument("--spans", type=int, default=2_400_000, help="otel_spans rows (6 per trace)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each query per engine (median kept)")
    parser.add_argument("--keep", help="copy the partition files to this directory (lever experiments)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sirius-agg-") as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        asyncio.run(_bench(admin_dsn, Path(tmp), args))


if __name__ == "__main__":
    main()
