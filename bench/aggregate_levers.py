"""Benchmark: which DataFusion settings and partition layouts move the query set against DuckDB.

Works on the partition files ``bench/aggregates.py --keep DIR`` copied out (``DIR/<view>/*.parquet``
and ``DIR/parameters.json``), without PostgreSQL: each variant is a DataFusion context configured
as the lakehouse configures its sessions (``information_schema``, Utf8 strings, the views'
schemas, one ``read_parquet`` per partition file in a balanced union) plus the variant's changes;
DuckDB reads the same files. Engines and variants alternate query by query (``--runs`` each,
median kept), so a loaded machine slows them alike.

Variants are ``+``-joined parts: ``push`` / ``nopush`` (Parquet filter pushdown), ``pageidx`` /
``nopageidx`` (page index), ``utf8`` (dictionary string columns read as plain Utf8), ``tpN``
(target partitions), ``bsN`` (batch size), ``view`` (dictionary strings read as Utf8View),
``opt:KEY=VALUE`` (any DataFusion option, ``datafusion.`` optional), ``D:PATH`` (another copy of
the files, e.g. rewritten with ``--rewrite``). ``--rewrite OUT`` first writes a copy of DIR whose
``log_entries`` rows are sorted by ``time`` (same encoder as the lakehouse: zstd, dictionary
columns, page index).

The ``property_get`` query is left out (it needs the lakehouse's functions).

Run: ``.venv/bin/python bench/aggregate_levers.py DIR push+nopageidx,nopush+pageidx [--queries level,LIKE]``
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
from _query_set import QUERIES, QueryParameters, duckdb_connection, render
from datafusion import DataFrame, SessionConfig, SessionContext

from sirius.lakehouse.views import LOG_ENTRIES_SCHEMA, MEASURES_SCHEMA, OTEL_SPANS_SCHEMA

SCHEMAS = {"log_entries": LOG_ENTRIES_SCHEMA, "measures": MEASURES_SCHEMA, "otel_spans": OTEL_SPANS_SCHEMA}


_UTF8 = pa.utf8()


def _plain_strings(schema: pa.Schema, to: pa.DataType = _UTF8) -> pa.Schema:
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_dictionary(t) and t.value_type == pa.utf8():
            t = to
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.schema(fields)


def _union(ctx: SessionContext, files: list[str], schema: pa.Schema) -> DataFrame:
    frames = [ctx.read_parquet(f, schema=schema) for f in files]
    while len(frames) > 1:
        frames = [
            frames[i].union(frames[i + 1]) if i + 1 < len(frames) else frames[i] for i in range(0, len(frames), 2)
        ]
    return frames[0]


def variant_context(spec: str, directory: str) -> SessionContext:
    """A context configured like a lakehouse session, changed by the parts of ``spec``."""
    options = {
        "datafusion.execution.parquet.pushdown_filters": "false",
        "datafusion.execution.parquet.reorder_filters": "true",
        "datafusion.execution.parquet.enable_page_index": "true",
        "datafusion.execution.parquet.schema_force_view_types": "false",
    }
    schema_of: Callable[[str], pa.Schema] = SCHEMAS.__getitem__
    for part in spec.split("+"):
        if part in ("push", "nopush"):
            options["datafusion.execution.parquet.pushdown_filters"] = str(part == "push").lower()
        elif part in ("pageidx", "nopageidx"):
            options["datafusion.execution.parquet.enable_page_index"] = str(part == "pageidx").lower()
        elif part == "utf8":
            schema_of = lambda view: _plain_strings(SCHEMAS[view])  # noqa: E731
        elif part == "view":
            schema_of = lambda view: _plain_strings(SCHEMAS[view], pa.string_view())  # noqa: E731
        elif part.startswith("opt:"):
            key, _, value = part[4:].partition("=")
            options[key if key.startswith("datafusion.") else f"datafusion.{key}"] = value
        elif part.startswith("tp"):
            options["datafusion.execution.target_partitions"] = part[2:]
        elif part.startswith("bs"):
            options["datafusion.execution.batch_size"] = part[2:]
        elif part.startswith("D:"):
            directory = part[2:]
        elif part != "base":
            raise SystemExit(f"unknown variant part {part!r}")
    config = SessionConfig().with_information_schema(True)
    for key, value in options.items():
        config = config.set(key, value)
    ctx = SessionContext(config)
    for view in SCHEMAS:
        ctx.register_view(view, _union(ctx, sorted(glob.glob(f"{directory}/{view}/*.parquet")), schema_of(view)))
    return ctx


def rewrite_sorted_by_time(source: str, target: str) -> None:
    """Copy ``source`` to ``target`` with each ``log_entries`` file's rows sorted by ``time``."""
    from sirius.lakehouse._parquet_files import encode_parquet  # the lakehouse's own encoder

    for view in SCHEMAS:
        os.makedirs(f"{target}/{view}", exist_ok=True)
        for path in sorted(glob.glob(f"{source}/{view}/*.parquet")):
            out = f"{target}/{view}/{os.path.basename(path)}"
            if view == "log_entries":
                table = pq.read_table(path).sort_by([("time", "ascending")])
                with open(out, "wb") as f:
                    f.write(encode_parquet(table, "zstd"))
            else:
                shutil.copy(path, out)
    shutil.copy(f"{source}/parameters.json", f"{target}/parameters.json")


def _timed_ms(fn: Callable[[], object], times: list[float]) -> None:
    start = time.perf_counter()
    fn()
    times.append((time.perf_counter() - start) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="files kept by bench/aggregates.py --keep")
    parser.add_argument("variants", help="comma-separated variants, e.g. push+nopageidx,nopush+pageidx")
    parser.add_argument("--queries", help="comma-separated substrings of query names (default: all)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rewrite", help="first write a time-sorted copy of the files here")
    args = parser.parse_args()
    if args.rewrite:
        rewrite_sorted_by_time(args.directory, args.rewrite)
    with open(f"{args.directory}/parameters.json") as f:
        parameters = QueryParameters(**json.load(f))
    wanted = args.queries.split(",") if args.queries else None
    queries = [
        q for q in QUERIES if "property_get" not in q.sql and (wanted is None or any(w in q.name for w in wanted))
    ]
    names = args.variants.split(",")
    contexts = {name: variant_context(name, args.directory) for name in names}
    con = duckdb_connection({v: sorted(glob.glob(f"{args.directory}/{v}/*.parquet")) for v in SCHEMAS})
    print(f"load average {os.getloadavg()}, median of {args.runs}, ratio = variant / DuckDB")
    print("| query | DuckDB ms | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(names))
    for query in queries:
        ours_sql, theirs_sql = render(query, "sirius", parameters), render(query, "duckdb", parameters)
        times: dict[str, list[float]] = {name: [] for name in ["duckdb", *names]}
        for _ in range(args.runs):
            _timed_ms(lambda sql=theirs_sql: con.sql(sql).to_arrow_table(), times["duckdb"])
            for name in names:
                _timed_ms(lambda n=name, sql=ours_sql: contexts[n].sql(sql).to_arrow_table(), times[name])
        medians = {name: statistics.median(t) for name, t in times.items()}
        duck = medians["duckdb"]
        cells = " | ".join(f"{medians[n]:.0f} ms {medians[n] / duck:.2f}x" for n in names)
        print(f"| {query.name} | {duck:.0f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
