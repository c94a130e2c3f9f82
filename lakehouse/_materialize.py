"""Materialising view instances: global partitions over an insert range, and JIT updates.

``materialize_partitions`` is the daemon's batch update of one global view (and the
``materialize_partitions`` admin function): the range is cut into partitions of the requested
length (at most the view's ``max_partition_delta_ns``, §5 "subdivide") and each is brought up to
date by ``update_partition``.

Partitions never reach into the future when asked (``until_now``: the admin functions and
``sirius demo``): one built before its range ends misses every block inserted after it, and the
maintenance passes, whose smaller slices it sticks out of, could not update it. One written that
way (by an older version, or a call without ``until_now``) is healed by the next pass that has
reached the time it was written: that pass rebuilds from the partition's start to its own end
and leaves the rest of the old range to the passes that follow.

``jit_update`` does the same for a process- or stream-scoped
instance before a query scans it (§4); partitions known current from the block counts are
skipped without taking a lock, so a repeated query costs two small PostgreSQL reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._exceptions import ViewError
from ._partition_update import Action, UpdateResult, update_partition
from ._partitions import Partition, list_partitions
from ._time_range import NS_PER_SECOND, TimeRange, to_datetime
from ._view_set import GLOBAL_INSTANCE

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = ["LogSink", "jit_update", "materialize_partitions"]

_log = logging.getLogger(__name__)

LogSink = Callable[[str], None]
"""Receives one progress line of a long operation."""


def _ignore(_message: str) -> None:
    return None


async def materialize_partitions(
    lake: Lakehouse,
    view_set: str,
    insert_range: TimeRange,
    partition_delta_ns: int,
    *,
    log: LogSink = _ignore,
    force: bool = False,
    until_now: bool = False,
    until_ns: int | None = None,
) -> list[UpdateResult]:
    """Bring the global partitions of ``view_set`` over ``insert_range`` up to date.

    Args:
        lake: the lakehouse.
        view_set: a view set with a global instance.
        insert_range: the insert-time range to cover (aligned outwards to the partition length).
        partition_delta_ns: partition length; capped at the view's maximum.
        log: receives one line per partition.
        force: rebuild every partition from source (``regenerate_partitions``).
        until_now: cut the range at the lakehouse clock's present, saying so in ``log``: no
            partition reaches into the future (the admin functions, ``sirius demo``).
        until_ns: cut the range there instead, silently (the daemon's provisional slices end
            at the pass's scheduled time, or at the clock's present when that is earlier).

    Returns:
        One result per partition, in time order (none when the range lies in the future).

    Raises:
        ViewError: unknown view set, no global instance, or a non-positive length.
        MetadataStoreError, ObjectStoreError, CorruptBlockError: a partition failed (the ones
            before it are committed).
    """
    view = lake.views.get(view_set)
    view.check_instance(GLOBAL_INSTANCE)
    if partition_delta_ns <= 0:
        msg = f"partition length must be positive, got {partition_delta_ns} ns"
        raise ViewError(msg)
    delta = min(partition_delta_ns, view.max_partition_delta_ns)
    targets = list(insert_range.slices(delta))
    if until_now:
        targets = _until(targets, lake.now_ns(), view_set, log)
    elif until_ns is not None:
        targets = _until(targets, until_ns, view_set, _ignore)
    results = []
    for target in targets:
        result = await update_partition(lake, view, GLOBAL_INSTANCE, target, force=force)
        wider = _healing_range(target, result.blocking) if result.action is Action.ABORT else None
        if wider is not None:
            blocking = ", ".join(str(p.insert_range) for p in result.blocking)
            healing = f"{view_set}/{GLOBAL_INSTANCE} {blocking} was written before its range ended: rebuilt as {wider}"
            _log.info("%s", healing)
            log(healing)
            result = await update_partition(lake, view, GLOBAL_INSTANCE, wider, force=force, replacing=result.blocking)
        if result.action is Action.ABORT and result.blocking:
            # A partition written before its range ended, waiting for the passes to reach the
            # time it was written, is healed soon; any other partition in the way is worth a warning.
            _log.log(logging.DEBUG if all(map(_premature, result.blocking)) else logging.WARNING, "%s", result.message)
        log(result.message)
        results.append(result)
    return results


def _until(targets: list[TimeRange], now_ns: int, view_set: str, log: LogSink) -> list[TimeRange]:
    """``targets`` cut at the present, with one line to ``log`` when anything was cut.

    The last partition ends at ``now_ns`` when it begins in the current second (it then lies
    inside the second pass's slice, which updates it as usual), else at the start of the
    current second: on the second passes' grid, so none of their slices from then on overlaps it.
    """
    kept = [t for t in targets if t.begin_ns < now_ns]
    if kept == targets and (not kept or kept[-1].end_ns <= now_ns):
        return targets
    end = f"{to_datetime(targets[-1].end_ns):%Y-%m-%dT%H:%M:%S.%f}Z"
    now = f"{to_datetime(now_ns):%Y-%m-%dT%H:%M:%S.%f}Z"
    if not kept:
        log(f"{view_set}: the range begins after the present ({now}): nothing to materialize")
        return []
    second = now_ns - now_ns % NS_PER_SECOND
    last = kept.pop()
    if last.end_ns > now_ns:
        last = TimeRange(last.begin_ns, now_ns if last.begin_ns >= second else second)
    kept.append(last)
    log(
        f"{view_set}: the range (whole partitions) ends at {end}, after the present ({now}): "
        f"materialized up to {to_datetime(last.end_ns):%Y-%m-%dT%H:%M:%S.%f}Z only; "
        "the maintenance passes cover what comes next"
    )
    return kept


def _premature(partition: Partition) -> bool:
    """Written before its insert range ended: blocks inserted after ``updated`` are missing from it."""
    return partition.updated_ns < partition.end_insert_ns


def _healing_range(target: TimeRange, blocking: tuple[Partition, ...]) -> TimeRange | None:
    """What to rebuild instead of ``target`` when every partition in the way is premature, or None.

    Once ``target`` ends after such a partition was written, every block it holds lies before
    ``target``'s end: rebuilding from its start to that end keeps them all and replaces it; the
    rest of its old range is left to the next slices. Before that, None (the pass skips).
    """
    if not blocking or not all(_premature(p) and p.updated_ns < target.end_ns for p in blocking):
        return None
    return TimeRange(min(target.begin_ns, *(p.begin_insert_ns for p in blocking)), target.end_ns)


async def jit_update(
    lake: Lakehouse, view_set: str, instance: str, query_range: TimeRange | None
) -> list[UpdateResult]:
    """Materialise the partitions of a process/stream instance that a query over ``query_range`` reads.

    Args:
        lake: the lakehouse.
        view_set: ``log_entries``, ``measures``, ``thread_spans``, ``async_events``, …
        instance: the process id (stream id for ``thread_spans``).
        query_range: the query's time range; None means the instance's whole life
            (``thread_spans`` requires a range).

    Returns:
        Results of the partitions that needed a check under lock (empty when all were current).

    Raises:
        ViewError: unknown view set or instance kind, malformed id, missing range.
        MetadataStoreError, ObjectStoreError, CorruptBlockError: materialisation failed.
    """
    view = lake.views.get(view_set)
    if view.check_instance(instance) is None:
        msg = f"{view_set} is a global view: query it as a table, not through view_instance"
        raise ViewError(msg)
    lake.stats.jit_updates += 1
    ranges = await view.jit_ranges(lake, instance, query_range)
    if not ranges:
        return []
    span = ranges[0][0]
    for insert_range, _ in ranges[1:]:
        span = span.union(insert_range)
    known = await list_partitions(lake.pool, view.name, instance, span)
    current = {
        (p.begin_insert_ns, p.end_insert_ns): p.source_count
        for p in known
        if p.file_schema_hash == view.file_schema_hash
    }
    results = []
    for insert_range, expected in ranges:
        overlapping = [p for p in known if p.insert_range.overlaps(insert_range)]
        key = (insert_range.begin_ns, insert_range.end_ns)
        if expected is not None and len(overlapping) == 1 and current.get(key) == expected:
            lake.stats.partitions_up_to_date += 1
            continue
        result = await update_partition(lake, view, instance, insert_range)
        if result.action is Action.ABORT:
            _log.warning("JIT %s/%s: %s", view_set, instance, result.message)
        results.append(result)
    return results
