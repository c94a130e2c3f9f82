"""Bring one partition of a view instance up to date: decide, build or merge, write, swap.

The decision follows Micromegas's batch update (``micromegas-query.md`` §5) and JIT freshness
check (§4) for the partitions of the current schema overlapping the target insert range:

===================================================  =========================================
existing partitions                                  action
===================================================  =========================================
none                                                 create from source
one sticks out of the target range                   abort (thread_spans: rebuild and replace)
their source counts do not add up to the source's    recreate from source
exactly one, counts match                            up to date
several, counts match                                merge them (thread_spans: rebuild)
===================================================  =========================================

An abort names the partitions in the way (``UpdateResult.blocking``) and logs nothing: the
caller warns, or (``materialize_partitions``) heals a partition written before its range ended
by updating a wider range with ``replacing``: partitions allowed to stick out, replaced too.

Crash safety: the new file is registered in ``temporary_files`` (expiring in a day) *before* it
is uploaded, in its own committed statement; the partition row is inserted, the replaced rows
deleted (their files moved to ``temporary_files``, expiring after an hour) and that registration
removed in one transaction. A crash anywhere leaves either the old partitions or the new one
visible, never both and never a row without its file; an orphaned upload is deleted when its
registration expires.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncpg
import pyarrow as pa

from ._parquet_files import encode_parquet, event_time_bounds, partition_file_key, read_partition_files
from ._partitions import (
    Partition,
    encode_source_count,
    find_overlapping,
    insert_partition,
    instance_lock_key,
    range_lock_key,
    register_temporary_file,
    retire_partition_rows,
)
from ._pool import pg_errors
from ._time_range import TimeRange

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse
    from ._view_set import ViewSet

__all__ = ["Action", "UpdateResult", "decide", "update_partition"]


class Action(StrEnum):
    """What ``update_partition`` did (or would do)."""

    UP_TO_DATE = "up to date"
    CREATE = "create"
    MERGE = "merge"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """Outcome of one partition update.

    Attributes:
        action: what was done.
        partition: the partition written (None when up to date or aborted).
        message: a human-readable line for admin logs.
        blocking: on an abort, the existing partitions sticking out of the target range (the
            caller decides whether to log it or to retry over a wider range).
    """

    action: Action
    partition: Partition | None
    message: str
    blocking: tuple[Partition, ...] = ()


def decide(view: ViewSet, existing: list[Partition], target: TimeRange, source_count: int) -> Action:
    """Choose the action for ``target`` given the overlapping partitions and the source count."""
    if not existing:
        return Action.CREATE
    if any(not target.contains(p.insert_range) for p in existing):
        return Action.CREATE if view.replaces_overlapping else Action.ABORT
    counts = [p.source_count for p in existing]
    if any(c is None for c in counts) or sum(c or 0 for c in counts) != source_count:
        return Action.CREATE
    if len(existing) == 1:
        return Action.UP_TO_DATE
    return Action.MERGE if view.mergeable else Action.CREATE


async def _write_file(
    lake: Lakehouse, view: ViewSet, instance: str, target: TimeRange, table: pa.Table, *, data: bytes | None
) -> tuple[str, int]:
    if data is None:
        compression = lake.settings.parquet_compression
        data = await asyncio.to_thread(
            encode_parquet, table, compression, view.row_group_rows, view.delta_columns, view.no_statistics
        )
    key = partition_file_key(view.name, instance, target.begin_ns)
    # Registered (and committed) before the upload: if we die before the row commits, the
    # temporary-file cleanup deletes the orphan.
    await register_temporary_file(lake.pool, key, len(data), lake.now_ns() + lake.settings.in_flight_file_ttl_ns)
    await lake.store.put_if_absent(key, data)
    return key, len(data)


async def _discard_file(lake: Lakehouse, key: str) -> None:
    await lake.store.delete(key)
    with pg_errors(f"unregistering {key}"):
        await lake.pool.execute("DELETE FROM temporary_files WHERE file_path = $1", key)


async def update_partition(
    lake: Lakehouse,
    view: ViewSet,
    instance: str,
    target: TimeRange,
    *,
    force: bool = False,
    replacing: tuple[Partition, ...] = (),
) -> UpdateResult:
    """Make the partition of ``view``/``instance`` over insert range ``target`` current.

    Serialised with other writers of the same partition (advisory lock); idempotent: a second
    call with no new source data reports ``UP_TO_DATE`` and writes nothing.

    Args:
        lake: the lakehouse.
        view: the view set.
        instance: ``global`` or a process/stream id.
        target: the insert-time range of the partition.
        force: rebuild from source even when up to date or mergeable (``regenerate_partitions``).
        replacing: existing partitions allowed to stick out of ``target``: rebuilt over
            ``target`` and replaced with the rest (a partition written before its range ended).

    Raises:
        MetadataStoreError: PostgreSQL failed (nothing visible changed).
        ObjectStoreError: the store failed (nothing visible changed).
        CorruptBlockError: a source block cannot be decoded.
    """
    async with lake.partition_writers:
        return await _update_partition(lake, view, instance, target, force=force, replacing=replacing)


async def _update_partition(
    lake: Lakehouse,
    view: ViewSet,
    instance: str,
    target: TimeRange,
    *,
    force: bool,
    replacing: tuple[Partition, ...],
) -> UpdateResult:
    label = f"{view.name}/{instance} {target}"
    stats = lake.stats
    async with lake.pool.acquire() as conn:
        with pg_errors(f"locking partition {label}"):
            tx = conn.transaction()
            await tx.start()
        try:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", range_lock_key(view.name, instance, target))
            source_count = await view.source_count(lake, instance, target)
            existing = await find_overlapping(conn, view.name, instance, view.file_schema_hash, target)
            action = decide(view, existing, target, source_count)
            allowed = {_identity(p) for p in replacing}
            if action is Action.ABORT and allowed and _sticking_out(existing, target, allowed) == ():
                action = Action.CREATE
            if force and action is not Action.ABORT:
                action = Action.CREATE
            if action is Action.UP_TO_DATE:
                stats.partitions_up_to_date += 1
                await tx.commit()
                return UpdateResult(action, None, f"{label}: up to date")
            if action is Action.ABORT:
                await tx.commit()
                blocking = _sticking_out(existing, target, set())
                ranges = ", ".join(str(p.insert_range) for p in blocking)
                message = f"{label}: existing partition {ranges} sticks out of the range; left alone"
                return UpdateResult(action, None, message, blocking)
            data: bytes | None = None  # the file, when the view encoded it while building
            if action is Action.MERGE:
                merged = await read_partition_files(lake.store, existing, view.schema)
                table = await asyncio.to_thread(view.merge, [merged])
                count = sum(p.source_count or 0 for p in existing)
            else:
                table, count, data = await view.build_file(lake, instance, target)
            partition = await _commit(lake, conn, view, instance, target, table, count, existing, allowed, data=data)
            await tx.commit()
        except BaseException:
            # A failed rollback (the connection broke, or a cancelled COMMIT left the transaction
            # in error state) must not replace the original exception: a CancelledError that
            # became an InterfaceError would be swallowed by callers and never stop their task.
            # asyncpg discards a broken connection when it goes back to the pool.
            with contextlib.suppress(Exception):
                await tx.rollback()
            raise
    if partition is None:
        message = f"{label}: another writer changed overlapping partitions; retry on the next pass"
        return UpdateResult(Action.ABORT, None, message)
    stats.partitions_written += 1
    if action is Action.MERGE:
        stats.partitions_merged += 1
    verb = "merged" if action is Action.MERGE else "created"
    return UpdateResult(action, partition, f"{label}: {verb} with {partition.num_rows} rows")


async def _commit(  # noqa: PLR0917 - private step of update_partition
    lake: Lakehouse,
    conn: asyncpg.Connection,
    view: ViewSet,
    instance: str,
    target: TimeRange,
    table: pa.Table,
    count: int,
    existing: list[Partition],
    allowed: set[tuple[int, int, str | None]],
    *,
    data: bytes | None = None,
) -> Partition | None:
    key: str | None = None
    size = 0
    if table.num_rows:
        key, size = await _write_file(lake, view, instance, target, table, data=data)
    low, high = event_time_bounds(table, view.event_time_columns)
    partition = Partition(
        view_set_name=view.name,
        view_instance_id=instance,
        begin_insert_ns=target.begin_ns,
        end_insert_ns=target.end_ns,
        min_event_ns=low,
        max_event_ns=high,
        updated_ns=lake.now_ns(),
        file_path=key,
        file_size=size,
        file_schema_hash=view.file_schema_hash,
        source_data_hash=encode_source_count(count),
        num_rows=table.num_rows,
        sort_order=view.sort_order,
    )
    # Swap rows under the instance lock so writers of other, overlapping ranges cannot
    # interleave between our read of the overlaps and our insert.
    with pg_errors(f"locking {view.name}/{instance}"):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", instance_lock_key(view.name, instance))
    current = await find_overlapping(conn, view.name, instance, view.file_schema_hash, target)
    changed = {_identity(p) for p in current} != {_identity(p) for p in existing}
    if changed and not view.replaces_overlapping and _sticking_out(current, target, allowed):
        if key is not None:
            await _discard_file(lake, key)
        return None
    retired = await retire_partition_rows(conn, current, lake.now_ns() + lake.settings.replaced_file_ttl_ns)
    lake.stats.partitions_retired += retired
    await insert_partition(conn, partition)
    if key is not None:
        with pg_errors(f"committing {key}"):
            await conn.execute("DELETE FROM temporary_files WHERE file_path = $1", key)
    return partition


def _identity(p: Partition) -> tuple[int, int, str | None]:
    return p.begin_insert_ns, p.end_insert_ns, p.file_path


def _sticking_out(
    partitions: list[Partition], target: TimeRange, allowed: set[tuple[int, int, str | None]]
) -> tuple[Partition, ...]:
    """The partitions not inside ``target``, except the ``allowed`` ones."""
    return tuple(p for p in partitions if not target.contains(p.insert_range) and _identity(p) not in allowed)
