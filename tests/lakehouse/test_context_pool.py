"""Pooled DataFusion contexts: a session's tables, functions, settings and audience never reach the next.

Real PostgreSQL, real partitions materialised by the daemon, real sessions of ``SessionFactory``
whose contexts are reused (``SessionSettings.pooled_contexts``, ``_context_pool.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pyarrow as pa
import pytest

from sirius.lakehouse import (
    MaintenanceDaemon,
    PassKind,
    QueryRange,
    ReadScope,
    SessionFactory,
    SessionSettings,
    audience_of_session,
    list_partitions,
)
from sirius.tracing import ProcessInfo

from .conftest import FREQ, START_TICKS, T0_NS

PROCESSES_SQL = "SELECT DISTINCT process_id FROM log_entries ORDER BY process_id"
PUSHDOWN_SQL = (
    "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.parquet.pushdown_filters'"
)


def ts(seconds: float) -> int:
    """Unix ns of the harness's T0 + ``seconds``."""
    return T0_NS + round(seconds * 1e9)


async def _materialise(h: Any, second: float) -> None:
    report = await MaintenanceDaemon(h.lake).run_pass(PassKind.SECOND, ts(second + 2.5))
    assert not report.failures


async def _sample_of(h: Any, audience: str, *, at_second: float = 10.25) -> str:
    """A sample process (logs, measures, spans) stamped with ``audience`` by the server."""
    process_id = uuid.uuid4()
    info = ProcessInfo(
        process_id=process_id,
        exe="/usr/bin/app",
        username="alice",
        realname="Alice",
        computer="host-1",
        distro="Debian 12",
        cpu_brand="EPYC",
        tsc_frequency=FREQ,
        start_time_ns=T0_NS,
        start_ticks=START_TICKS,
        properties={"env": "test"},
    )
    assert await h.datalake.insert_process(info, audience)  # the sample's own registration is then ignored
    await h.sample(at_second=at_second, process_id=process_id)
    return str(process_id)


async def _ids(session: Any, sql: str = PROCESSES_SQL) -> list[str]:
    return [r["process_id"] for r in (await session.sql(sql)).to_arrow_table().to_pylist()]


def _tables(ctx: Any) -> set[str]:
    return {t for c in ctx.catalog_names() for s in ctx.catalog(c).names() for t in ctx.catalog(c).schema(s).names()}


def _admin_context() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return {"is_admin": True, "run_async": lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result()}


def test_a_reused_context_shows_nothing_of_the_previous_session(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        a = await _sample_of(h, "team-a")
        b = await _sample_of(h, "team-b")
        await _materialise(h, 10)
        factory = SessionFactory(h.lake, SessionSettings(pooled_contexts=1))
        team_a = ReadScope(frozenset({"team-a"}))

        # A restricted, ranged session with an extra table and the admin functions.
        first = await factory.create(QueryRange(ts(0), ts(20)), scope=team_a, **_admin_context())
        first.ctx.register_record_batches("scratch", [[pa.record_batch({"x": [1]})]])
        assert await _ids(first) == [a]
        assert "retire_partition_by_file" in first.ctx.udfs()
        ctx = first.ctx
        first.close()
        with pytest.raises(RuntimeError, match="closed"):
            await first.sql(PROCESSES_SQL)  # its context is about to serve another session

        # The next session, on the same context: unrestricted, no range, no admin rights.
        second = await factory.create(is_admin=False)
        assert second.ctx is ctx
        assert factory.context_counters.reused == 1
        assert audience_of_session(ctx) is None
        assert "scratch" not in _tables(ctx)
        assert "retire_partition_by_file" not in ctx.udfs()
        assert sorted(await _ids(second)) == sorted([a, b])
        with pytest.raises(Exception, match="scratch"):
            await second.sql("SELECT * FROM scratch")
        second.close()

        # And back: a restricted session after an unrestricted one sees only its audience, and
        # a range excluding every event shows nothing.
        third = await factory.create(QueryRange(ts(-100), ts(-90)), scope=ReadScope(frozenset({"team-b"})))
        assert third.ctx is ctx
        assert await _ids(third) == []
        third.close()
        fourth = await factory.create(scope=ReadScope(frozenset({"team-b"})))
        assert await _ids(fourth) == [b]
        assert await _ids(fourth, "SELECT DISTINCT process_id FROM measures") == [b]
        fourth.close()
        assert factory.context_counters.created == 1

    local_lake_env(scenario)


def test_a_lookup_by_id_leaves_no_pushdown_setting_behind(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await _sample_of(h, "team-a")
        await _materialise(h, 10)
        factory = SessionFactory(h.lake, SessionSettings(pooled_contexts=1))
        async with await factory.create() as first:
            # plan_sql switches Parquet pushdown on for a statement comparing span_id with a literal.
            await first.sql("SELECT * FROM otel_spans WHERE span_id = '0000000000000001'")
            assert first.ctx.sql(PUSHDOWN_SQL).to_pylist() == [{"value": "true"}]  # as the statement left it
        async with await factory.create() as second:
            assert second.ctx is first.ctx
            assert second.ctx.sql(PUSHDOWN_SQL).to_pylist() == [{"value": "false"}]

    local_lake_env(scenario)


def test_a_failed_session_drops_its_context_and_a_clean_close_keeps_it(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        a = await _sample_of(h, "team-a")
        await _materialise(h, 10)
        factory = SessionFactory(h.lake, SessionSettings(pooled_contexts=2))
        with pytest.raises(Exception, match="no_such_column"):
            async with await factory.create() as failing:
                await failing.sql("SELECT no_such_column FROM log_entries")
        assert factory.context_counters.discarded == 1
        # A failed statement closed without discarding: the cleaning decides, and the context is clean.
        session = await factory.create()
        with pytest.raises(Exception, match="no_such_table"):
            await session.sql("SELECT * FROM no_such_table")
        session.close()
        assert (factory.context_counters.created, factory.context_counters.returned) == (2, 1)
        async with await factory.create() as after:
            assert after.ctx is session.ctx
            assert await _ids(after) == [a]

    local_lake_env(scenario)


def test_concurrent_sessions_get_distinct_contexts_and_the_pool_is_bounded(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        a = await _sample_of(h, "team-a")
        b = await _sample_of(h, "team-b")
        await _materialise(h, 10)
        factory = SessionFactory(h.lake, SessionSettings(pooled_contexts=2))

        async def one(scope: ReadScope | None) -> list[str]:
            async with await factory.create(scope=scope) as session:
                return await _ids(session)

        scopes = [None, ReadScope(frozenset({"team-a"})), ReadScope(frozenset({"team-b"}))] * 3
        for _ in range(2):
            assert await asyncio.gather(*(one(s) for s in scopes)) == [sorted([a, b]), [a], [b]] * 3
        open_sessions = [await factory.create() for _ in range(4)]
        assert len({id(s.ctx) for s in open_sessions}) == 4
        for session in open_sessions:
            session.close()
        counters = factory.context_counters
        assert counters.returned - counters.reused <= 2  # never more idle than the bound
        # A memory-bounded session never gets an unbounded context (the bound is its runtime's pool).
        created = counters.created
        bounded = await factory.create(memory_limit_bytes=64 * 1024)
        assert factory.context_counters.created == created + 1
        bounded.ctx.register_record_batches("big", [pa.table({"k": [str(i) for i in range(200_000)]}).to_batches()])
        with pytest.raises(Exception, match="Resources exhausted"):
            (await bounded.sql("SELECT k, count(*) FROM big GROUP BY k")).to_arrow_table()
        bounded.close(discard=True)

    local_lake_env(scenario)


def test_a_rewritten_partition_is_read_fresh_on_a_reused_context(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        a = await _sample_of(h, "team-a", at_second=10.25)
        await _materialise(h, 10)
        factory = SessionFactory(h.lake, SessionSettings(pooled_contexts=1))
        async with await factory.create() as first:
            assert await _ids(first) == [a]
            count_sql = "SELECT count(*) AS n FROM log_entries"
            assert (await first.sql(count_sql)).to_pylist() == [{"n": 5}]
        before = {p.file_path for p in await list_partitions(h.lake.pool, "log_entries", "global")}
        # More blocks inserted in the same second: the daemon rewrites that partition.
        b = await _sample_of(h, "team-b", at_second=10.75)
        await _materialise(h, 10)
        after = {p.file_path for p in await list_partitions(h.lake.pool, "log_entries", "global")}
        assert after
        assert not (after & before)  # a new file name, never the old one overwritten
        async with await factory.create() as second:
            assert second.ctx is first.ctx
            assert sorted(await _ids(second)) == sorted([a, b])
            assert (await second.sql(count_sql)).to_pylist() == [{"n": 10}]

    local_lake_env(scenario)


QUERIES = [
    "SELECT level, count(*) AS n FROM log_entries GROUP BY level ORDER BY level",
    "SELECT name, avg(value) AS v, max(value) AS m FROM measures GROUP BY name ORDER BY name",
    "SELECT p.exe, m.name, count(*) AS n FROM measures m JOIN processes p USING (process_id) GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT exe, count(DISTINCT process_id) AS n FROM processes GROUP BY exe",
    "SELECT msg FROM log_entries WHERE msg LIKE '%dyn%' ORDER BY time",
    "SELECT count(*) AS n FROM blocks",
]


def test_results_on_reused_contexts_equal_a_fresh_contexts(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await _sample_of(h, "team-a")
        await _sample_of(h, "team-b", at_second=10.5)
        await _materialise(h, 10)
        pooled = SessionFactory(h.lake, SessionSettings(pooled_contexts=1))
        fresh = SessionFactory(h.lake, SessionSettings(pooled_contexts=0))
        for sql in QUERIES * 3:
            async with await fresh.create() as reference, await pooled.create() as session:
                ours, theirs = (await session.sql(sql)).to_arrow_table(), (await reference.sql(sql)).to_arrow_table()
                assert ours.schema == theirs.schema, (ours.schema, theirs.schema)
                assert ours.to_pylist() == theirs.to_pylist(), (ours, theirs)
        assert pooled.context_counters.created == 1
        assert fresh.context_counters.reused == 0

    local_lake_env(scenario)


def _pool() -> Any:
    import functools

    from sirius.lakehouse._context_pool import ContextPool
    from sirius.lakehouse._session_settings import prepared_context

    return ContextPool(functools.partial(prepared_context, SessionSettings()), max_idle=2)


def _scalar(ctx: Any, sql: str) -> Any:
    return ctx.sql(sql).to_arrow_table().column(0).to_pylist()[0]


@pytest.mark.parametrize("name", ["jsonb_parse", "abs"])
def test_a_function_registered_over_a_prepared_one_drops_the_context(name: str) -> None:
    """A session's function under the name of a prepared one (Sirius's or DataFusion's) never serves the next session.

    The names are then those of the prepared set, so the cleaning must know what was registered.
    """
    from datafusion import udf

    pool = _pool()
    ctx = pool.acquire(None)
    sql_type = "VARCHAR" if name == "jsonb_parse" else "DOUBLE"
    sql = f"SELECT {name}(CAST(NULL AS {sql_type}))"
    expected = _scalar(ctx, sql)

    def principal_bound(values: pa.Array) -> pa.Array:
        return pa.array(["secret of session A"] * len(values), pa.utf8())

    in_type = pa.utf8() if name == "jsonb_parse" else pa.float64()
    ctx.register_udf(udf(principal_bound, [in_type], pa.utf8(), "volatile", name))
    assert _scalar(ctx, sql) == "secret of session A"
    assert pool.release(ctx, None) is False
    reused = pool.acquire(None)
    assert reused is not ctx
    assert _scalar(reused, sql) == expected


def test_a_context_given_back_twice_is_lent_once() -> None:
    pool = _pool()
    ctx = pool.acquire(None)
    assert pool.release(ctx, None) is True
    assert pool.release(ctx, None) is False  # already idle: a second close must not list it twice
    assert pool.idle == 1
    assert pool.acquire(None) is not pool.acquire(None)
