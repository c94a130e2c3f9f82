"""Retention: delete data older than its retention (``RetentionPolicy``), objects and rows alike.

Order as in Micromegas (``micromegas-query.md`` §8), raw data kept for ``RetentionPolicy.raw_days``
(the longest any view needs), each view set's partitions for their own days:

1. blocks with ``insert_time <= cutoff``. When ``blocks`` is partitioned by day
   (``_block_partitions``), a day partition wholly before the cutoff is *detached* and renamed
   ``blocks_retired_p…`` in one short transaction (its rows leave ``blocks`` at once), then its
   objects are deleted in batches, then the table is dropped: no row DELETE, no dead tuples, no
   vacuum, and never a visible row whose object is gone; a crash leaves the retired table, which
   the next run finishes. The day the cutoff falls in waits until it is wholly past (rows kept up
   to a day longer), unless ``RetentionPolicy.exact``: then its expired rows are deleted row by
   row (every hour, so nearly every row -- the cost partitioning avoids; see
   ``_retention_policy``). The default partition, partitions Sirius did not create, and a plain
   Micromegas table are deleted row by row in batches: payload objects deleted, then the rows, in
   one transaction (a crash in between leaves expired rows whose objects are gone, which the next
   run deletes: the rows are expired already, and the other order would leak objects nothing
   lists);
2. streams with no blocks left and ``insert_time <= cutoff``;
3. processes with no streams left and ``insert_time <= cutoff``;
4. partitions (every instance) of each view set with ``end_insert_time`` before that view set's
   cutoff: rows deleted, files moved to ``temporary_files`` (queries planned earlier may still
   read them);
5. ``delete_expired_temporary_files``: objects of expired temporary files, then their rows;
6. query audit rows (``flightsql_query_audit``) of queries started before the default cutoff.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from ._block_partitions import (
    DEFAULT_PARTITION,
    BlockPartition,
    blocks_partitioned,
    detach_block_partition,
    list_block_partitions,
    list_retired_block_tables,
    quote_ident,
)
from ._block_source import block_object_key
from ._exceptions import MetadataStoreError
from ._partitions import Partition, retire_partition_rows
from ._pool import pg_errors
from ._query_audit import delete_audit_before
from ._retention_policy import RetentionPolicy
from ._time_range import NS_PER_DAY, to_datetime

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = ["RetentionReport", "apply_retention", "delete_expired_temporary_files"]

_log = logging.getLogger(__name__)

_PARTITION_COLUMNS = (
    "view_set_name, view_instance_id, begin_insert_time, end_insert_time, min_event_time, max_event_time,"
    " updated, file_path, file_size, file_schema_hash, source_data_hash, num_rows, partition_format_version,"
    " sort_order, max_sort_key_time"
)


@dataclass(slots=True)
class RetentionReport:
    """Counts of what one retention run deleted.

    ``blocks`` counts every block deleted; ``blocks_in_dropped_partitions`` those of them that
    left with a whole day partition (``block_partitions_dropped``), the others were row deletes.
    """

    blocks: int = 0
    blocks_in_dropped_partitions: int = 0
    block_partitions_dropped: int = 0
    streams: int = 0
    processes: int = 0
    partitions: int = 0
    temporary_files: int = 0
    query_audit: int = 0


async def _delete_block_rows(lake: Lakehouse, relation: str, cutoff_ns: int, batch_size: int) -> int:
    """Row deletes of the expired blocks of one table (a partition, or a plain ``blocks``)."""
    table = quote_ident(relation)
    deleted = 0
    while True:
        async with lake.pool.acquire() as conn, conn.transaction():
            with pg_errors("selecting expired blocks"):
                rows = await conn.fetch(
                    f"SELECT ctid, block_id, stream_id, process_id FROM {table} WHERE insert_time <= $1"  # noqa: S608 - a catalog name, quoted
                    " ORDER BY insert_time LIMIT $2 FOR UPDATE SKIP LOCKED",
                    to_datetime(cutoff_ns),
                    batch_size,
                )
            if not rows:
                return deleted
            await lake.store.delete_many(_object_keys(rows))
            with pg_errors("deleting expired blocks"):
                await conn.execute(f"DELETE FROM {table} WHERE ctid = ANY($1::tid[])", [r["ctid"] for r in rows])  # noqa: S608
        deleted += len(rows)


def _object_keys(rows: list[asyncpg.Record]) -> list[str]:
    # A row missing an id (a foreign writer's) has no object to delete.
    return [
        block_object_key(r["process_id"], r["stream_id"], r["block_id"])
        for r in rows
        if r["process_id"] is not None and r["stream_id"] is not None and r["block_id"] is not None
    ]


async def _finish_retired_table(lake: Lakehouse, table: str, batch_size: int) -> int:
    """Delete the objects of a detached partition's rows, then drop it; return its row count."""
    quoted = quote_ident(table)
    count = 0
    after: tuple[object, object] | None = None
    while True:
        with pg_errors(f"reading the blocks of {table}"):
            if after is None:
                rows = await lake.pool.fetch(
                    f"SELECT block_id, stream_id, process_id, insert_time FROM {quoted}"  # noqa: S608 - quoted catalog name
                    " WHERE block_id IS NOT NULL ORDER BY block_id, insert_time LIMIT $1",
                    batch_size,
                )
            else:
                rows = await lake.pool.fetch(
                    f"SELECT block_id, stream_id, process_id, insert_time FROM {quoted}"  # noqa: S608
                    " WHERE (block_id, insert_time) > ($1, $2) ORDER BY block_id, insert_time LIMIT $3",
                    *after,
                    batch_size,
                )
        if not rows:
            break
        await lake.store.delete_many(_object_keys(rows))
        count += len(rows)
        after = (rows[-1]["block_id"], rows[-1]["insert_time"])
    # Rows with a NULL block_id have no object (and no place in the keyset); they go with the table.
    with pg_errors(f"dropping {table}"):
        count += await lake.pool.fetchval(f"SELECT count(*) FROM {quoted} WHERE block_id IS NULL")  # noqa: S608
        await lake.pool.execute(f"DROP TABLE IF EXISTS {quoted}")
    return count


async def _delete_blocks(
    lake: Lakehouse, cutoff_ns: int, batch_size: int, report: RetentionReport, *, exact: bool
) -> None:
    with pg_errors("listing the blocks partitions"):
        partitioned = await blocks_partitioned(lake.pool)
        partitions = await list_block_partitions(lake.pool) if partitioned else []
    if not partitioned:
        report.blocks += await _delete_block_rows(lake, "blocks", cutoff_ns, batch_size)
        return
    for partition in partitions:
        if partition.is_day and partition.end_ns is not None and partition.end_ns <= cutoff_ns:
            try:
                with pg_errors(f"detaching {partition.name}"):
                    await detach_block_partition(lake.pool, partition)
            except MetadataStoreError as exc:
                if not isinstance(exc.__cause__, asyncpg.LockNotAvailableError):
                    raise
                _log.warning("%s not detached now (blocks is busy); the next retention run retries", partition.name)
    for table in await list_retired_block_tables(lake.pool):  # this run's and any a crash left
        rows = await _finish_retired_table(lake, table, batch_size)
        report.blocks_in_dropped_partitions += rows
        report.block_partitions_dropped += 1
        report.blocks += rows
    for partition in partitions:
        if _needs_row_deletes(partition, cutoff_ns, exact=exact):
            report.blocks += await _delete_block_rows(lake, partition.name, cutoff_ns, batch_size)


def _needs_row_deletes(partition: BlockPartition, cutoff_ns: int, *, exact: bool) -> bool:
    """The default partition, foreign partitions, and (``exact``) the day partition the cutoff falls in."""
    if partition.name == DEFAULT_PARTITION or partition.begin_ns is None or partition.end_ns is None:
        return True
    return exact and partition.begin_ns <= cutoff_ns < partition.end_ns


async def _delete_orphans(lake: Lakehouse, sql: str, cutoff_ns: int, batch_size: int, what: str) -> int:
    deleted = 0
    while True:
        with pg_errors(f"deleting expired {what}"):
            rows = await lake.pool.fetch(sql, to_datetime(cutoff_ns), batch_size)
        deleted += len(rows)
        if len(rows) < batch_size:
            return deleted


_EMPTY_STREAMS = (
    "DELETE FROM streams WHERE stream_id IN (SELECT s.stream_id FROM streams s WHERE s.insert_time <= $1"
    " AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.stream_id = s.stream_id) LIMIT $2) RETURNING stream_id"
)
_EMPTY_PROCESSES = (
    "DELETE FROM processes WHERE process_id IN (SELECT p.process_id FROM processes p WHERE p.insert_time <= $1"
    " AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.process_id = p.process_id) LIMIT $2) RETURNING process_id"
)


async def _retire_partitions(
    lake: Lakehouse, cutoff_ns: int, batch_size: int, views: tuple[str, ...], *, only: bool
) -> int:
    """Retire the partitions ending before the cutoff: of ``views`` when ``only``, else of every other view set."""
    retired = 0
    condition = "view_set_name = ANY($3::text[])" if only else "NOT (view_set_name = ANY($3::text[]))"
    while True:
        async with lake.pool.acquire() as conn, conn.transaction():
            with pg_errors("selecting expired partitions"):
                rows = await conn.fetch(
                    f"SELECT {_PARTITION_COLUMNS} FROM lakehouse_partitions"  # noqa: S608 - constant columns
                    f" WHERE end_insert_time < $1 AND {condition}"
                    " ORDER BY end_insert_time LIMIT $2 FOR UPDATE SKIP LOCKED",
                    to_datetime(cutoff_ns),
                    batch_size,
                    list(views),
                )
            partitions = [Partition.from_row(r) for r in rows]
            count = await retire_partition_rows(conn, partitions, lake.now_ns() + lake.settings.replaced_file_ttl_ns)
        retired += count
        lake.stats.partitions_retired += count
        if len(rows) < batch_size:
            return retired


async def apply_retention(
    lake: Lakehouse, retention: int | RetentionPolicy, *, batch_size: int = 1000
) -> RetentionReport:
    """Delete everything older than its retention (relative to the lakehouse clock).

    Args:
        lake: the lakehouse.
        retention: days kept for everything (``MICROMEGAS_RETENTION_DAYS``), or a policy with
            per-view-set days (raw blocks then kept for the longest of them).
        batch_size: rows per statement and objects per delete request.

    Returns:
        How many blocks, streams, processes and partitions were deleted.

    Raises:
        MetadataStoreError: PostgreSQL failed (what was committed stays deleted).
        ObjectStoreError: the store failed.
    """
    policy = retention if isinstance(retention, RetentionPolicy) else RetentionPolicy(retention)
    unknown = [name for name in policy.overridden if name not in lake.views]
    if unknown:
        _log.warning("retention overrides name no known view set: %s", ", ".join(unknown))
    now = lake.now_ns()
    raw_cutoff = now - policy.raw_days * NS_PER_DAY
    default_cutoff = now - policy.default_days * NS_PER_DAY
    report = RetentionReport()
    await _delete_blocks(lake, raw_cutoff, batch_size, report, exact=policy.exact)
    report.streams = await _delete_orphans(lake, _EMPTY_STREAMS, raw_cutoff, batch_size, "streams")
    report.processes = await _delete_orphans(lake, _EMPTY_PROCESSES, raw_cutoff, batch_size, "processes")
    report.partitions = await _retire_partitions(lake, default_cutoff, batch_size, policy.overridden, only=False)
    for view, days in policy.by_view:
        report.partitions += await _retire_partitions(lake, now - days * NS_PER_DAY, batch_size, (view,), only=True)
    report.query_audit = await delete_audit_before(lake.pool, to_datetime(default_cutoff), batch_size=batch_size)
    return report


async def delete_expired_temporary_files(lake: Lakehouse, *, batch_size: int = 1000) -> int:
    """Delete the objects of ``temporary_files`` whose expiration has passed, then their rows.

    Returns:
        The number of files deleted.

    Raises:
        MetadataStoreError: PostgreSQL failed.
        ObjectStoreError: the store failed.
    """
    now = to_datetime(lake.now_ns())
    deleted = 0
    while True:
        async with lake.pool.acquire() as conn, conn.transaction():
            with pg_errors("selecting expired temporary files"):
                rows = await conn.fetch(
                    "SELECT ctid, file_path FROM temporary_files WHERE expiration <= $1"
                    " LIMIT $2 FOR UPDATE SKIP LOCKED",
                    now,
                    batch_size,
                )
            if not rows:
                return deleted
            await lake.store.delete_many(r["file_path"] for r in rows)
            with pg_errors("deleting temporary files"):
                await conn.execute("DELETE FROM temporary_files WHERE ctid = ANY($1::tid[])", [r["ctid"] for r in rows])
        deleted += len(rows)
