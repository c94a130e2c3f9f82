"""Span counts and durations over ``otel_spans`` planned over ``span_stats``: same answers, only when exact.

On the small lake of the DuckDB parity test (the daemon's batch update into one-minute
partitions, then ``span_stats``): a session with the rewrite and one without give equal results
for the query set's error spans by service and more shapes (count, sum, min, max of
``duration`` by service, name, kind, status, process, start-minute bins and bounds), and the
rewritten plan reads ``span_stats``. Statements it cannot answer exactly (percentiles, a bound
inside a minute, a filter on ``duration`` or ``end_time``, the process's plain-string columns, a
subquery named like the view) and sessions whose data it does not match (a stale or missing
partition, any query range: the range filter of spans reads ``end_time`` too) are planned as
written. A property test builds ``span_stats`` with the view's own aggregation (two halves
merged) from random spans and checks that the answer with the rewrite equals the answer without
it, and that a rewrite happens exactly when every bound falls on a whole minute.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse import SessionFactory, SessionSettings, TimeRange
from sirius.lakehouse._log_stats_rewrite import SPAN_STATS, LogStatsRewriter
from sirius.lakehouse._sql_functions import new_session_context
from sirius.lakehouse.views import SpanStatsView
from sirius.lakehouse.views._minute_stats import aggregate_with_sql

from .bench_query_set import SMALL, observability_lake, query_set
from .conftest import Harness, LakeEnv
from .test_log_stats_rewrite import BASE_NS, MINUTE, _iso, _query_named, _same
from .test_log_stats_rewrite import _answers as answers

REWRITTEN = [
    "SELECT service_name, count(*) AS n FROM otel_spans WHERE status = 'ERROR' GROUP BY service_name",
    "SELECT service_name, name, count(*), sum(duration), min(duration), max(duration) FROM otel_spans"
    " GROUP BY service_name, name",
    "SELECT kind, status, count(duration) FROM otel_spans WHERE kind IN ('SERVER', 'CLIENT') GROUP BY 1, 2",
    "SELECT date_bin(INTERVAL '1 minute', start_time) AS bin, count(*) FROM otel_spans GROUP BY 1",
    f"SELECT process_id, max(duration) FROM otel_spans WHERE start_time >= '{_iso(BASE_NS + MINUTE)}'"
    " GROUP BY process_id ORDER BY 2 DESC, 1 LIMIT 2",
    "SELECT count(*), count(DISTINCT service_name) FROM otel_spans",
]
"""Shapes ``span_stats`` answers exactly (besides the query set's own)."""

NOT_REWRITTEN = [
    "SELECT service_name, percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) FROM otel_spans GROUP BY 1",
    f"SELECT count(*) FROM otel_spans WHERE start_time >= '{_iso(BASE_NS + MINUTE + 1)}'",
    f"SELECT count(*) FROM otel_spans WHERE end_time >= '{_iso(BASE_NS + MINUTE)}'",
    "SELECT name, count(*) FROM otel_spans WHERE duration > 1000 GROUP BY name",
    "SELECT exe, count(*) FROM otel_spans GROUP BY exe",
    "SELECT name, avg(duration) FROM otel_spans GROUP BY name",
    "SELECT name, count(*) FROM (SELECT * FROM otel_spans WHERE duration > 5) AS otel_spans GROUP BY name",
    "SELECT span_id, name FROM otel_spans WHERE status = 'ERROR' ORDER BY span_id LIMIT 3",
]
"""Shapes it does not answer exactly: planned over ``otel_spans``."""


async def _answers(
    factory: SessionFactory, sql: str, query_range: TimeRange | None = None
) -> tuple[pa.Table, int, str]:
    return await answers(factory, sql, query_range, counter="span_stats_rewrites")


def test_span_statistics_are_answered_from_span_stats(local_lake_env: LakeEnv) -> None:
    async def scenario(h: Harness) -> dict[str, Any]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        on, off = SessionFactory(h.lake), SessionFactory(h.lake, SessionSettings(span_stats_rewrite=False))
        out: dict[str, Any] = {}
        for sql in [_query_named("error spans by service"), *REWRITTEN, *NOT_REWRITTEN]:
            ours, rewrites, plan = await _answers(on, sql)
            plain, none, _ = await _answers(off, sql)
            out[sql] = (ours, plain, rewrites, none, plan)
        # Any range (even whole minutes): spans are kept by start and end time, not the start minute.
        aligned = TimeRange(BASE_NS, BASE_NS + 2 * MINUTE - 1)
        out["ranged"] = await _answers(on, _query_named("error spans by service"), aligned)
        return out

    out = local_lake_env(scenario)
    for sql in [_query_named("error spans by service"), *REWRITTEN]:
        ours, plain, rewrites, none, plan = out[sql]
        assert (rewrites, none) == (1, 0), sql
        assert "span_stats" in plan, sql
        assert plain.num_rows > 0, sql
        assert ours.schema.types == plain.schema.types, sql
        assert _same(ours, plain, ordered="LIMIT" in sql), (sql, ours, plain)
    for sql in NOT_REWRITTEN:
        ours, plain, rewrites, _, plan = out[sql]
        assert rewrites == 0, sql
        assert "span_stats" not in plan, sql
        assert _same(ours, plain, ordered="LIMIT" in sql), sql
    _, rewrites, plan = out["ranged"]
    assert rewrites == 0
    assert "span_stats" not in plan


# ---------------------------------------------------------------------------------------------
# property: the rewrite never changes an answer, and happens exactly when the bounds are whole minutes

_DICT = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("ns", tz="+00:00")  # the views' TIMESTAMP


def _spans(seed: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    starts = BASE_NS + rng.integers(0, 6 * MINUTE, rows)
    durations = rng.integers(0, 3 * MINUTE, rows)
    return pa.table(
        {
            "process_id": pa.array(rng.choice(["p1", "p2"], rows)).cast(_DICT),
            "exe": pa.array(rng.choice(["a", "b"], rows), pa.string()),
            "start_time": pa.array(starts, _TS),
            "end_time": pa.array(starts + durations, _TS),
            "duration": pa.array(durations, pa.int64()),
            "name": pa.array(rng.choice(["GET", "PUT", "db"], rows)).cast(_DICT),
            "kind": pa.array(rng.choice(["SERVER", "CLIENT"], rows)).cast(_DICT),
            "status": pa.array(rng.choice(["UNSET", "OK", "ERROR"], rows)).cast(_DICT),
            "service_name": pa.array(rng.choice(["api", "db"], rows)).cast(_DICT),
        }
    )


def _stats(spans: pa.Table, split: int) -> pa.Table:
    halves = [spans.slice(0, split), spans.slice(split)]
    return SpanStatsView().merge(
        [aggregate_with_sql(half, SpanStatsView.build_sql, SpanStatsView.schema) for half in halves]
    )


_BOUND = st.tuples(
    st.sampled_from([">=", ">", "<", "<="]), st.integers(0, 7), st.sampled_from([0, -1, 1, 30_000_000_000])
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(0, 300),
    split=st.integers(0, 300),
    bounds=st.lists(_BOUND, max_size=3),
    status=st.one_of(st.none(), st.sampled_from(["ERROR", "OK"])),
    group=st.sampled_from(
        [
            "service_name",
            "service_name, name",
            "kind, status, process_id",
            "",
            "date_bin(INTERVAL '1 minute', start_time)",
        ]
    ),
    aggregates=st.lists(
        st.sampled_from(
            ["count(*)", "count(duration)", "sum(duration)", "min(duration)", "max(duration)", "count(DISTINCT name)"]
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
    bounds: list[tuple[str, int, int]],
    status: str | None,
    group: str,
    aggregates: list[str],
) -> None:
    spans = _spans(seed, rows)
    ctx = new_session_context()
    ctx.register_view("otel_spans", ctx.from_arrow(spans))
    ctx.register_view("span_stats", ctx.from_arrow(_stats(spans, min(split, rows))))

    async def covered() -> bool:
        return True

    conditions = [f"start_time {op} '{_iso(BASE_NS + minute * MINUTE + shift)}'" for op, minute, shift in bounds]
    if status is not None:
        conditions.append(f"status = '{status}'")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    keys = f"{group}, " if group else ""
    selected = ", ".join(f"{a} AS a{i}" for i, a in enumerate(aggregates))
    sql = f"SELECT {keys}{selected} FROM otel_spans{where}" + (f" GROUP BY {group}" if group else "")
    rewriter = LogStatsRewriter(ctx, None, covered, SPAN_STATS)
    df = ctx.sql(sql)
    rewritten = asyncio.run(rewriter.rewrite(df))

    def exact(op: str, shift: int) -> bool:
        return shift == 0 if op in (">=", "<") else shift == -1

    assert rewriter.rewrites == int(all(exact(op, shift) for op, _, shift in bounds))
    ours, plain = rewritten.to_arrow_table(), df.to_arrow_table()
    assert ours.schema.types == plain.schema.types, sql
    assert query_set.compare_tables(ours, plain, ordered=False, rel=0.0) == [], sql


def test_span_stats_build_and_merge_agree() -> None:
    spans = _spans(5, 500)
    whole = aggregate_with_sql(spans, SpanStatsView.build_sql, SpanStatsView.schema)
    assert whole.schema == SpanStatsView.schema
    assert int(pa.compute.sum(whole.column("count")).as_py()) == 500
    for split in (0, 1, 250, 500):
        assert query_set.compare_tables(_stats(spans, split), whole, ordered=True, rel=0.0) == [], split


def test_a_session_with_a_range_is_not_rewritten() -> None:
    spans = _spans(3, 100)
    ctx = new_session_context()
    ctx.register_view("otel_spans", ctx.from_arrow(spans))
    ctx.register_view("span_stats", ctx.from_arrow(_stats(spans, 50)))

    async def covered() -> bool:
        return True

    sql = "SELECT service_name, count(*) FROM otel_spans GROUP BY service_name"
    ranged = LogStatsRewriter(ctx, TimeRange(BASE_NS, BASE_NS + 3 * MINUTE - 1), covered, SPAN_STATS)
    asyncio.run(ranged.rewrite(ctx.sql(sql)))
    unranged = LogStatsRewriter(ctx, None, covered, SPAN_STATS)
    asyncio.run(unranged.rewrite(ctx.sql(sql)))
    assert (ranged.rewrites, unranged.rewrites) == (0, 1)
