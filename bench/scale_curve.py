"""Benchmark: how one aggregate's time grows with the rows, ours against DuckDB, plotted.

For each size (default 1 M, 10 M and 100 M ``log_entries`` rows) a fresh database and local
store get a lake written through the production paths (``_observability_lake.build_lake``: transit
log blocks of 100 processes over 10 executables, materialised by the daemon's batch update into
ten one-minute global partitions; metrics and spans are token-sized). Then the same queries run on
our session (``SessionFactory``; planning and execution, the session created beforehand) and on
DuckDB reading the same Parquet files, alternating the engines run by run (``--runs`` each, median
kept) so a loaded machine slows both alike. Results are compared with DuckDB's in the run.

Writes ``--png`` (default ``bench/scale_curve.png``): time against rows on log-log axes, one
line per engine and query, plus a dotted "linear from 1 M" guide; and the figures as JSON next
to it (same name, ``.json``) so the plot can be redrawn with ``--replot``.

Run: ``.venv/bin/python bench/scale_curve.py [--sizes 1000000,10000000,100000000] [--runs 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
from _observability_lake import Clock, LakeShape, build_lake
from _postgres import create_database, drop_database, maintenance_dsn
from _query_set import QUERIES, compare_tables, duckdb_connection, render

from sirius.lakehouse import Lakehouse, LocalObjectStore, SessionFactory, create_pool, migrate

QUERY_NAMES = ("count by level", "by process+level")
PROCESSES = 100
HERE = Path(__file__).resolve().parent


def shape_for(rows: int) -> LakeShape:
    """``rows`` log events over 100 processes; one metric event per process and one trace."""
    return LakeShape(
        processes=PROCESSES,
        exes=10,
        log_events=rows // PROCESSES,
        metric_events=1,
        services=1,
        traces=1,
        minutes=10,
    )


async def _time_size(admin_dsn: str, tmp: Path, rows: int, runs: int) -> dict[str, dict[str, float]]:
    """Build a lake of ``rows`` log rows, time the queries on both engines; medians in seconds."""
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn, max_size=12)
    try:
        await migrate(pool)
        clock = Clock()
        lake = Lakehouse(pool, LocalObjectStore(tmp / "objects", durable=False), clock=clock)
        start = time.perf_counter()
        built = await build_lake(lake, clock.set, shape_for(rows))
        files = built.files["log_entries"]
        size_mb = sum(os.path.getsize(f) for f in files) / 1e6
        print(
            f"{rows:,} rows: lake built in {time.perf_counter() - start:.0f} s, log_entries "
            f"{built.rows['log_entries']:,} rows in {len(files)} files ({size_mb:.0f} MB); "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        factory = SessionFactory(lake)
        con = duckdb_connection(built.files)
        out: dict[str, dict[str, float]] = {}
        for query in (q for q in QUERIES if q.name in QUERY_NAMES):
            ours_sql = render(query, "sirius", built.parameters)
            theirs_sql = render(query, "duckdb", built.parameters)
            ours, theirs = [], []
            for _ in range(runs):
                session = await factory.create()
                t0 = time.perf_counter()
                table = (await session.sql(ours_sql)).to_arrow_table()
                ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reference = con.sql(theirs_sql).to_arrow_table()
                theirs.append(time.perf_counter() - t0)
            problems = compare_tables(table, reference, ordered=query.ordered, rel=query.tolerance)
            if problems:
                raise SystemExit(f"{query.name} at {rows:,} rows: results differ from DuckDB's: {problems[:2]}")
            a, b = statistics.median(ours), statistics.median(theirs)
            out[query.name] = {"ours": a, "duckdb": b}
            print(f"  {query.name:20} ours {a * 1e3:9.1f} ms   DuckDB {b * 1e3:9.1f} ms   {a / b:.2f}x", flush=True)
        con.close()
        return out
    finally:
        await pool.close()
        await drop_database(admin_dsn, dsn)


def plot(results: dict[int, dict[str, dict[str, float]]], png: Path, note: str) -> None:
    """Time against rows, log-log, one line per engine and query, with linear guides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    colours = {"ours": "tab:blue", "duckdb": "tab:orange"}
    labels = {"ours": "Sirius (DataFusion session)", "duckdb": "DuckDB over the same Parquet"}
    markers = {QUERY_NAMES[0]: "o", QUERY_NAMES[1]: "s"}
    styles = {QUERY_NAMES[0]: "-", QUERY_NAMES[1]: "--"}
    for name in QUERY_NAMES:
        for engine in ("ours", "duckdb"):
            ms = [results[n][name][engine] * 1e3 for n in sizes]
            ax.plot(
                sizes,
                ms,
                styles[name],
                marker=markers[name],
                color=colours[engine],
                label=f"{labels[engine]}: {name}",
            )
        first = results[sizes[0]][name]["ours"] * 1e3
        ax.plot(sizes, [first * n / sizes[0] for n in sizes], ":", color="grey", linewidth=1)
    ax.plot([], [], ":", color="grey", linewidth=1, label="linear growth from the 1st point (ours)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{n / 1e6:g} M" for n in sizes])
    ax.set_xlabel("log_entries rows (10 one-minute partitions)")
    ax.set_ylabel("query time, median (ms)")
    ax.set_title("Aggregate time vs rows: Sirius vs DuckDB on the same partitions")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.01, 0.01, note, fontsize=7, color="dimgrey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(png)
    plt.close(fig)


async def _bench(admin_dsn: str, tmp: Path, args: argparse.Namespace) -> dict[int, dict[str, dict[str, float]]]:
    results: dict[int, dict[str, dict[str, float]]] = {}
    for rows in args.sizes:
        work = tmp / f"lake-{rows}"
        try:
            results[rows] = await _time_size(admin_dsn, work, rows, args.runs)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # 100 M rows of blocks take gigabytes
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--sizes", default="1000000,10000000,100000000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--runs", type=int, default=5, help="runs of each query per engine (median kept)")
    parser.add_argument("--png", type=Path, default=HERE / "scale_curve.png")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from its JSON, no run")
    args = parser.parse_args()
    figures = args.png.with_suffix(".json")
    if args.replot:
        saved = json.loads(figures.read_text())
        plot({int(k): v for k, v in saved["results"].items()}, args.png, saved["note"])
        return
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}, duckdb {duckdb.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sirius-scale-") as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin:
        results = asyncio.run(_bench(admin, Path(tmp), args))
    note = (
        f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, median of {args.runs}, "
        f"load average at the end {os.getloadavg()[0]:.1f}; bench/scale_curve.py"
    )
    figures.write_text(json.dumps({"note": note, "results": results}, indent=1) + "\n")
    plot(results, args.png, note)
    print(f"wrote {args.png} and {figures}")


if __name__ == "__main__":
    main()
