"""The observability query set run by our engine and by DuckDB over the same Parquet partitions.

One copy, shared by ``bench/aggregates.py`` (timings, ours / DuckDB) and
``tests/lakehouse/test_duckdb_parity.py`` (equal results on a small lake). Each query is written
once; the few places where the engines spell a thing differently are named fragments
(``{time_bin}``, ``{trace_id}``), rendered per engine by ``render``:

* ``date_bin(INTERVAL '1 minute', time)`` is DuckDB's ``time_bucket(INTERVAL '1 minute', time)``
  (both align one-minute bins on whole minutes);
* a binary literal is ``X'…'`` for DataFusion and ``from_hex('…')`` for DuckDB;
* ``property_get(properties, key)`` reads our JSONB property sets; DuckDB has no reader for that
  encoding, so ``duckdb_connection`` registers a ``property_get`` of its own (an Arrow-vectorised
  Python function decoding each distinct set once with ``sirius.lakehouse.decode_jsonb``).

Percentiles use ``percentile_cont(p) WITHIN GROUP (ORDER BY x)``, which both engines compute
from every value (linear interpolation between the two closest ranks) — DataFusion's
``approx_percentile_cont`` (t-digest) would not be comparable. DataFusion 55 truncates the
interpolation fraction to six decimals (0.87 becomes 0.869999 when it is 0.8699…9 in binary), so
its answer may sit up to 1e-6 * (upper - lower value) below DuckDB's: those queries compare with
a relative tolerance of 2e-6 (``Query.tolerance``; values there are positive), the others 1e-9.

The benchmarks run as ``python bench/<name>.py`` (``bench/`` first on ``sys.path``); the test
loads this file by path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sirius.lakehouse import decode_jsonb

__all__ = [
    "PREAGGREGATED",
    "QUERIES",
    "VIEWS",
    "Query",
    "QueryParameters",
    "compare_tables",
    "duckdb_connection",
    "normalise",
    "render",
]

VIEWS = ("log_entries", "measures", "otel_spans")
"""The global views the set reads."""


@dataclass(frozen=True, slots=True)
class Query:
    """One query of the set.

    Attributes:
        name: short label (benchmark rows, test ids).
        sql: the query, with ``{fragment}`` placeholders rendered per engine.
        ordered: the result order is part of the answer (ORDER BY … LIMIT).
        tolerance: relative tolerance of float columns when comparing engines.
    """

    name: str
    sql: str
    ordered: bool = False
    tolerance: float = 1e-9


@dataclass(frozen=True, slots=True)
class QueryParameters:
    """Values the queries need from the lake they run on.

    Attributes:
        window_begin: ISO-8601 UTC instant, inclusive bound of the windowed queries.
        window_end: ISO-8601 UTC instant, exclusive bound.
        trace_id: hex of a trace that exists in ``otel_spans``.
        route: an ``http.route`` span attribute value that exists.
    """

    window_begin: str
    window_end: str
    trace_id: str
    route: str


QUERIES: tuple[Query, ...] = (
    Query("count by level", "SELECT level, count(*) AS n FROM log_entries GROUP BY level"),
    Query(
        "by target, time bounds",
        "SELECT target, count(*) AS n, min(time) AS lo, max(time) AS hi FROM log_entries GROUP BY target",
    ),
    Query("by process+level", "SELECT process_id, level, count(*) AS n FROM log_entries GROUP BY process_id, level"),
    Query("msg LIKE filter", "SELECT count(*) AS n FROM log_entries WHERE msg LIKE '%user-7 %'"),
    Query(
        "top error targets in window",
        "SELECT target, count(*) AS errors FROM log_entries"
        " WHERE level <= 2 AND time >= '{window_begin}' AND time < '{window_end}'"
        " GROUP BY target ORDER BY errors DESC, target LIMIT 5",
        ordered=True,
    ),
    Query(
        "minute histogram by level",
        "SELECT {time_bin} AS bin, level, count(*) AS n FROM log_entries GROUP BY 1, 2",
    ),
    Query(
        "distinct processes per exe",
        "SELECT exe, count(DISTINCT process_id) AS processes FROM log_entries GROUP BY exe",
    ),
    Query(
        "p99 of measures by name",
        "SELECT name, percentile_cont(0.99) WITHIN GROUP (ORDER BY value) AS p99, count(*) AS n"
        " FROM measures GROUP BY name",
        tolerance=2e-6,
    ),
    Query(
        "measure stats by name+exe",
        "SELECT name, exe, avg(value) AS mean, min(value) AS lo, max(value) AS hi, count(delta) AS deltas"
        " FROM measures GROUP BY name, exe",
    ),
    Query(
        "latest errors",
        "SELECT time, process_id, target, msg FROM log_entries WHERE level <= 2"
        " ORDER BY time DESC, process_id, msg LIMIT 20",
        ordered=True,
    ),
    Query(
        "trace by id",
        "SELECT span_id, parent_span_id, name, start_time, duration FROM otel_spans WHERE trace_id = {trace_id}",
    ),
    Query(
        "span duration percentiles",
        "SELECT service_name, name, count(*) AS n,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) AS p50,"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration) AS p99"
        " FROM otel_spans GROUP BY service_name, name",
        tolerance=2e-6,
    ),
    Query(
        "error spans by service",
        "SELECT service_name, count(*) AS n FROM otel_spans WHERE status = 'ERROR' GROUP BY service_name",
    ),
    Query(
        "property_get filter",
        "SELECT service_name, count(*) AS n FROM otel_spans"
        " WHERE property_get(properties, 'http.route') = '{route}' GROUP BY service_name",
    ),
)


PREAGGREGATED: tuple[Query, ...] = (
    Query("count by level", "SELECT level, sum(count) AS n FROM log_stats GROUP BY level"),
    Query("by process+level", "SELECT process_id, level, sum(count) AS n FROM log_stats GROUP BY process_id, level"),
    Query(
        "top error targets in window",
        "SELECT target, sum(count) AS errors FROM log_stats"
        " WHERE level <= 2 AND time_bin >= '{window_begin}' AND time_bin < '{window_end}'"
        " GROUP BY target ORDER BY errors DESC, target LIMIT 5",
        ordered=True,
    ),
    Query("minute histogram by level", "SELECT time_bin AS bin, level, sum(count) AS n FROM log_stats GROUP BY 1, 2"),
)
"""The ``log_entries`` questions of ``QUERIES`` (same names) answered from ``log_stats``, our
per-minute pre-aggregate (counts per minute, process, level and target): same answers, since the
window bounds are whole minutes. Ours only — DuckDB has no such view; its side stays the
``log_entries`` query."""


def render(query: Query, engine: str, parameters: QueryParameters) -> str:
    """The SQL of ``query`` for ``engine`` (``sirius``, ``duckdb``, or ``sail``: Spark SQL on Sail)."""
    if engine not in ("sirius", "duckdb", "sail"):
        raise ValueError(f"unknown engine {engine!r}")
    time_bin = {
        "sirius": "date_bin(INTERVAL '1 minute', time)",
        "duckdb": "time_bucket(INTERVAL '1 minute', time)",
        "sail": "date_trunc('MINUTE', time)",  # Spark SQL: one-minute bins on whole minutes too
    }[engine]
    fragments = {
        "time_bin": time_bin,
        "trace_id": f"from_hex('{parameters.trace_id}')" if engine == "duckdb" else f"X'{parameters.trace_id}'",
        "window_begin": parameters.window_begin,
        "window_end": parameters.window_end,
        "route": parameters.route,
    }
    return query.sql.format_map(fragments)


# ---------------------------------------------------------------------------------------------
# DuckDB over the same files


def _property_get_udf() -> Any:
    decoded: dict[bytes, Mapping[str, Any]] = {}

    def property_get(properties: pa.Array, keys: pa.Array) -> pa.Array:
        # Each distinct property set is decoded once per connection (DuckDB hands plain BLOBs).
        encoded = pc.dictionary_encode(properties)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        key = keys[0].as_py() if len(keys) else None
        values = []
        for blob in encoded.dictionary.to_pylist():
            found = decoded.get(blob)
            if found is None:
                found = decoded[blob] = decode_jsonb(blob)
            value = found.get(key) if isinstance(found, Mapping) else None
            values.append(None if value is None else str(value))
        return pc.take(pa.array(values, pa.string()), encoded.indices)

    return property_get


def duckdb_connection(files: Mapping[str, Sequence[str]], threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per global view over its partition files.

    Args:
        files: for each name of ``VIEWS``, the absolute paths of its Parquet partitions.
        threads: DuckDB's worker threads (None: its default, the number of cores).
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for view, paths in files.items():
        listed = ", ".join(repr(p) for p in paths)
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listed}])")
    con.create_function(
        "property_get",
        _property_get_udf(),
        [duckdb.sqltype("BLOB"), duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("VARCHAR"),
        type="arrow",
    )
    return con


# ---------------------------------------------------------------------------------------------
# comparing results


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    t = column.type
    if pa.types.is_dictionary(t):
        return _plain(column.cast(t.value_type))
    if pa.types.is_timestamp(t):
        # DuckDB's time_bucket and min/max may come back in µs or ns: compare integer ns.
        return column.cast(pa.timestamp("ns", tz=t.tz)).cast(pa.int64())
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return column.cast(pa.string())
    if pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t):
        return column.cast(pa.binary())
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return column.cast(pa.int64()) if not pa.types.is_decimal(t) else column.cast(pa.float64())
    return column


def normalise(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of ``table`` as tuples of plain Python values (strings, ints, floats, bytes, ns)."""
    columns = [_plain(table.column(i)).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns, strict=True)) if columns else []


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, type(v).__name__, v if v is not None else 0) for v in row)


def _same(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9)
    return a == b


def compare_tables(ours: pa.Table, theirs: pa.Table, *, ordered: bool, rel: float = 1e-9) -> list[str]:
    """Differences between two results (empty when equal).

    Rows compare in order when ``ordered``, else as multisets; floats with relative tolerance
    ``rel`` (sums and averages differ in the last bits with the order of additions).
    """
    if ours.num_columns != theirs.num_columns:
        return [f"columns: {ours.column_names} vs {theirs.column_names}"]
    a, b = normalise(ours), normalise(theirs)
    if len(a) != len(b):
        return [f"row count: {len(a)} vs {len(b)}"]
    if not ordered:
        # Float columns are rounded for the sort only, so near-equal rows line up.
        def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
            return _sort_key(tuple(round(v, 6) if isinstance(v, float) else v for v in row))

        a, b = sorted(a, key=key), sorted(b, key=key)
    problems = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if len(x) != len(y) or not all(_same(u, v, rel) for u, v in zip(x, y, strict=True)):
            problems.append(f"row {i}: {x} vs {y}")
            if len(problems) >= 5:
                break
    return problems
