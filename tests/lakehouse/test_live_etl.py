"""Live ETL: idempotent passes, merges, late blocks, racing daemons, crashes, the scheduler.

Time is a fake clock and the daemon's sleep is injected: nothing here sleeps or measures time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import defaultdict
from typing import Any

import pytest
from held_view import HeldLogEntries

from sirius.lakehouse import (
    DaemonConfig,
    Lakehouse,
    MaintenanceDaemon,
    PassKind,
    SessionFactory,
    create_pool,
    delete_expired_temporary_files,
    list_partitions,
)
from sirius.lakehouse.views import LogEntriesView, default_view_sets

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


async def second_pass(lake: Lakehouse, second: int) -> None:
    report = await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, at(second + 2.5))
    assert not report.failures, report.failures


async def counts(lake: Lakehouse) -> dict[str, int]:
    session = await SessionFactory(lake).create()
    result = {}
    for view in ("log_entries", "measures", "blocks", "processes", "streams", "log_stats"):
        table = (await session.sql(f"SELECT count(*) AS n FROM {view}")).to_arrow_table()
        result[view] = table.column("n").to_pylist()[0]
    return result


async def all_rows(lake: Lakehouse, view: str, order: str) -> list[dict[str, Any]]:
    session = await SessionFactory(lake).create()
    return (await session.sql(f"SELECT * FROM {view} ORDER BY {order}")).to_arrow_table().to_pylist()


async def assert_no_overlaps(lake: Lakehouse) -> None:
    by_instance = defaultdict(list)
    for p in await list_partitions(lake.pool):
        by_instance[(p.view_set_name, p.view_instance_id, p.file_schema_hash)].append(p.insert_range)
    for key, ranges in by_instance.items():
        ranges.sort()
        for a, b in itertools.pairwise(ranges):
            assert not a.overlaps(b), (key, a, b)


def partition_keys(partitions: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (p.view_set_name, p.view_instance_id, p.begin_insert_ns, p.end_insert_ns, p.file_path) for p in partitions
    )


def test_passes_are_idempotent_and_merge_seconds_into_minutes(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        await h.sample(at_second=11.5)
        lake = h.lake
        for second in range(8, 13):
            await second_pass(lake, second)
        expected = {"log_entries": 10, "measures": 6, "blocks": 6, "processes": 2, "streams": 6, "log_stats": 8}
        assert await counts(lake) == expected
        before = await list_partitions(lake.pool)
        assert len([p for p in before if p.view_set_name == "log_entries"]) == 5  # empty seconds recorded too
        assert len([p for p in before if p.file_path is None]) > 0
        logs_before = await all_rows(lake, "log_entries", "time, block_id")

        written = lake.stats.partitions_written
        for second in range(8, 13):  # re-running changes nothing
            await second_pass(lake, second)
        assert lake.stats.partitions_written == written
        assert partition_keys(await list_partitions(lake.pool)) == partition_keys(before)

        report = await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, at(150))  # [0 s, 60 s)
        assert not report.failures
        assert lake.stats.partitions_merged == 10  # ten global views (otel_spans, histograms, the stats included)
        after = await list_partitions(lake.pool)
        assert {(p.view_set_name, p.begin_insert_ns, p.end_insert_ns) for p in after} == {
            (v, h.T0_NS, h.T0_NS + 60_000_000_000)
            for v in (*expected, "otel_spans", "histograms", "measure_stats", "span_stats")
        }
        assert await counts(lake) == expected
        assert await all_rows(lake, "log_entries", "time, block_id") == logs_before
        # Hour and day passes: empty partitions for the quiet hours, blocks/processes/streams/
        # log_stats merged into day partitions; running them again changes nothing. The clock is
        # where it stands when the day pass runs: partitions written before their range ends are
        # rebuilt by the next pass reaching them (test_future_partitions.py).
        h.clock.set(at(86_400 + 4 * 3600))
        for _ in range(2):
            await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, at(150))
            await MaintenanceDaemon(lake).run_pass(PassKind.HOUR, at(3600 + 600))
            await MaintenanceDaemon(lake).run_pass(PassKind.DAY, at(86_400 + 4 * 3600))
            if _ == 0:
                written = lake.stats.partitions_written
                final = partition_keys(await list_partitions(lake.pool))
        assert lake.stats.partitions_written == written
        assert partition_keys(await list_partitions(lake.pool)) == final
        day = [p for p in await list_partitions(lake.pool) if p.view_set_name == "blocks" and p.num_rows]
        assert [(p.end_insert_ns - p.begin_insert_ns) for p in day] == [86_400_000_000_000]
        assert await counts(lake) == expected
        assert await all_rows(lake, "log_entries", "time, block_id") == logs_before
        await assert_no_overlaps(lake)

    local_lake_env(scenario)


def test_late_blocks_appear_after_the_next_pass_and_in_jit(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        first = await h.sample(at_second=10.25)
        lake = h.lake
        await second_pass(lake, 10)
        jit_sql = f"SELECT count(*) AS n FROM view_instance('log_entries', '{first.process_id}')"
        session = await SessionFactory(lake).create()
        assert (await session.sql(jit_sql)).to_arrow_table().column("n").to_pylist() == [5]
        # A block whose row commits late: its insert_time lies in the already materialised second.
        first.log.log_static_interop(3, "late", "late message", ticks=h.ticks(9_000_000))
        h.clock.set(at(10.9))
        await h.seal(first.log)
        assert (await counts(lake))["log_entries"] == 5
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, at(150))
        assert (await counts(lake))["log_entries"] == 6
        assert (await counts(lake))["blocks"] == 4
        session = await SessionFactory(lake).create()
        assert (await session.sql(jit_sql)).to_arrow_table().column("n").to_pylist() == [6]
        await assert_no_overlaps(lake)

    local_lake_env(scenario)


def test_two_daemons_racing_write_each_partition_once(lake_env: Any, pg_dsn: str) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        await h.sample(at_second=10.75)
        other_pool = await create_pool(pg_dsn, max_size=8)
        try:
            twin = Lakehouse(other_pool, h.lake.store, clock=h.clock)
            one, two = MaintenanceDaemon(h.lake), MaintenanceDaemon(twin)
            for second in (9, 10, 11):
                await asyncio.gather(
                    one.run_pass(PassKind.SECOND, at(second + 2.5)), two.run_pass(PassKind.SECOND, at(second + 2.5))
                )
            await asyncio.gather(one.run_pass(PassKind.MINUTE, at(150)), two.run_pass(PassKind.MINUTE, at(150)))
            written = h.lake.stats.partitions_written + twin.stats.partitions_written
            assert written == 3 * 10 + 10  # every partition written by exactly one of them
        finally:
            await other_pool.close()
        await assert_no_overlaps(h.lake)
        assert await counts(h.lake) == {
            "log_entries": 10, "measures": 6, "blocks": 6, "processes": 2, "streams": 6, "log_stats": 8,
        }  # fmt: skip
        live = {p.file_path for p in await list_partitions(h.lake.pool) if p.file_path}
        pending = {r[0] for r in await h.lake.pool.fetch("SELECT file_path FROM temporary_files")}
        assert set(await h.store.list_keys("views/")) == live | pending

    lake_env(scenario)


def test_crash_between_file_write_and_row_commit_leaves_nothing_visible(
    local_lake_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sirius.lakehouse._partition_update as update_module

    real_insert = update_module.insert_partition

    async def crash(*_args: Any) -> None:
        raise RuntimeError("killed between the upload and the commit")

    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        lake = h.lake
        monkeypatch.setattr(update_module, "insert_partition", crash)
        with pytest.raises(RuntimeError, match="killed"):
            await update_module.update_partition(lake, lake.views.get("log_entries"), "global", _range(h, 10, 11))
        assert await list_partitions(lake.pool) == []
        orphans = await lake.store.list_keys("views/")
        assert len(orphans) == 1
        registered = await lake.pool.fetch("SELECT file_path, expiration FROM temporary_files")
        assert [r[0] for r in registered] == orphans
        assert (await counts(lake))["log_entries"] == 0

        monkeypatch.setattr(update_module, "insert_partition", real_insert)
        await second_pass(lake, 10)
        assert (await counts(lake))["log_entries"] == 5
        h.clock.set(registered[0][1] + dt.timedelta(seconds=1))
        assert await delete_expired_temporary_files(lake) == 1
        assert orphans[0] not in await lake.store.list_keys("views/")
        assert (await counts(lake))["log_entries"] == 5

    local_lake_env(scenario)


def _range(h: Any, begin_s: int, end_s: int) -> Any:
    from sirius.lakehouse import TimeRange

    return TimeRange(h.T0_NS + begin_s * 1_000_000_000, h.T0_NS + end_s * 1_000_000_000)


def test_a_daemon_killed_mid_pass_recovers_on_restart(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        blocking = HeldLogEntries()
        doomed = Lakehouse(h.lake.pool, h.lake.store, clock=h.clock, views=default_view_sets().with_view(blocking))
        task = asyncio.create_task(MaintenanceDaemon(doomed).run_pass(PassKind.SECOND, at(12.5)))
        await asyncio.wait_for(blocking.entered.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        views = {p.view_set_name for p in await list_partitions(h.lake.pool)}
        # group 1000 committed; group 2000's views run concurrently: log_entries rolled back,
        # the others committed or not depending on how far they got; group 3000 never ran
        assert "blocks" in views
        assert "log_entries" not in views
        assert "log_stats" not in views
        await second_pass(h.lake, 10)  # the restarted daemon
        assert await counts(h.lake) == {
            "log_entries": 5, "measures": 3, "blocks": 3, "processes": 1, "streams": 3, "log_stats": 4,
        }  # fmt: skip
        await assert_no_overlaps(h.lake)

    local_lake_env(scenario)


def test_a_failing_view_is_skipped_and_the_others_proceed(local_lake_env: Any) -> None:
    class Broken(LogEntriesView):
        def transform(self, batch: Any) -> Any:
            raise ValueError("broken view")

    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        lake = Lakehouse(h.lake.pool, h.lake.store, clock=h.clock, views=default_view_sets().with_view(Broken()))
        report = await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, at(12.5))
        assert set(report.failures) == {"log_entries"}
        assert lake.stats.view_failures == 1
        assert {p.view_set_name for p in await list_partitions(lake.pool)} == {
            "blocks", "measures", "processes", "streams", "log_stats", "otel_spans", "histograms", "measure_stats",
            "span_stats",
        }  # fmt: skip

    local_lake_env(scenario)


def test_run_due_follows_the_schedule_and_skips_late_seconds(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        daemon = MaintenanceDaemon(h.lake, DaemonConfig(passes=frozenset({PassKind.SECOND, PassKind.MINUTE})))
        assert await daemon.run_due(at(0.1)) == []
        reports = await daemon.run_due(at(0.6))
        assert [(r.kind, r.scheduled) for r in reports] == [(PassKind.SECOND, at(0.5))]
        assert reports[0].insert_range.begin == at(-2)
        reports = await daemon.run_due(at(31))  # 30 seconds late: skip to the latest second
        assert [(r.kind, r.scheduled) for r in reports] == [(PassKind.SECOND, at(30.5)), (PassKind.MINUTE, at(30))]
        assert reports[1].insert_range.begin == at(-120)
        assert await daemon.run_due(at(31)) == []

    local_lake_env(scenario)


def test_start_and_stop_run_the_passes_on_the_injected_clock(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        h.clock.set(at(11.9))
        limit = at(15)
        parked = asyncio.Event()
        waiting = 0

        async def fake_sleep(seconds: float) -> None:
            nonlocal waiting
            if h.clock() + dt.timedelta(seconds=seconds) > limit:
                waiting += 1
                if waiting == 4:
                    parked.set()
                await asyncio.Event().wait()  # park until stop() cancels us
            h.clock.advance(seconds)
            await asyncio.sleep(0)

        daemon = MaintenanceDaemon(h.lake, sleep=fake_sleep)
        await daemon.start()
        assert daemon.running
        await asyncio.wait_for(parked.wait(), 60)
        await daemon.stop()
        assert not daemon.running
        ranges = {(p.view_set_name, p.begin_insert_ns) for p in await list_partitions(h.lake.pool)}
        # seconds passes at 12.5, 13.5, 14.5 processed seconds 10, 11 and 12
        assert {b for v, b in ranges if v == "blocks"} == {h.T0_NS + s * 1_000_000_000 for s in (10, 11, 12)}
        assert (await counts(h.lake))["log_entries"] == 5

    local_lake_env(scenario)


def test_stop_ends_a_pass_whose_cleanup_raises_while_cancelled(local_lake_env: Any) -> None:
    # A COMMIT cancelled by stop() can make the rollback raise InterfaceError instead of
    # CancelledError; the schedule loop must still end rather than swallow the cancellation.
    async def scenario(h: Any) -> None:
        entered = asyncio.Event()

        async def stuck_pass(kind: PassKind, scheduled: Any, *, catch_up_from_ns: int | None = None) -> Any:
            del kind, scheduled, catch_up_from_ns
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                msg = "cannot rollback; the transaction is in error state"
                raise RuntimeError(msg) from None

        async def no_sleep(seconds: float) -> None:
            h.clock.advance(seconds)
            await asyncio.sleep(0)

        daemon = MaintenanceDaemon(h.lake, DaemonConfig(passes=frozenset({PassKind.SECOND})), sleep=no_sleep)
        daemon.run_pass = stuck_pass  # type: ignore[method-assign]
        await daemon.start()
        await asyncio.wait_for(entered.wait(), 60)
        await asyncio.wait_for(daemon.stop(), 60)
        assert not daemon.running

    local_lake_env(scenario)
