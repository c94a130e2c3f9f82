"""Materialising view instances: global partitions over an insert range, and JIT updates.

``materialize_partitions`` is the daemon's batch update of one global view (and the
``materialize_partitions`` admin function): the range is cut into partitions of the requested
length (at most the view's ``max_partition_delta_ns``, §5 "subdivide") and each is brought up to
date by ``update_partition``. ``jit_update`` does the same for a process- or stream-scoped
instance before a query scans it (§4); partitions known current from the block counts are
skipped without taking a lock, so a repeated query costs two small PostgreSQL reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._exceptions import ViewError
from ._partition_update import Action, UpdateResult, update_partition
from ._partitions import list_partitions
from ._time_range import TimeRange
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
) -> list[UpdateResult]:
    """Bring the global partitions of ``view_set`` over ``insert_range`` up to date.

    Args:
        lake: the lakehouse.
        view_set: a view set with a global instance.
        insert_range: the insert-time range to cover (aligned outwards to the partition length).
        partition_delta_ns: partition length; capped at the view's maximum.
        log: receives one line per partition.
        force: rebuild every partition from source (``regenerate_partitions``).

    Returns:
        One result per partition, in time order.

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
    results = []
    for target in insert_range.slices(delta):
        result = await update_partition(lake, view, GLOBAL_INSTANCE, target, force=force)
        log(result.message)
        results.append(result)
    return results


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
