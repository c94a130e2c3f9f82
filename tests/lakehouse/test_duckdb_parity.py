"""Our engine and DuckDB give the same answers to the observability query set on the same Parquet.

The lake is built as ``bench/aggregates.py`` builds its 10 M-row one, only smaller: transit
log and metrics blocks of several processes and executables and OTLP spans of several services,
stored through the data lake, then materialised into one-minute global partitions by the
daemon's batch update (``materialize_partitions``) on a local object store. Every query of
``bench/_query_set.py`` (the one copy the benchmark uses too) runs through ``SessionFactory`` and
through DuckDB reading the partition files; results compare as multisets unless the query orders
them, floats with a relative tolerance of 1e-9 (sums and means depend on the order of additions),
percentiles (``percentile_cont … WITHIN GROUP`` in both) with 2e-6: DataFusion truncates the
interpolation fraction to six decimals (see ``bench/_query_set.py``). The counting questions
answered from our per-minute pre-aggregate ``log_stats`` (``PREAGGREGATED``) must equal DuckDB's
answer over ``log_entries``; the measure statistics and the error spans of the set are planned
over ``measure_stats`` and ``span_stats`` by the session (checked), so those answers are
compared with DuckDB's over ``measures`` and ``otel_spans`` too.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from sirius.lakehouse import SessionFactory

from .bench_query_set import SMALL, observability_lake, query_set
from .conftest import Harness, LakeEnv


def test_query_set_covers_the_issue_shapes() -> None:
    names = [q.name for q in query_set.QUERIES]
    assert len(names) >= 12
    assert len(set(names)) == len(names)
    text = " ".join(q.sql for q in query_set.QUERIES)
    for shape in ("GROUP BY level", "LIKE", "{time_bin}", "count(DISTINCT", "percentile_cont", "ORDER BY time DESC"):
        assert shape in text, shape
    assert "property_get(" in text
    assert "{trace_id}" in text


def test_every_query_equals_duckdb(local_lake_env: LakeEnv) -> None:
    async def scenario(h: Harness) -> dict[str, Any]:
        built = await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        assert all(len(built.files[v]) >= 2 for v in query_set.VIEWS), built.files
        factory = SessionFactory(h.lake)
        results: dict[str, tuple[pa.Table, pa.Table]] = {}
        pre_aggregated: dict[str, tuple[int, int]] = {}
        duck = query_set.duckdb_connection(built.files)
        for query in query_set.QUERIES:
            session = await factory.create()
            ours = (await session.sql(query_set.render(query, "sirius", built.parameters))).to_arrow_table()
            theirs = duck.sql(query_set.render(query, "duckdb", built.parameters)).to_arrow_table()
            results[query.name] = (ours, theirs)
            pre_aggregated[query.name] = (session.measure_stats_rewrites, session.span_stats_rewrites)
        for query in query_set.PREAGGREGATED:
            session = await factory.create()
            ours = (await session.sql(query_set.render(query, "sirius", built.parameters))).to_arrow_table()
            results[f"log_stats: {query.name}"] = (ours, results[query.name][1])
        return {"rows": built.rows, "results": results, "pre_aggregated": pre_aggregated}

    out = local_lake_env(scenario)
    assert out["rows"] == {"log_entries": 6 * 700, "measures": 6 * 500, "otel_spans": 400 * 3 * 2}
    rewritten = {name: n for name, n in out["pre_aggregated"].items() if any(n)}
    assert rewritten == {"measure stats by name+exe": (1, 0), "error spans by service": (0, 1)}, rewritten
    problems = {}
    for query in query_set.QUERIES:
        ours, theirs = out["results"][query.name]
        assert ours.num_rows > 0, f"{query.name}: empty result proves nothing"
        found = query_set.compare_tables(ours, theirs, ordered=query.ordered, rel=query.tolerance)
        if found:
            problems[query.name] = found
    for query in query_set.PREAGGREGATED:
        ours, theirs = out["results"][f"log_stats: {query.name}"]
        found = query_set.compare_tables(ours, theirs, ordered=query.ordered)
        if found:
            problems[f"log_stats: {query.name}"] = found
    assert not problems, problems


def test_comparison_notices_a_difference() -> None:
    a = pa.table({"k": pa.array(["x", "y"]).dictionary_encode(), "v": [1.0, 2.0]})
    same = pa.table({"k": ["y", "x"], "v": [2.0 + 1e-13, 1.0]})
    other = pa.table({"k": ["y", "x"], "v": [2.5, 1.0]})
    assert query_set.compare_tables(a, same, ordered=False) == []
    assert query_set.compare_tables(a, same, ordered=True) != []
    assert query_set.compare_tables(a, other, ordered=False) != []


def test_id_lookups_push_filters_down_and_aggregates_do_not(local_lake_env: LakeEnv) -> None:
    """Sessions scan without Parquet filter pushdown, except for a statement looking up an id."""

    def pruned_by_pushdown(plan: pa.Table) -> int:
        text = " ".join(str(v) for v in plan.column(1).to_pylist())
        counts = [
            part.split("=", 1)[1] for part in text.replace("]", ",").split(", ") if "pushdown_rows_pruned=" in part
        ]
        return sum(float(c.replace(" K", "e3").replace(" M", "e6")) for c in counts)

    async def scenario(h: Harness) -> tuple[float, float, float, int]:
        built = await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        session = await SessionFactory(h.lake).create()
        trace = built.parameters.trace_id
        lookup = f"EXPLAIN ANALYZE SELECT span_id FROM otel_spans WHERE trace_id = X'{trace}'"
        aggregate = "EXPLAIN ANALYZE SELECT count(*) FROM otel_spans WHERE status = 'ERROR'"
        first = pruned_by_pushdown((await session.sql(lookup)).to_arrow_table())
        then = pruned_by_pushdown((await session.sql(aggregate)).to_arrow_table())
        again = pruned_by_pushdown((await session.sql(lookup)).to_arrow_table())
        rows = (await session.sql(lookup.removeprefix("EXPLAIN ANALYZE "))).to_arrow_table().num_rows
        return first, then, again, rows

    first, then, again, rows = local_lake_env(scenario)
    assert rows == 6
    assert first > 0
    assert again == first
    assert then == 0
