"""No partition reaches into the future, and one that does (an older version wrote it) is healed.

A global partition written before its insert range ended misses every block inserted after it,
and the maintenance passes, whose slices it sticks out of, would skip it. The admin functions
(``materialize_partitions`` / ``regenerate_partitions``) and ``sirius demo`` cut their range at
the lakehouse clock's present and say so; a pass meeting such a partition rebuilds it from its
start to the pass's own end once the pass has reached the time the partition was written.
Real PostgreSQL and a local store; the clock is the harness's fake clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from sirius.lakehouse import (
    LakehousePartitionAdmin,
    MaintenanceDaemon,
    PassKind,
    SessionFactory,
    TimeRange,
    list_partitions,
    materialize_partitions,
)
from sirius.lakehouse._sql_admin import InMemoryPartitionAdmin, ViewSetRecord

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
T0_NS = 1_772_445_600_000_000_000
S = 1_000_000_000


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def ns(seconds: float) -> int:
    return T0_NS + int(seconds * S)


async def log_count(lake: Any) -> int:
    session = await SessionFactory(lake).create()
    return (await session.sql("SELECT count(*) AS n FROM log_entries")).to_arrow_table().column("n").to_pylist()[0]


async def ranges(lake: Any, view: str = "log_entries") -> list[tuple[float, float]]:
    """The view's global partitions as (begin, end) seconds after T0."""
    parts = await list_partitions(lake.pool, view, "global")
    return sorted(((p.begin_insert_ns - T0_NS) / S, (p.end_insert_ns - T0_NS) / S) for p in parts)


def test_admin_functions_cut_the_range_at_the_present(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)  # 5 log entries inserted at T0 + 10.25 s
        h.clock.set(at(30.5))
        admin = LakehousePartitionAdmin(h.lake)
        lines: list[str] = []
        # An hour of 10-minute partitions from T0: all but the present's lie in the future.
        await admin.materialize_partitions("log_entries", ns(0), ns(3600), 600, lines.append)
        assert lines == [
            "log_entries: the range (whole partitions) ends at 2026-03-02T11:00:00.000000Z, after the present "
            "(2026-03-02T10:00:30.500000Z): materialized up to 2026-03-02T10:00:30.000000Z only; "
            "the maintenance passes cover what comes next",
            "log_entries/global [2026-03-02T10:00:00Z, 2026-03-02T10:00:30Z): created with 5 rows",
        ]
        # Cut at the start of the current second: on the second passes' grid.
        assert await ranges(h.lake) == [(0.0, 30.0)]
        assert await log_count(h.lake) == 5

        lines.clear()
        await admin.regenerate_partitions("log_entries", ns(0), ns(3600), 600, lines.append)
        assert "after the present" in lines[0]
        assert lines[1:] == ["log_entries/global [2026-03-02T10:00:00Z, 2026-03-02T10:00:30Z): created with 5 rows"]
        assert await ranges(h.lake) == [(0.0, 30.0)]

        # A partition beginning in the current second ends at the present itself, inside the
        # second pass's slice of that second (which later updates it as usual).
        lines.clear()
        await admin.materialize_partitions("measures", ns(30), ns(32), 1, lines.append)
        assert await ranges(h.lake, "measures") == [(30.0, 30.5)]
        assert lines[-1] == "measures/global [2026-03-02T10:00:30Z, 2026-03-02T10:00:30.500000Z): created with 0 rows"

        lines.clear()
        await admin.materialize_partitions("log_entries", ns(60), ns(120), 60, lines.append)
        assert lines == [
            "log_entries: the range begins after the present (2026-03-02T10:00:30.500000Z): nothing to materialize"
        ]
        assert await ranges(h.lake) == [(0.0, 30.0)]
        assert all(p.end_insert_ns <= ns(30.5) for p in await list_partitions(h.lake.pool))

    local_lake_env(scenario)


def test_a_pass_heals_a_partition_written_before_its_range_ended(local_lake_env: Any, caplog: Any) -> None:
    async def scenario(h: Any) -> None:
        sample = await h.sample(at_second=10.25)
        lake = h.lake
        # What older versions could write: a minute partition built at T0 + 10.25 s.
        await materialize_partitions(lake, "log_entries", TimeRange(ns(0), ns(60)), 60 * S)
        assert await ranges(lake) == [(0.0, 60.0)]
        # A block inserted afterwards: the partition misses it.
        sample.log.log_static_interop(3, "late", "after the partition", ticks=h.ticks(12_000_000_000))
        h.clock.set(at(12.2))
        await h.seal(sample.log)
        assert await log_count(lake) == 5

        daemon = MaintenanceDaemon(lake)
        with caplog.at_level(logging.DEBUG, logger="sirius.lakehouse"):
            # A pass over [9 s, 10 s): ended before the partition was written, which may hold
            # blocks past it; the pass leaves it, quietly (it is healed a moment later).
            early = await daemon.run_pass(PassKind.SECOND, at(11.5))
            assert [r.action.value for r in early.results["log_entries"]] == ["abort"]
            assert await ranges(lake) == [(0.0, 60.0)]
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
            # The pass over [10 s, 11 s) has passed the time it was written: it rebuilds
            # [0 s, 11 s) from source, and leaves the rest of the minute to the next passes.
            healing = await daemon.run_pass(PassKind.SECOND, at(12.5))
            assert [r.action.value for r in healing.results["log_entries"]] == ["create"]
            assert await ranges(lake) == [(0.0, 11.0)]
            assert await log_count(lake) == 5
            await daemon.run_pass(PassKind.SECOND, at(13.5))  # [11 s, 12 s)
            await daemon.run_pass(PassKind.SECOND, at(14.5))  # [12 s, 13 s): the block inserted at 12.2 s
        assert await ranges(lake) == [(0.0, 11.0), (11.0, 12.0), (12.0, 13.0)]
        assert await log_count(lake) == 6
        assert "was written before its range ended: rebuilt as" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

    local_lake_env(scenario)


def test_a_partition_sticking_out_for_another_reason_is_still_left_alone(local_lake_env: Any, caplog: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        lake = h.lake
        h.clock.set(at(70))
        await materialize_partitions(lake, "log_entries", TimeRange(ns(0), ns(60)), 60 * S)  # complete
        with caplog.at_level(logging.WARNING, logger="sirius.lakehouse"):
            report = await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, at(12.5))  # [10 s, 11 s)
        assert [r.action.value for r in report.results["log_entries"]] == ["abort"]
        assert await ranges(lake) == [(0.0, 60.0)]
        assert "sticks out of the range; left alone" in caplog.text
        assert await log_count(lake) == 5

    local_lake_env(scenario)


def test_the_in_memory_admin_cuts_at_its_clock_too() -> None:
    admin = InMemoryPartitionAdmin(view_sets=[ViewSetRecord("log_entries", b"\x08")], clock=lambda: ns(90))
    lines: list[str] = []
    asyncio.run(admin.materialize_partitions("log_entries", ns(0), ns(180), 60, lines.append))
    assert "after the present" in lines[0]
    assert [(p.begin_insert_time, p.end_insert_time) for p in admin.partitions] == [(ns(0), ns(60)), (ns(60), ns(90))]
    lines.clear()
    asyncio.run(admin.regenerate_partitions("log_entries", ns(120), ns(180), 60, lines.append))
    assert lines == [f"log_entries: the range begins after the present ({ns(90)}): nothing to materialize"]
    assert len(admin.partitions) == 2
