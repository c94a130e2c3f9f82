"""Retention: delete data older than ``MICROMEGAS_RETENTION_DAYS``, objects and rows alike.

Order as in Micromegas (``micromegas-query.md`` §8), each step in batches of ``batch_size`` rows
per transaction so a large backlog never holds long locks:

1. blocks with ``insert_time <= cutoff``: payload objects deleted, then the rows (same
   transaction; a crash in between leaves rows whose objects are gone, and the next run
   deletes them);
2. streams with no blocks left and ``insert_time <= cutoff``;
3. processes with no streams left and ``insert_time <= cutoff``;
4. partitions (every view, every instance) with ``end_insert_time < cutoff``: rows deleted,
   files moved to ``temporary_files`` (queries planned earlier may still read them);
5. ``delete_expired_temporary_files``: objects of expired temporary files, then their rows;
6. query audit rows (``flightsql_query_audit``) of queries started before the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._block_source import block_object_key
from ._partitions import Partition, retire_partition_rows
from ._pool import pg_errors
from ._query_audit import delete_audit_before
from ._time_range import NS_PER_DAY, to_datetime

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = ["RetentionReport", "apply_retention", "delete_expired_temporary_files"]

_PARTITION_COLUMNS = (
    "view_set_name, view_instance_id, begin_insert_time, end_insert_time, min_event_time, max_event_time,"
    " updated, file_path, file_size, file_schema_hash, source_data_hash, num_rows, partition_format_version,"
    " sort_order, max_sort_key_time"
)


@dataclass(slots=True)
class RetentionReport:
    """Counts of what one retention run deleted."""

    blocks: int = 0
    streams: int = 0
    processes: int = 0
    partitions: int = 0
    temporary_files: int = 0
    query_audit: int = 0


async def _delete_blocks(lake: Lakehouse, cutoff_ns: int, batch_size: int) -> int:
    deleted = 0
    while True:
        async with lake.pool.acquire() as conn, conn.transaction():
            with pg_errors("selecting expired blocks"):
                rows = await conn.fetch(
                    "SELECT block_id, stream_id, process_id FROM blocks WHERE insert_time <= $1"
                    " ORDER BY insert_time LIMIT $2 FOR UPDATE SKIP LOCKED",
                    to_datetime(cutoff_ns),
                    batch_size,
                )
            if not rows:
                return deleted
            await lake.store.delete_many(block_object_key(r["process_id"], r["stream_id"], r["block_id"]) for r in rows)
            with pg_errors("deleting expired blocks"):
                await conn.execute("DELETE FROM blocks WHERE block_id = ANY($1::uuid[])", [r["block_id"] for r in rows])
        deleted += len(rows)


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


async def _retire_partitions(lake: Lakehouse, cutoff_ns: int, batch_size: int) -> int:
    retired = 0
    while True:
        async with lake.pool.acquire() as conn, conn.transaction():
            with pg_errors("selecting expired partitions"):
                rows = await conn.fetch(
                    f"SELECT {_PARTITION_COLUMNS} FROM lakehouse_partitions"  # noqa: S608 - constant columns
                    " WHERE end_insert_time < $1 ORDER BY end_insert_time LIMIT $2 FOR UPDATE SKIP LOCKED",
                    to_datetime(cutoff_ns),
                    batch_size,
                )
            partitions = [Partition.from_row(r) for r in rows]
            count = await retire_partition_rows(conn, partitions, lake.now_ns() + lake.settings.replaced_file_ttl_ns)
        retired += count
        lake.stats.partitions_retired += count
        if len(rows) < batch_size:
            return retired


async def apply_retention(lake: Lakehouse, retention_days: int, *, batch_size: int = 1000) -> RetentionReport:
    """Delete everything older than ``retention_days`` (relative to the lakehouse clock).

    Returns:
        How many blocks, streams, processes and partitions were deleted.

    Raises:
        MetadataStoreError: PostgreSQL failed (what was committed stays deleted).
        ObjectStoreError: the store failed.
    """
    cutoff = lake.now_ns() - retention_days * NS_PER_DAY
    report = RetentionReport()
    report.blocks = await _delete_blocks(lake, cutoff, batch_size)
    report.streams = await _delete_orphans(lake, _EMPTY_STREAMS, cutoff, batch_size, "streams")
    report.processes = await _delete_orphans(lake, _EMPTY_PROCESSES, cutoff, batch_size, "processes")
    report.partitions = await _retire_partitions(lake, cutoff, batch_size)
    report.query_audit = await delete_audit_before(lake.pool, to_datetime(cutoff), batch_size=batch_size)
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
