"""Counting questions over ``log_entries`` planned over ``log_stats``: same answers, and only when exact.

On the small lake of the DuckDB parity test (the daemon's batch update into one-minute
partitions, then ``log_stats``): a session with the rewrite and one without give equal results
for every counting shape of the query set and a few more, and the rewritten plan reads
``log_stats``. Statements ``log_stats`` cannot answer exactly (a bound inside a minute, a column
it lacks, a distinct count, a subquery named like the view) and sessions whose data it does not
match (a stale or missing ``log_stats`` partition, a range cutting a minute) are planned as
written. A property test checks, on in-memory tables, that whatever the time bounds and
filters, the answer with the rewrite equals the answer without it, and that a rewrite happens
exactly when every bound falls on a whole minute.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse import SessionFactory, SessionSettings, TimeRange
from sirius.lakehouse._log_stats_rewrite import LogStatsRewriter, minute_aligned_range
from sirius.lakehouse._sql_functions import new_session_context

from .bench_query_set import SMALL, observability_lake, query_set
from .conftest import Harness, LakeEnv

MINUTE = 60_000_000_000
BASE_NS = int(observability_lake.BASE.timestamp()) * 1_000_000_000


def _iso(ns: int) -> str:
    moment = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    fraction = ns % 1_000_000_000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{fraction:09d}Z" if fraction else f"{text}Z"


REWRITTEN = [
    "SELECT level, count(*) AS n FROM log_entries GROUP BY level",
    "SELECT process_id, level, count(*) AS n FROM log_entries GROUP BY process_id, level",
    "SELECT date_bin(INTERVAL '1 minute', time) AS bin, level, count(*) AS n FROM log_entries GROUP BY 1, 2",
    "SELECT date_bin(INTERVAL '2 minutes', time) AS bin, count(1) AS n FROM log_entries GROUP BY 1",
    "SELECT date_trunc('hour', time) AS h, target, count(*) FROM log_entries GROUP BY 1, 2",
    "SELECT count(*) FROM log_entries",
    f"SELECT count(*) FROM log_entries WHERE time >= '{_iso(BASE_NS + 5 * MINUTE)}'",
    f"SELECT level, count(*) AS n FROM log_entries WHERE time > '{_iso(BASE_NS + MINUTE - 1)}'"
    f" AND time <= '{_iso(BASE_NS + 2 * MINUTE - 1)}' GROUP BY level HAVING count(*) > 1 ORDER BY n DESC, level LIMIT 3",
    "SELECT target, count(*) AS n FROM log_entries WHERE level IN (1, 2) OR target = 'x' GROUP BY target",
    "SELECT level, count(DISTINCT process_id) AS p, min(target) AS lo, max(process_id), count(*) FROM log_entries"
    " GROUP BY level",
    "SELECT exe, count(*) FROM log_entries GROUP BY exe",
    "SELECT exe, count(DISTINCT process_id) FROM log_entries GROUP BY exe",
    "SELECT computer, username, count(*), min(exe) FROM log_entries WHERE exe <> 'x' GROUP BY 1, 2",
    "SELECT level, count(*), min(time) FROM log_entries GROUP BY level",
    "SELECT target, count(*) AS n, min(time) AS lo, max(time) AS hi FROM log_entries GROUP BY target",
    f"SELECT exe, max(time) AS hi FROM log_entries WHERE level <= 4 AND time < '{_iso(BASE_NS + 4 * MINUTE)}'"
    " GROUP BY exe ORDER BY hi DESC LIMIT 2",
    "SELECT min(time), max(time) FROM log_entries WHERE level > 100",
]
"""Shapes ``log_stats`` answers exactly (besides the query set's own)."""

NOT_REWRITTEN = [
    f"SELECT count(*) FROM log_entries WHERE time >= '{_iso(BASE_NS + MINUTE + 30_000_000_000)}'",
    f"SELECT count(*) FROM log_entries WHERE time <= '{_iso(BASE_NS + 2 * MINUTE)}'",
    "SELECT stream_id, count(*) FROM log_entries GROUP BY stream_id",
    "SELECT level, count(*) FROM log_entries WHERE msg LIKE '%a%' GROUP BY level",
    "SELECT level, count(DISTINCT process_id) FILTER (WHERE msg <> '') FROM log_entries GROUP BY level",
    "SELECT level, count(process_id) FILTER (WHERE target = 'x') FROM log_entries GROUP BY level",
    "SELECT level, sum(level) FROM log_entries GROUP BY level",
    "SELECT level, min(time) FILTER (WHERE level > 2) FROM log_entries GROUP BY level",
    "SELECT level, min(time + INTERVAL '1 second') FROM log_entries GROUP BY level",
    "SELECT date_bin(INTERVAL '30 seconds', time), count(*) FROM log_entries GROUP BY 1",
    "SELECT level, count(*) FROM (SELECT * FROM log_entries WHERE level < 3) AS log_entries GROUP BY level",
    "SELECT level, count(*) FROM log_entries WHERE time = time GROUP BY level",
]
"""Shapes it does not answer exactly: planned over ``log_entries``."""


def _counting_queries() -> list[str]:
    params = _parameters()
    names = {q.name for q in query_set.PREAGGREGATED}
    return [query_set.render(q, "sirius", params) for q in query_set.QUERIES if q.name in names]


def _parameters() -> Any:
    return query_set.QueryParameters(
        window_begin=_iso(BASE_NS + 2 * MINUTE), window_end=_iso(BASE_NS + 5 * MINUTE), trace_id="00", route="/"
    )


async def _answers(
    factory: SessionFactory,
    sql: str,
    query_range: TimeRange | None = None,
    counter: str = "log_stats_rewrites",
) -> tuple[pa.Table, int, str]:
    """The answer, the session's rewrite count ``counter`` and the logical plan of ``sql``."""
    session = await factory.create(query_range)
    df = await session.sql(sql)
    return df.to_arrow_table(), getattr(session, counter), str(df.logical_plan())


def _same(a: pa.Table, b: pa.Table, ordered: bool) -> bool:
    return query_set.compare_tables(a, b, ordered=ordered) == []


def test_counting_questions_are_answered_from_log_stats(local_lake_env: LakeEnv) -> None:
    async def scenario(h: Harness) -> dict[str, Any]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        on, off = SessionFactory(h.lake), SessionFactory(h.lake, SessionSettings(log_stats_rewrite=False))
        out: dict[str, Any] = {}
        for sql in [*_counting_queries(), *REWRITTEN, *NOT_REWRITTEN]:
            ours, rewrites, plan = await _answers(on, sql)
            plain, none, _ = await _answers(off, sql)
            out[sql] = (ours, plain, rewrites, none, plan)
        aligned = TimeRange(BASE_NS + MINUTE, BASE_NS + 4 * MINUTE - 1)
        cut = TimeRange(BASE_NS + MINUTE, BASE_NS + 4 * MINUTE)
        for label, query_range in (("aligned", aligned), ("cut", cut)):
            sql = "SELECT level, count(*) AS n FROM log_entries GROUP BY level"
            ours, rewrites, _ = await _answers(on, sql, query_range)
            plain, _, _ = await _answers(off, sql, query_range)
            out[label] = (ours, plain, rewrites)
        return out

    out = local_lake_env(scenario)
    for sql in [*_counting_queries(), *REWRITTEN]:
        ours, plain, rewrites, none, plan = out[sql]
        assert (rewrites, none) == (1, 0), sql
        assert "log_stats" in plan, sql
        assert plain.num_rows > 0, sql
        assert ours.column_names == plain.column_names, sql
        assert _same(ours, plain, ordered="LIMIT" in sql), (sql, ours, plain)
    for sql in NOT_REWRITTEN:
        ours, plain, rewrites, _, plan = out[sql]
        assert rewrites == 0, sql
        assert "log_stats" not in plan, sql
        assert _same(ours, plain, ordered=False), sql
    ours, plain, rewrites = out["aligned"]
    assert rewrites == 1
    assert plain.num_rows > 0
    assert _same(ours, plain, ordered=False)
    ours, plain, rewrites = out["cut"]
    assert rewrites == 0
    assert _same(ours, plain, ordered=False)


def _query_named(name: str) -> str:
    (query,) = [q for q in query_set.QUERIES if q.name == name]
    return query.sql


# Each pre-aggregate with a statement it answers and the session counter of its rewrites.
_PRE_AGGREGATES = {
    "log_stats": ("SELECT level, count(*) AS n FROM log_entries GROUP BY level", "log_stats_rewrites"),
    "measure_stats": (_query_named("measure stats by name+exe"), "measure_stats_rewrites"),
    "span_stats": (_query_named("error spans by service"), "span_stats_rewrites"),
}


@pytest.mark.parametrize("view", sorted(_PRE_AGGREGATES))
def test_stale_or_missing_pre_aggregate_is_not_used(local_lake_env: LakeEnv, view: str) -> None:
    sql, counter = _PRE_AGGREGATES[view]

    async def scenario(h: Harness) -> dict[str, Any]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        factory = SessionFactory(h.lake)
        out: dict[str, Any] = {"fresh": await _answers(factory, sql, counter=counter)}
        # A partition of the pre-aggregate that counted another number of source rows than stored now.
        await h.lake.pool.execute(
            "UPDATE lakehouse_partitions SET source_data_hash = $1 WHERE view_set_name = $2"
            " AND begin_insert_time = (SELECT min(begin_insert_time) FROM lakehouse_partitions"
            " WHERE view_set_name = $2)",
            (2).to_bytes(8, "little", signed=True),
            view,
        )
        out["stale"] = await _answers(factory, sql, counter=counter)
        # A source partition no partition of the pre-aggregate covers.
        await h.lake.pool.execute(
            "DELETE FROM lakehouse_partitions WHERE view_set_name = $1"
            " AND begin_insert_time = (SELECT max(begin_insert_time) FROM lakehouse_partitions"
            " WHERE view_set_name = $1)",
            view,
        )
        out["missing"] = await _answers(factory, sql, counter=counter)
        return out

    out = local_lake_env(scenario)
    truth, rewrites, _ = out["fresh"]
    assert rewrites == 1
    for label in ("stale", "missing"):
        ours, rewrites, plan = out[label]
        assert rewrites == 0, label
        assert view not in plan, label
        assert _same(ours, truth, ordered=False), label


def test_minute_aligned_range() -> None:
    assert minute_aligned_range(None)
    assert minute_aligned_range(TimeRange(0, 2**62))
    assert minute_aligned_range(TimeRange(MINUTE, 3 * MINUTE - 1))
    assert not minute_aligned_range(TimeRange(MINUTE + 1, 3 * MINUTE - 1))
    assert not minute_aligned_range(TimeRange(MINUTE, 3 * MINUTE))


# ---------------------------------------------------------------------------------------------
# property: the rewrite never changes an answer, and happens exactly when the bounds are whole minutes

_DICT = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("ns", tz="UTC")


_EXE = {"p1": "svc-a", "p2": "svc-b", "p3": "svc-a"}


def _processes(missing: bool) -> pa.Table:
    """The ``processes`` rows (plain strings, as the view has them); ``missing``: p3's row not there."""
    ids = [p for p in _EXE if not (missing and p == "p3")]
    return pa.table({"process_id": ids, "exe": [_EXE[p] for p in ids], "username": ["u"] * len(ids), "computer": ids})


def _tables(seed: int, rows: int) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    times = BASE_NS + rng.integers(0, 6 * MINUTE, rows)
    processes = rng.choice(list(_EXE), rows)
    entries = pa.table(
        {
            "process_id": pa.array(processes).cast(_DICT),
            "exe": pa.array([_EXE[p] for p in processes], pa.string()).cast(_DICT),
            "username": pa.array(["u"] * rows, pa.string()).cast(_DICT),
            "computer": pa.array(processes).cast(_DICT),
            "time": pa.array(times, _TS),
            "target": pa.array(rng.choice(["a", "b"], rows)).cast(_DICT),
            "level": pa.array(rng.integers(1, 7, rows), pa.int32()),
            "msg": pa.array(["m"] * rows),
        }
    )
    keyed = pa.table(
        {
            "time_bin": pa.array(times - times % MINUTE, _TS),
            "process_id": entries["process_id"],
            "level": entries["level"],
            "target": entries["target"],
        }
    )
    stats = keyed.group_by(["time_bin", "process_id", "level", "target"]).aggregate([([], "count_all")])
    stats = stats.rename_columns(["time_bin", "process_id", "level", "target", "count"])
    return entries, stats


_BOUND = st.tuples(
    st.sampled_from([">=", ">", "<", "<="]),
    st.integers(0, 7),
    st.sampled_from([0, -1, 1, 30_000_000_000]),
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(0, 300),
    bounds=st.lists(_BOUND, max_size=3),
    level=st.one_of(st.none(), st.integers(1, 6)),
    group=st.sampled_from(
        ["level", "process_id, target", "date_bin(INTERVAL '1 minute', time)", "", "exe", "computer, level"]
    ),
    aggregates=st.lists(
        st.sampled_from(
            [
                "count(*)",
                "count(DISTINCT process_id)",
                "min(target)",
                "max(level)",
                "max(exe)",
                "min(time)",
                "max(time)",
            ]
        ),
        min_size=1,
        max_size=3,
    ),
    missing_process=st.booleans(),
)
def test_rewrite_never_changes_the_answer(
    *,
    seed: int,
    rows: int,
    bounds: list[tuple[str, int, int]],
    level: int | None,
    group: str,
    aggregates: list[str],
    missing_process: bool,
) -> None:
    entries, stats = _tables(seed, rows)
    ctx = new_session_context()
    ctx.register_view("log_entries", ctx.from_arrow(entries))
    ctx.register_view("log_stats", ctx.from_arrow(stats))
    ctx.register_view("processes", ctx.from_arrow(_processes(missing_process)))

    async def covered() -> bool:
        return True

    conditions = [f"time {op} '{_iso(BASE_NS + minute * MINUTE + shift)}'" for op, minute, shift in bounds]
    if level is not None:
        conditions.append(f"level <= {level}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    keys = f"{group}, " if group else ""
    selected = ", ".join(f"{a} AS a{i}" for i, a in enumerate(aggregates))
    sql = f"SELECT {keys}{selected} FROM log_entries{where}" + (f" GROUP BY {group}" if group else "")
    rewriter = LogStatsRewriter(ctx, None, covered)
    df = ctx.sql(sql)
    rewritten = asyncio.run(rewriter.rewrite(df))

    def exact(op: str, shift: int) -> bool:
        return shift == 0 if op in (">=", "<") else shift == -1

    # The process's columns come from processes: a process of log_stats without a row there
    # (p3, when it has rows) keeps the statement as written.
    uses_process = "exe" in sql or "computer" in sql
    p3_seen = "p3" in stats.column("process_id").cast(pa.string()).to_pylist()
    processes_ok = not (uses_process and missing_process and p3_seen)
    assert rewriter.rewrites == int(processes_ok and all(exact(op, shift) for op, _, shift in bounds))
    assert _same(rewritten.to_arrow_table(), df.to_arrow_table(), ordered=False), sql


def test_log_entries_registered_again_stops_the_rewrite() -> None:
    """Rows registered beyond the partitions (a second registration) were not counted by log_stats."""
    entries, stats = _tables(7, 50)
    ctx = new_session_context()
    ctx.register_view("log_entries", ctx.from_arrow(entries))
    ctx.register_view("log_stats", ctx.from_arrow(stats))

    async def covered() -> bool:
        return True

    rewriter = LogStatsRewriter(ctx, None, covered)
    rewriter.source_changed()  # the session's own registration
    sql = "SELECT level, count(*) FROM log_entries GROUP BY level"
    asyncio.run(rewriter.rewrite(ctx.sql(sql)))
    assert rewriter.rewrites == 1
    rewriter.source_changed()
    asyncio.run(rewriter.rewrite(ctx.sql(sql)))
    assert rewriter.rewrites == 1
