"""Benchmark: lever variants of the query set with a fresh DataFusion context for every run.

``bench/aggregate_levers.py`` builds one context per variant and runs every query on it again
and again, so the per-context caches (Parquet metadata, file statistics) are warm after the
first run; a lakehouse session is a new context for each query, and pays them every time (a
trace lookup: 20-27 ms in a fresh context, 10-12 ms in the same context again, 2026-12-07).
Here each run of each variant gets a new context (``aggregate_levers.variant_context``, same
variant syntax, ``D:PATH`` for another copy of the files), created outside the timing; DuckDB
runs in the same loop (it keeps no metadata cache between queries either).

Run: ``.venv/bin/python bench/aggregate_fresh.py DIR "trace,error spans" push,push+D:/other/copy``
(``DIR`` as written by ``bench/aggregates.py --keep``; query names matched by substring).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time

from _query_set import QUERIES, QueryParameters, duckdb_connection, render
from aggregate_levers import SCHEMAS, variant_context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="files kept by bench/aggregates.py --keep")
    parser.add_argument("queries", help="comma-separated substrings of query names")
    parser.add_argument("variants", help="comma-separated variants (bench/aggregate_levers.py syntax)")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with open(f"{args.directory}/parameters.json") as f:
        parameters = QueryParameters(**json.load(f))
    names, variants = args.queries.split(","), args.variants.split(",")
    con = duckdb_connection({v: sorted(glob.glob(f"{args.directory}/{v}/*.parquet")) for v in SCHEMAS})
    print(f"load average {os.getloadavg()}, median of {args.runs}, a fresh context per run")
    for query in QUERIES:
        if "property_get" in query.sql or not any(n in query.name for n in names):
            continue
        ours, theirs = render(query, "sirius", parameters), render(query, "duckdb", parameters)
        times: dict[str, list[float]] = {v: [] for v in ["duckdb", *variants]}
        for _ in range(args.runs):
            start = time.perf_counter()
            con.sql(theirs).to_arrow_table()
            times["duckdb"].append(time.perf_counter() - start)
            for variant in variants:
                ctx = variant_context(variant, args.directory)
                start = time.perf_counter()
                ctx.sql(ours).to_arrow_table()
                times[variant].append(time.perf_counter() - start)
        medians = {v: statistics.median(t) * 1e3 for v, t in times.items()}
        duck = medians["duckdb"]
        cells = " | ".join(f"{v} {medians[v]:.1f} ms {medians[v] / duck:.2f}x" for v in variants)
        print(f"| {query.name} | DuckDB {duck:.1f} ms | {cells} |", flush=True)


if __name__ == "__main__":
    main()
