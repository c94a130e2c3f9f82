"""The maintenance daemon: live ETL passes every second, minute, hour and day, plus retention.

Passes follow ``micromegas-query.md`` §5. ``T`` is the scheduled time truncated to the period:

====== ============= ================== ========== =========================================
pass   runs at       insert range       partition  extra
====== ============= ================== ========== =========================================
second T + 0.5 s     [T - 2 s, T - 1 s) 1 s        skipped when more than 10 s late (the next catches up)
minute T + 30 s      [T - 2 min, T - 1) 1 min
hour   T + 10 min    [T - 2 h, T)       1 h        first: blocks partitions ahead, retention, temporary files
day    T + 4 h       [T - 2 d, T)       1 day
====== ============= ================== ========== =========================================

``DaemonConfig.second_pass_delay_ns = 0`` moves the second pass to ``[T - 1 s, T)`` for fresher
data (the reference keeps a 1 s margin for late commits; the minute pass heals either way).

Fresher data without giving up that margin (``DaemonConfig.provisional_slices``, which ``sirius
daemon`` and ``sirius up`` turn on): the second pass runs every ``second_pass_period_ns`` (a
divisor of 1 s), at ``T + period / 2`` with ``T`` on that grid, and processes, besides its
*guarded* second ``[S - 1 s - delay, S - delay)`` (``S`` = ``T`` truncated to the second), every
insert time after it up to ``T``, in 1 s slices the last of which ends at ``T``. Those later
slices are provisional: each following pass checks them again (``update_partition`` compares the
source count) and rebuilds one that a late row joined, until the slice becomes the guarded second
and is checked for the last time no earlier than the reference schedule would have built it. So
no row is left out that the reference would have included, rows are queryable about
``period / 2 + period`` after insertion instead of 1.5-2.5 s, and a partition is rebuilt only when
rows arrived in its range since it was last built (the current second's grows pass after pass).

Each pass updates the global views in ascending update group (``blocks`` → ``log_entries``,
``measures``, ``processes``, ``streams`` → ``log_stats``), the views of one group concurrently;
a view that fails is logged, counted and skipped. Every pass is idempotent (``update_partition``),
several daemons can run at once (advisory locks), and one killed mid-pass leaves either the old
or the new partitions, so the next pass over the same range finishes the work. A pass runs under its kind's lease
(``_pass_lease``): while one daemon holds it, the others skip that pass at once instead of
waiting on partition locks with a connection held, and take over when it dies.

``run_pass(kind, scheduled)`` runs one pass deterministically; ``run_due(now)`` runs what a
clock at ``now`` makes due. ``start()`` runs the four schedules as asyncio tasks with the
injected clock and sleep; ``stop()`` cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncpg

from ._block_partitions import ensure_block_partitions
from ._exceptions import LakehouseError, MetadataStoreError
from ._materialize import materialize_partitions
from ._partition_update import Action, UpdateResult
from ._pass_lease import pass_lease
from ._pool import pg_errors
from ._retention import RetentionReport, apply_retention, delete_expired_temporary_files
from ._retention_policy import RetentionPolicy
from ._time_range import NS_PER_DAY, NS_PER_HOUR, NS_PER_MINUTE, NS_PER_SECOND, TimeRange, to_datetime, to_ns

if TYPE_CHECKING:
    from ._iceberg_publisher import IcebergPublisher, PublishReport
    from ._lakehouse import Lakehouse
    from ._view_set import ViewSet

__all__ = ["DaemonConfig", "MaintenanceDaemon", "PassKind", "PassReport"]

_log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
"""``asyncio.sleep``-like: wait that many seconds."""

PassWrapper = Callable[["PassKind", Callable[[], Awaitable["PassReport"]]], Awaitable["PassReport"]]
"""Runs a scheduled pass (the second argument) around something: self-telemetry's pass spans."""


class PassKind(StrEnum):
    """The four live-ETL passes."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class _Plan:
    period_ns: int
    offset_ns: int
    range_from: int  # insert range relative to T, in periods' ns
    range_to: int
    partition_ns: int


_PLANS: dict[PassKind, _Plan] = {
    PassKind.SECOND: _Plan(NS_PER_SECOND, NS_PER_SECOND // 2, -2 * NS_PER_SECOND, -NS_PER_SECOND, NS_PER_SECOND),
    PassKind.MINUTE: _Plan(NS_PER_MINUTE, 30 * NS_PER_SECOND, -2 * NS_PER_MINUTE, -NS_PER_MINUTE, NS_PER_MINUTE),
    PassKind.HOUR: _Plan(NS_PER_HOUR, 10 * NS_PER_MINUTE, -2 * NS_PER_HOUR, 0, NS_PER_HOUR),
    PassKind.DAY: _Plan(NS_PER_DAY, 4 * NS_PER_HOUR, -2 * NS_PER_DAY, 0, NS_PER_DAY),
}


_MIN_SECOND_PERIOD_NS = 50_000_000
"""Shortest second-pass period: each pass costs a few PostgreSQL round trips per view and slice."""
CATCH_UP_LIMIT_NS = 2 * NS_PER_MINUTE
"""How far back a second pass after skipped ones catches up: older insert times are the minute passes'."""


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Daemon settings.

    Attributes:
        retention_days: data older than this is deleted by the hourly pass (``MICROMEGAS_RETENTION_DAYS``).
        retention_days_by_view: per-view-set days for those views' partitions
            (``SIRIUS_RETENTION_DAYS_BY_VIEW``); raw blocks are kept for the longest of all.
        retention_exact: also row-delete the expired rows of the ``blocks`` day the cutoff falls in
            (``SIRIUS_RETENTION_EXACT``; by default whole days are dropped once past the cutoff).
        retention_batch_size: rows deleted per statement.
        max_second_lateness_ns: second passes later than this are skipped up to the latest one
            due, which then also processes the insert times the skipped ones would have (back
            to the end of the last guarded second processed, at most ``CATCH_UP_LIMIT_NS``):
            under load the daemon falls behind and catches up, instead of leaving those rows to
            the minute pass, one to two and a half minutes later.
        second_pass_delay_ns: how far behind ``T`` the second pass's range ends. The reference
            processes ``[T - 2 s, T - 1 s)`` (1 s): rows are queryable 1.5-2.5 s after insertion.
            0 processes ``[T - 1 s, T)``: 0.5-1.5 s, at the cost of leaving to the minute pass
            any block whose row commits more than 0.5 s after its ``insert_time`` (clock skew
            between ingestion hosts and the daemon, very slow commits).
        second_pass_period_ns: how often the second pass runs (a divisor of 1 s, at least
            50 ms); it runs at half a period past each multiple of it.
        provisional_slices: also materialise, at each second pass, the insert times after its
            guarded second up to its scheduled time (see the module docstring); off = the
            reference schedule.
        passes: which passes run (all by default).
    """

    retention_days: int = 90
    retention_days_by_view: tuple[tuple[str, int], ...] = ()
    retention_exact: bool = False
    retention_batch_size: int = 1000
    max_second_lateness_ns: int = 10 * NS_PER_SECOND
    second_pass_delay_ns: int = NS_PER_SECOND
    second_pass_period_ns: int = NS_PER_SECOND
    provisional_slices: bool = False
    passes: frozenset[PassKind] = field(default_factory=lambda: frozenset(PassKind))

    def __post_init__(self) -> None:
        if self.retention_days <= 0 or self.retention_batch_size <= 0:
            msg = "retention_days and retention_batch_size must be positive"
            raise ValueError(msg)
        if not 0 <= self.second_pass_delay_ns <= 10 * NS_PER_SECOND:
            msg = "second_pass_delay_ns must lie between 0 and 10 s"
            raise ValueError(msg)
        period = self.second_pass_period_ns
        if not _MIN_SECOND_PERIOD_NS <= period <= NS_PER_SECOND or NS_PER_SECOND % period:
            msg = f"second_pass_period_ns must divide 1 s and be at least 50 ms, got {period} ns"
            raise ValueError(msg)
        self.retention_policy  # noqa: B018 - validates the overrides (ConfigurationError)

    @property
    def retention_policy(self) -> RetentionPolicy:
        """The days kept, by default and per view set."""
        return RetentionPolicy(self.retention_days, self.retention_days_by_view, self.retention_exact)


@dataclass(slots=True)
class PassReport:
    """What one pass did.

    Attributes:
        kind: the pass.
        scheduled: its scheduled time.
        insert_range: the range it processed.
        results: per view, the partition results.
        failures: per failed view, the error message.
        retention: the retention report (hourly pass only).
        elapsed_seconds: how long the pass took.
        skipped: another daemon held this kind's lease; this one did nothing.
        iceberg: what publishing the views as Iceberg tables did (None: no publisher).
    """

    kind: PassKind
    scheduled: datetime
    insert_range: TimeRange
    results: dict[str, list[UpdateResult]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    retention: RetentionReport | None = None
    elapsed_seconds: float = 0.0
    skipped: bool = False
    iceberg: PublishReport | None = None

    @property
    def written(self) -> list[UpdateResult]:
        """The partitions with rows this pass created or merged (not empty or up-to-date ones)."""
        return [
            r
            for results in self.results.values()
            for r in results
            if r.partition is not None and r.partition.num_rows and r.action in (Action.CREATE, Action.MERGE)
        ]

    def summary(self) -> str:
        """One line: partitions written (by view), their rows, failures, time.

        >>> PassReport(PassKind.SECOND, to_datetime(0), TimeRange(0, 10**9)).summary()
        'second pass over 1970-01-01T00:00:00Z..00:00:01Z: nothing new, 0.000 s'
        """
        begin, end = to_datetime(self.insert_range.begin_ns), to_datetime(self.insert_range.end_ns)
        span = f"{begin:%Y-%m-%dT%H:%M:%S}Z..{end:%H:%M:%S}Z"
        if self.skipped:
            return f"{self.kind.value} pass over {span}: skipped, another daemon holds the lease"
        written = self.written
        if written:
            views = sorted({r.partition.view_set_name for r in written if r.partition is not None})
            rows = sum(r.partition.num_rows for r in written if r.partition is not None)
            what = f"{len(written)} partition(s) written ({', '.join(views)}), {rows:,} rows"
        else:
            what = "nothing new"
        failed = f", failed: {', '.join(sorted(self.failures))}" if self.failures else ""
        return f"{self.kind.value} pass over {span}: {what}{failed}, {self.elapsed_seconds:.3f} s"


def _first_due(plan: _Plan, now_ns: int) -> int:
    due = now_ns - now_ns % plan.period_ns + plan.offset_ns
    return due if due >= now_ns else due + plan.period_ns


class MaintenanceDaemon:
    """Runs the live ETL passes and retention of one lakehouse.

    Args:
        lake: the lakehouse (its clock drives the schedule).
        config: settings.
        sleep: how to wait (inject a fake in tests; the default is ``asyncio.sleep``).
        pass_wrapper: runs each scheduled pass (e.g. inside a span); None runs it as is.
        publisher: publishes the global views as Iceberg tables after each pass (None: not).
    """

    def __init__(
        self,
        lake: Lakehouse,
        config: DaemonConfig | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        pass_wrapper: PassWrapper | None = None,
        publisher: IcebergPublisher | None = None,
    ) -> None:
        self._lake = lake
        self._publisher = publisher
        self._pass_wrapper = pass_wrapper
        self.config = config or DaemonConfig()
        self._sleep = sleep
        self._tasks: list[asyncio.Task[None]] = []
        self._next_due: dict[PassKind, int] = {}
        self._second_done_ns: int | None = None  # end of the last guarded second processed
        self._leased_elsewhere: set[PassKind] = set()

    async def run_pass(
        self, kind: PassKind, scheduled: datetime | int, *, catch_up_from_ns: int | None = None
    ) -> PassReport:
        """Run one pass as if scheduled at ``scheduled`` (deterministic; no lateness check).

        Views run in update-group order; one failing is logged and skipped. When another daemon
        holds this kind's lease the pass is skipped (``PassReport.skipped``). A second pass
        given ``catch_up_from_ns`` (the schedule skipped passes) starts its range there when that
        is earlier than its guarded second.
        """
        plan = self._plan(kind)
        scheduled_ns = to_ns(scheduled)
        start = scheduled_ns - scheduled_ns % plan.period_ns
        insert_range = TimeRange(start + plan.range_from, start + plan.range_to)
        until_ns: int | None = None
        guarded_end: int | None = None
        if kind is PassKind.SECOND:
            delay = self.config.second_pass_delay_ns
            second = start - start % NS_PER_SECOND
            insert_range = TimeRange(second - NS_PER_SECOND - delay, second - delay)
            # Provisional slices never pass the present: one built before its end would look
            # complete. The guarded second is processed as in the reference schedule.
            head = min(start, self._lake.now_ns())
            if self.config.provisional_slices and head > insert_range.end_ns:
                insert_range, until_ns = TimeRange(insert_range.begin_ns, head), head
            if catch_up_from_ns is not None:
                begin = max(catch_up_from_ns, insert_range.begin_ns - CATCH_UP_LIMIT_NS)
                if begin < insert_range.begin_ns:
                    insert_range = TimeRange(begin, insert_range.end_ns)
            guarded_end = second - delay
        report = PassReport(kind, to_datetime(scheduled_ns), insert_range)
        started = time.monotonic()
        async with pass_lease(self._lake.pool, kind.value) as held:
            self._note_lease(kind, held)
            if not held:
                report.skipped = True
                _log.debug("%s", report.summary())
                return report
            await self._work(kind, plan, report, until_ns)
        if guarded_end is not None:
            self._second_done_ns = guarded_end
        report.elapsed_seconds = time.monotonic() - started
        # INFO when the pass wrote or failed something ("did my data arrive?"); idle passes,
        # every second, stay at DEBUG so the console is quiet when nothing arrives.
        _log.log(logging.INFO if report.written or report.failures else logging.DEBUG, "%s", report.summary())
        return report

    def _skip_late_seconds(self, late_ns: int, skipped: int) -> int | None:
        """Say that late second passes are skipped; return where the next one catches up from."""
        _log.warning(
            "second pass %d s late: skipping %d passes; the next one catches up on their insert times",
            late_ns // NS_PER_SECOND,
            skipped,
        )
        return self._second_done_ns

    def _note_lease(self, kind: PassKind, held: bool) -> None:
        """Say, once per pass kind, that another daemon is running such passes (then at DEBUG).

        Daemons on the same schedule race for each pass, so which one runs it changes from pass
        to pass: an INFO line per change would flap every second.
        """
        if held or kind in self._leased_elsewhere:
            return  # each skipped pass's summary is logged at DEBUG by run_pass
        self._leased_elsewhere.add(kind)
        _log.info(
            "%s passes: another daemon is running one; this daemon skips the passes it finds leased (said once)",
            kind.value,
        )

    def _plan(self, kind: PassKind) -> _Plan:
        plan = _PLANS[kind]
        if kind is PassKind.SECOND and self.config.second_pass_period_ns != plan.period_ns:
            period = self.config.second_pass_period_ns
            return _Plan(period, period // 2, plan.range_from, plan.range_to, plan.partition_ns)
        return plan

    async def _work(self, kind: PassKind, plan: _Plan, report: PassReport, until_ns: int | None = None) -> None:
        """The pass itself, under its lease: retention (hourly), then every global view."""
        insert_range = report.insert_range
        await self._lake.refresh_view_definitions()  # before retention: it checks the overrides' names
        if kind is PassKind.HOUR:
            await self._ensure_block_partitions(report)
            try:
                report.retention = await apply_retention(
                    self._lake, self.config.retention_policy, batch_size=self.config.retention_batch_size
                )
                report.retention.temporary_files = await delete_expired_temporary_files(
                    self._lake, batch_size=self.config.retention_batch_size
                )
            except LakehouseError as exc:
                _log.exception("retention failed")
                report.failures["retention"] = str(exc)

        # Views of one update group depend on none of each other: they run concurrently, as many
        # at once as the lakehouse has partition-writer slots (``Lakehouse.partition_writers``,
        # shared with the other passes and JIT so that together they never starve the pool).
        async def update(view: ViewSet) -> None:
            try:
                results[view.name] = await materialize_partitions(
                    self._lake, view.name, insert_range, plan.partition_ns, until_ns=until_ns
                )
            except (LakehouseError, ValueError, OSError) as exc:
                self._lake.stats.view_failures += 1
                report.failures[view.name] = str(exc)
                _log.exception("%s pass: view %s failed over %s", kind.value, view.name, insert_range)

        views = self._lake.views.global_views()
        results: dict[str, list[UpdateResult]] = {}
        for _, group in itertools.groupby(views, key=lambda v: v.update_group):
            # Unexpected errors end the pass as before, once the group's other views are done.
            outcomes = await asyncio.gather(*(update(view) for view in group), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        report.results.update((v.name, results[v.name]) for v in views if v.name in results)
        if self._publisher is not None:
            # After the views: the tables then list what this pass committed. A failure leaves
            # the tables behind the views until a later pass reconciles them.
            try:
                report.iceberg = await self._publisher.publish(self._lake)
            except LakehouseError as exc:
                report.failures["iceberg"] = str(exc)
                _log.exception("%s pass: publishing Iceberg tables failed", kind.value)
            else:
                for view_name, error in report.iceberg.failures.items():
                    report.failures[f"iceberg:{view_name}"] = error
                    _log.error("%s pass: Iceberg table of %s not published: %s", kind.value, view_name, error)

    async def _ensure_block_partitions(self, report: PassReport) -> None:
        """Today's and the next days' ``blocks`` partitions; a busy ``blocks`` is retried next hour."""
        try:
            with pg_errors("creating the blocks partitions"):
                await ensure_block_partitions(self._lake.pool, self._lake.now_ns())
        except MetadataStoreError as exc:
            if isinstance(exc.__cause__, asyncpg.LockNotAvailableError):
                _log.warning("blocks partitions not created now (blocks is busy); retried next hour")
                return
            _log.exception("creating the blocks partitions failed")
            report.failures["blocks partitions"] = str(exc)

    async def run_due(self, now: datetime | int | None = None) -> list[PassReport]:
        """Run, in order, every pass due at ``now`` (default: the clock) and advance the schedule.

        The first call only sets the schedule from ``now`` (nothing is due yet). A second pass
        due more than ``max_second_lateness_ns`` ago is skipped up to the latest one due.
        """
        now_ns = self._lake.now_ns() if now is None else to_ns(now)
        reports = []
        for kind in PassKind:
            if kind not in self.config.passes:
                continue
            due = self._next_due.setdefault(kind, _first_due(self._plan(kind), now_ns))
            if due > now_ns:
                continue
            period = self._plan(kind).period_ns
            catch_up = None
            if kind is PassKind.SECOND and now_ns - due > self.config.max_second_lateness_ns:
                skipped = (now_ns - due) // period
                due, catch_up = due + skipped * period, self._skip_late_seconds(now_ns - due, skipped)
            reports.append(await self.run_pass(kind, due, catch_up_from_ns=catch_up))
            self._next_due[kind] = due + period
        return reports

    async def _loop(self, kind: PassKind) -> None:
        plan = self._plan(kind)
        due = _first_due(plan, self._lake.now_ns())
        while True:
            wait_ns = due - self._lake.now_ns()
            if wait_ns > 0:
                await self._sleep(wait_ns / NS_PER_SECOND)
                continue
            catch_up = None
            if kind is PassKind.SECOND and -wait_ns > self.config.max_second_lateness_ns:
                skipped = -wait_ns // plan.period_ns
                due, catch_up = due + skipped * plan.period_ns, self._skip_late_seconds(-wait_ns, skipped)
            try:
                run = functools.partial(self.run_pass, kind, due, catch_up_from_ns=catch_up)
                if self._pass_wrapper is None:
                    await run()
                else:
                    await self._pass_wrapper(kind, run)
            except Exception:  # noqa: BLE001 - a pass must never kill its schedule (unless stopped)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # stop() is cancelling us: whatever the pass raised on its way out (e.g. a
                    # rollback failing after a cancelled COMMIT), the loop ends as cancelled.
                    _log.debug("%s pass interrupted by stop()", kind.value, exc_info=True)
                    raise asyncio.CancelledError from None
                _log.exception("%s pass scheduled at %s failed", kind.value, to_datetime(due))
            due += plan.period_ns

    async def start(self) -> None:
        """Start one task per pass kind; returns at once."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._loop(kind), name=f"sirius-maintenance-{kind.value}")
            for kind in PassKind
            if kind in self.config.passes
        ]

    async def stop(self) -> None:
        """Cancel the passes (a pass in progress is rolled back), wait for them to end, close the publisher."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._publisher is not None:
            await self._publisher.close()

    @property
    def running(self) -> bool:
        """Whether ``start`` was called and ``stop`` was not."""
        return bool(self._tasks)
