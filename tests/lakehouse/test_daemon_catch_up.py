"""A daemon that fell behind skips late second passes and catches up on their insert times.

Under load the second passes run late (each takes longer than its period); past
``max_second_lateness_ns`` the schedule jumps to the latest pass due. That pass also processes the
insert times the skipped passes would have, so rows inserted meanwhile are queryable after it,
not one to two and a half minutes later when the minute pass reaches them. Time is a fake clock:
passes run at chosen instants (``run_due``); nothing sleeps or measures time.
"""

from __future__ import annotations

from typing import Any

from sirius.lakehouse import MaintenanceDaemon, PassKind

from .daemon_clock import PROVISIONAL, S, at, log_count


async def due_at(daemon: MaintenanceDaemon, clock: Any, seconds: float) -> list[Any]:
    clock.set(at(seconds))
    reports = await daemon.run_due(at(seconds))
    for report in reports:
        assert not report.failures, report.failures
    return [r for r in reports if r.kind is PassKind.SECOND]


def test_a_late_second_pass_catches_up_on_the_skipped_insert_times(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        daemon = MaintenanceDaemon(h.lake, PROVISIONAL)
        await due_at(daemon, h.clock, 5.0)  # sets the schedule
        (on_time,) = await due_at(daemon, h.clock, 5.2)  # T = 5.0: guarded [3, 4)
        assert on_time.insert_range.end_ns - h.T0_NS == 5 * S
        await h.sample(at_second=10.25)  # 5 log events inserted at 10.25, while the daemon is stuck
        # The daemon comes back at 30.2: the pass due at 5.375 is 24.8 s late, past the 10 s
        # limit. The one due at 30.125 runs (guarded [28, 29)) and catches up from 4 s.
        (late,) = await due_at(daemon, h.clock, 30.2)
        assert (late.insert_range.begin_ns - h.T0_NS, late.insert_range.end_ns - h.T0_NS) == (4 * S, 30 * S)
        assert await log_count(h.lake) == 5  # not left to the minute pass at 90 s
        (next_one,) = await due_at(daemon, h.clock, 30.45)  # back on schedule: no catch-up range
        assert next_one.insert_range.begin_ns - h.T0_NS == 28 * S

    local_lake_env(scenario)


def test_catching_up_reaches_back_two_minutes_at_most(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        daemon = MaintenanceDaemon(h.lake, PROVISIONAL)
        await due_at(daemon, h.clock, 5.0)
        await due_at(daemon, h.clock, 5.2)
        # Stuck for ten minutes: older insert times are the minute passes' (they run meanwhile).
        (late,) = await due_at(daemon, h.clock, 605.2)
        assert late.insert_range.begin_ns - h.T0_NS == (603 - 120) * S

    local_lake_env(scenario)
