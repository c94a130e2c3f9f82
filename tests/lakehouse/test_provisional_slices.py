"""Provisional slices: the second pass shows fresh rows early and keeps the guarded second.

Time is a fake clock: passes are run at chosen instants; nothing sleeps or measures time.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest

from sirius.lakehouse import DaemonConfig, Lakehouse, MaintenanceDaemon, PassKind, SessionFactory, list_partitions

from .daemon_clock import PROVISIONAL, S, at, log_count


async def log_rows(lake: Lakehouse) -> list[tuple[Any, ...]]:
    session = await SessionFactory(lake).create()
    sql = "SELECT block_id, time, msg FROM log_entries ORDER BY block_id, time, msg"
    return [tuple(r.values()) for r in (await session.sql(sql)).to_arrow_table().to_pylist()]


async def log_ranges(lake: Lakehouse, t0_ns: int) -> list[tuple[float, float]]:
    parts = await list_partitions(lake.pool, "log_entries", "global")
    return sorted(((p.begin_insert_ns - t0_ns) / S, (p.end_insert_ns - t0_ns) / S) for p in parts)


async def assert_sound(lake: Lakehouse) -> None:
    """No two partitions of an instance overlap, and none was written before its range ended."""
    by_instance = defaultdict(list)
    for p in await list_partitions(lake.pool):
        assert p.updated_ns >= p.end_insert_ns, p
        by_instance[(p.view_set_name, p.view_instance_id)].append(p.insert_range)
    for key, ranges in by_instance.items():
        ranges.sort()
        for a, b in itertools.pairwise(ranges):
            assert not a.overlaps(b), (key, a, b)


async def pass_at(lake: Lakehouse, clock: Any, seconds: float, config: DaemonConfig = PROVISIONAL) -> None:
    clock.set(at(seconds))
    report = await MaintenanceDaemon(lake, config).run_pass(PassKind.SECOND, at(seconds))
    assert not report.failures, report.failures


def test_fresh_rows_show_before_the_guarded_second_and_late_rows_join(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        first = await h.sample(at_second=10.25)  # 5 log events inserted at 10.25
        await pass_at(lake, h.clock, 10.375)  # T = 10.25: [8, 9) guarded, [9, 10) and [10, 10.25) provisional
        assert await log_count(lake) == 0  # the block's insert time is not before T
        await pass_at(lake, h.clock, 10.625)  # T = 10.5
        assert await log_count(lake) == 5  # a reference pass shows them at 12.5
        assert (await log_ranges(lake, h.T0_NS))[-1] == (10.0, 10.5)
        # A row whose insert_time (10.4) lies in the provisional slice commits after it was built.
        h.clock.set(at(10.4))
        first.log.log_static_interop(3, "late", "late message", ticks=h.ticks(9_000_000))
        await h.seal(first.log)
        await pass_at(lake, h.clock, 10.875)  # T = 10.75: [10, 10.75) rebuilt with it
        assert await log_count(lake) == 6
        assert (await log_ranges(lake, h.T0_NS))[-1] == (10.0, 10.75)
        written = lake.stats.partitions_written
        await pass_at(lake, h.clock, 10.875)  # again: nothing new, nothing written
        assert lake.stats.partitions_written == written
        # At T = 11 the whole second is checked: no row arrived in [10.75, 11), so its partition
        # stays as it is (up to date); later passes only check it, up to its guarded pass.
        await pass_at(lake, h.clock, 11.125)
        assert [r for r in await log_ranges(lake, h.T0_NS) if r[0] == 10.0] == [(10.0, 10.75)]
        h.clock.set(at(10.9))  # a row inserted in that gap, committed late, joins at the next pass
        first.log.log_static_interop(3, "later", "later message", ticks=h.ticks(9_500_000))
        await h.seal(first.log)
        await pass_at(lake, h.clock, 11.375)
        assert await log_count(lake) == 7
        written = lake.stats.partitions_written
        for seconds in (11.625, 11.875, 12.125, 12.375, 12.625):
            await pass_at(lake, h.clock, seconds)
        assert lake.stats.partitions_written > written  # the new current seconds (empty partitions)
        assert [r for r in await log_ranges(lake, h.T0_NS) if r[0] == 10.0] == [(10.0, 11.0)]
        assert await log_count(lake) == 7
        await assert_sound(lake)

    local_lake_env(scenario)


def test_provisional_slices_never_reach_past_the_clock(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        await h.sample(at_second=10.25)
        h.clock.set(at(10.3))  # the pass is run ahead of the clock: its slices stop at 10.3
        report = await MaintenanceDaemon(lake, PROVISIONAL).run_pass(PassKind.SECOND, at(11.625))
        assert report.insert_range.end == at(10.3)
        assert (await log_ranges(lake, h.T0_NS))[-1] == (10.0, 10.3)
        assert await log_count(lake) == 5
        await assert_sound(lake)

    local_lake_env(scenario)


def test_the_minute_pass_merges_provisional_seconds_into_the_same_rows(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        sample = await h.sample(at_second=10.25)
        h.clock.set(at(10.7))
        sample.log.log_string_interop(5, "t", "second block", ticks=h.ticks(6_000_000))
        await h.seal(sample.log)
        quarter = 2.125  # the first pass's guarded second is [0, 1)
        while quarter < 14:
            await pass_at(lake, h.clock, quarter)
            quarter += 0.25
        provisional = await log_rows(lake)
        assert len(provisional) == 6
        h.clock.set(at(150))
        report = await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, at(150))
        assert not report.failures
        assert await log_ranges(lake, h.T0_NS) == [(0.0, 60.0)]
        assert await log_rows(lake) == provisional
        await assert_sound(lake)

    local_lake_env(scenario)


def test_schedule_runs_at_half_a_period_past_the_grid(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        daemon = MaintenanceDaemon(h.lake, DaemonConfig(passes=frozenset({PassKind.SECOND}), **_provisional_fields()))
        assert await daemon.run_due(at(0)) == []
        reports = await daemon.run_due(at(0.13))
        assert [r.scheduled for r in reports] == [at(0.125)]
        assert (reports[0].insert_range.begin, reports[0].insert_range.end) == (at(-2), at(0))
        h.clock.set(at(0.4))  # provisional slices stop at the clock's present
        reports = await daemon.run_due(at(0.4))
        assert [r.scheduled for r in reports] == [at(0.375)]
        assert reports[0].insert_range.end == at(0.25)

    local_lake_env(scenario)


def _provisional_fields() -> dict[str, Any]:
    return {"second_pass_period_ns": PROVISIONAL.second_pass_period_ns, "provisional_slices": True}


@pytest.mark.parametrize("period", [0, 30_000_000, 300_000_000, 2_000_000_000])
def test_period_must_divide_a_second(period: int) -> None:
    with pytest.raises(ValueError, match="second_pass_period_ns"):
        DaemonConfig(second_pass_period_ns=period)
