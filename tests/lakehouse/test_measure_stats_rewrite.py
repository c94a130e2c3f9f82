"""Statistics of ``measures`` planned over ``measure_stats``: same answers, and only when exact.

On the small lake of the DuckDB parity test (the daemon's batch update into one-minute
partitions, then ``measure_stats``): a session with the rewrite and one without give equal
results for the query set's measure statistics and more shapes (count, avg, sum, min, max of
``value``, count and sum of ``delta``, by name, target, unit, process and the process's columns,
whole-minute bins and bounds), and the rewritten plan reads ``measure_stats``. Statements it
cannot answer exactly (percentiles, a bound inside a minute, a value filter, a column it lacks,
FILTER and DISTINCT aggregates of values, a subquery named like the view) and sessions whose data
it does not match (a stale or missing partition) are planned as written. A property test builds
``measure_stats`` with the view's own aggregation (two halves merged) from random rows — NaN,
-0.0 and infinities included — and checks that whatever the bounds, keys and statistics, the
answer with the rewrite equals the answer without it, and that a rewrite happens exactly when
every bound falls on a whole minute and no value is NaN (DataFusion's grouped min/max mishandle
NaN, so minima of minima could differ: such sessions keep the statements as written).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse import SessionFactory, SessionSettings, TimeRange
from sirius.lakehouse._log_stats_rewrite import MEASURE_STATS, LogStatsRewriter
from sirius.lakehouse._sql_functions import new_session_context
from sirius.lakehouse.views import MeasureStatsView
from sirius.lakehouse.views._minute_stats import aggregate_with_sql

from .bench_query_set import SMALL, observability_lake, query_set
from .conftest import Harness, LakeEnv
from .test_log_stats_rewrite import BASE_NS, MINUTE, _iso, _query_named, _same
from .test_log_stats_rewrite import _answers as answers

REWRITTEN = [
    "SELECT name, avg(value) AS mean, min(value) AS lo, max(value) AS hi, count(delta) AS deltas FROM measures"
    " GROUP BY name",
    "SELECT name, exe, avg(value), min(value), max(value), count(delta) FROM measures GROUP BY name, exe",
    "SELECT count(*), sum(value), count(value), sum(delta) FROM measures",
    "SELECT target, unit, sum(value) AS s FROM measures WHERE name <> 'x' GROUP BY target, unit ORDER BY s DESC LIMIT 3",
    "SELECT date_bin(INTERVAL '1 minute', time) AS bin, name, max(value) FROM measures GROUP BY 1, 2",
    f"SELECT process_id, min(value) FROM measures WHERE time >= '{_iso(BASE_NS + MINUTE)}'"
    f" AND time < '{_iso(BASE_NS + 2 * MINUTE)}' GROUP BY process_id",
    "SELECT computer, count(DISTINCT name), avg(value) FROM measures GROUP BY computer HAVING count(*) > 1",
]
"""Shapes ``measure_stats`` answers exactly (besides the query set's own)."""

NOT_REWRITTEN = [
    "SELECT name, percentile_cont(0.99) WITHIN GROUP (ORDER BY value) FROM measures GROUP BY name",
    f"SELECT count(*) FROM measures WHERE time >= '{_iso(BASE_NS + MINUTE + 1)}'",
    "SELECT name, count(*) FROM measures WHERE value > 1 GROUP BY name",
    "SELECT service_name, avg(value) FROM measures GROUP BY service_name",
    "SELECT name, avg(value) FILTER (WHERE target <> 'x') FROM measures GROUP BY name",
    "SELECT name, sum(DISTINCT value) FROM measures GROUP BY name",
    "SELECT name, avg(delta) FROM measures GROUP BY name",
    "SELECT name, min(time) FROM measures GROUP BY name",
    "SELECT name, stddev(value) FROM measures GROUP BY name",
    "SELECT name, avg(value) FROM (SELECT * FROM measures WHERE value < 3) AS measures GROUP BY name",
]
"""Shapes it does not answer exactly: planned over ``measures``."""


async def _answers(
    factory: SessionFactory, sql: str, query_range: TimeRange | None = None
) -> tuple[pa.Table, int, str]:
    return await answers(factory, sql, query_range, counter="measure_stats_rewrites")


def test_measure_statistics_are_answered_from_measure_stats(local_lake_env: LakeEnv) -> None:
    async def scenario(h: Harness) -> dict[str, Any]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        on, off = SessionFactory(h.lake), SessionFactory(h.lake, SessionSettings(measure_stats_rewrite=False))
        out: dict[str, Any] = {}
        for sql in [_query_named("measure stats by name+exe"), *REWRITTEN, *NOT_REWRITTEN]:
            ours, rewrites, plan = await _answers(on, sql)
            plain, none, _ = await _answers(off, sql)
            out[sql] = (ours, plain, rewrites, none, plan)
        return out

    out = local_lake_env(scenario)
    for sql in [_query_named("measure stats by name+exe"), *REWRITTEN]:
        ours, plain, rewrites, none, plan = out[sql]
        assert (rewrites, none) == (1, 0), sql
        assert "measure_stats" in plan, sql
        assert plain.num_rows > 0, sql
        assert ours.column_names == plain.column_names, sql
        assert ours.schema.types == plain.schema.types, sql
        assert _same(ours, plain, ordered="LIMIT" in sql), (sql, ours, plain)
    for sql in NOT_REWRITTEN:
        ours, plain, rewrites, _, plan = out[sql]
        assert rewrites == 0, sql
        assert "measure_stats" not in plan, sql
        assert _same(ours, plain, ordered=False), sql


# ---------------------------------------------------------------------------------------------
# property: the rewrite never changes an answer, and happens exactly when the bounds are whole minutes

_DICT = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("ns", tz="+00:00")  # the views' TIMESTAMP
_EXE = {"p1": "svc-a", "p2": "svc-b", "p3": "svc-a"}
# Integers (sums exact in any order) and the values whose order or arithmetic is special.
_SPECIAL = [math.nan, -0.0, 0.0, math.inf, -math.inf]


def _measures(seed: int, rows: int, special: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    times = BASE_NS + rng.integers(0, 6 * MINUTE, rows)
    processes = rng.choice(list(_EXE), rows)
    values = rng.integers(-50, 50, rows).astype(np.float64)
    if special and rows:
        picks = rng.random(rows) < 0.2
        values[picks] = rng.choice(_SPECIAL, int(picks.sum()))
    deltas = pa.array(rng.integers(0, 9, rows).astype(np.float64), mask=rng.random(rows) < 0.5)
    return pa.table(
        {
            "process_id": pa.array(processes).cast(_DICT),
            "exe": pa.array([_EXE[p] for p in processes], pa.string()).cast(_DICT),
            "username": pa.array(["u"] * rows, pa.string()).cast(_DICT),
            "computer": pa.array(processes).cast(_DICT),
            "time": pa.array(times, _TS),
            "target": pa.array(rng.choice(["a", "b"], rows)).cast(_DICT),
            "name": pa.array(rng.choice(["cpu", "mem", "io"], rows)).cast(_DICT),
            "unit": pa.array(rng.choice(["s", "B"], rows)).cast(_DICT),
            "value": pa.array(values, pa.float64()),
            "delta": deltas,
            "service_name": pa.array([_EXE[p] for p in processes], pa.string()).cast(_DICT),
        }
    )


def _stats(measures: pa.Table, split: int) -> pa.Table:
    """``measure_stats`` of the rows as the view builds and merges it: two halves, then merged."""
    halves = [measures.slice(0, split), measures.slice(split)]
    return MeasureStatsView().merge(
        [aggregate_with_sql(half, MeasureStatsView.build_sql, MeasureStatsView.schema) for half in halves]
    )


def _processes() -> pa.Table:
    ids = list(_EXE)
    return pa.table({"process_id": ids, "exe": [_EXE[p] for p in ids], "username": ["u"] * 3, "computer": ids})


def _same_with_nan(a: pa.Table, b: pa.Table) -> bool:
    """Equal as multisets, NaN equal to NaN (sums of integers are exact, so no tolerance)."""

    def rows(table: pa.Table) -> list[tuple[Any, ...]]:
        return sorted(
            (
                tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row)
                for row in query_set.normalise(table)
            ),
            key=repr,
        )

    return rows(a) == rows(b)


_BOUND = st.tuples(
    st.sampled_from([">=", ">", "<", "<="]), st.integers(0, 7), st.sampled_from([0, -1, 1, 30_000_000_000])
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(0, 300),
    split=st.integers(0, 300),
    special=st.booleans(),
    bounds=st.lists(_BOUND, max_size=3),
    name=st.one_of(st.none(), st.sampled_from(["cpu", "io"])),
    group=st.sampled_from(["name", "name, exe", "process_id, target, unit", "date_bin(INTERVAL '1 minute', time)", ""]),
    aggregates=st.lists(
        st.sampled_from(
            [
                "count(*)",
                "count(value)",
                "avg(value)",
                "sum(value)",
                "min(value)",
                "max(value)",
                "count(delta)",
                "sum(delta)",
                "count(DISTINCT name)",
            ]
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_rewrite_never_changes_the_answer(
    *,
    seed: int,
    rows: int,
    split: int,
    special: bool,
    bounds: list[tuple[str, int, int]],
    name: str | None,
    group: str,
    aggregates: list[str],
) -> None:
    measures = _measures(seed, rows, special)
    ctx = new_session_context()
    ctx.register_view("measures", ctx.from_arrow(measures))
    ctx.register_view("measure_stats", ctx.from_arrow(_stats(measures, min(split, rows))))
    ctx.register_view("processes", ctx.from_arrow(_processes()))

    async def covered() -> bool:
        return True

    conditions = [f"time {op} '{_iso(BASE_NS + minute * MINUTE + shift)}'" for op, minute, shift in bounds]
    if name is not None:
        conditions.append(f"name = '{name}'")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    keys = f"{group}, " if group else ""
    selected = ", ".join(f"{a} AS a{i}" for i, a in enumerate(aggregates))
    sql = f"SELECT {keys}{selected} FROM measures{where}" + (f" GROUP BY {group}" if group else "")
    rewriter = LogStatsRewriter(ctx, None, covered, MEASURE_STATS)
    df = ctx.sql(sql)
    rewritten = asyncio.run(rewriter.rewrite(df))

    def exact(op: str, shift: int) -> bool:
        return shift == 0 if op in (">=", "<") else shift == -1

    has_nan = bool(pa.compute.any(pa.compute.is_nan(measures.column("value"))).as_py())
    assert rewriter.rewrites == int(not has_nan and all(exact(op, shift) for op, _, shift in bounds))
    ours, plain = rewritten.to_arrow_table(), df.to_arrow_table()
    assert ours.schema.types == plain.schema.types, sql
    assert _same_with_nan(ours, plain), (sql, ours.to_pylist(), plain.to_pylist())


def test_measure_stats_build_and_merge_agree() -> None:
    """Merging the statistics of two halves gives those of the whole; NaN values are counted."""
    measures = _measures(11, 400, special=False)
    whole = aggregate_with_sql(measures, MeasureStatsView.build_sql, MeasureStatsView.schema)
    assert whole.schema == MeasureStatsView.schema
    assert int(pa.compute.sum(whole.column("count")).as_py()) == 400
    assert int(pa.compute.sum(whole.column("value_nans")).as_py()) == 0
    for split in (0, 1, 200, 400):
        assert _same_with_nan(_stats(measures, split), whole), split
    special = _measures(11, 400, special=True)
    nans = int(pa.compute.sum(pa.compute.is_nan(special.column("value"))).as_py())
    assert nans > 0
    assert int(pa.compute.sum(_stats(special, 123).column("value_nans")).as_py()) == nans


def test_a_range_cutting_a_minute_is_not_rewritten() -> None:
    measures = _measures(3, 100, special=False)
    ctx = new_session_context()
    ctx.register_view("measures", ctx.from_arrow(measures))
    ctx.register_view("measure_stats", ctx.from_arrow(_stats(measures, 50)))

    async def covered() -> bool:
        return True

    sql = "SELECT name, avg(value) FROM measures GROUP BY name"
    cut = LogStatsRewriter(ctx, TimeRange(BASE_NS + 1, BASE_NS + 3 * MINUTE - 1), covered, MEASURE_STATS)
    asyncio.run(cut.rewrite(ctx.sql(sql)))
    aligned = LogStatsRewriter(ctx, TimeRange(BASE_NS, BASE_NS + 3 * MINUTE - 1), covered, MEASURE_STATS)
    asyncio.run(aligned.rewrite(ctx.sql(sql)))
    assert (cut.rewrites, aligned.rewrites) == (0, 1)
