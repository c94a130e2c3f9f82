"""Retiring partitions: removing their rows and sending their files to expiry.

The three ways an administrator or the view-DDL code retires partitions: every partition of an
instance inside an insert range (``retire_partitions``), the one stored in a file
(``retire_partition_by_file``), and the one with an exact identity
(``retire_partition_by_metadata``). Each runs in one transaction under the instance's advisory
lock. Retired files are not deleted at once: they go to ``temporary_files`` (queries planned
before the retirement may still read them) and the hourly cleanup removes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import LakehouseError
from ._partitions import Partition, instance_lock_key, retire_partition_rows
from ._pool import pg_errors
from ._time_range import TimeRange

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse
    from ._materialize import LogSink

__all__ = ["retire_partition_by_file", "retire_partition_by_metadata", "retire_partitions"]


async def _retire(lake: Lakehouse, view_set: str, instance: str, select: str, *args: object) -> list[Partition]:
    async with lake.pool.acquire() as conn, conn.transaction():
        with pg_errors(f"retiring partitions of {view_set}/{instance}"):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", instance_lock_key(view_set, instance))
            sql = (
                "SELECT view_set_name, view_instance_id, begin_insert_time, end_insert_time, min_event_time,"  # noqa: S608
                " max_event_time, updated, file_path, file_size, file_schema_hash, source_data_hash, num_rows,"
                " partition_format_version, sort_order, max_sort_key_time FROM lakehouse_partitions"
                f" WHERE view_set_name = $1 AND view_instance_id = $2 AND {select}"
            )
            rows = await conn.fetch(
                sql,
                view_set,
                instance,
                *args,
            )
        partitions = [Partition.from_row(r) for r in rows]
        lake.stats.partitions_retired += await retire_partition_rows(
            conn, partitions, lake.now_ns() + lake.settings.replaced_file_ttl_ns
        )
    return partitions


async def retire_partitions(
    lake: Lakehouse, view_set: str, instance: str, insert_range: TimeRange, log: LogSink | None = None
) -> list[Partition]:
    """Retire the partitions of one instance whose insert range lies inside ``insert_range``.

    Returns:
        The retired partitions (their files expire after ``replaced_file_ttl_ns``).

    Raises:
        MetadataStoreError: PostgreSQL failed (nothing retired).
    """
    retired = await _retire(
        lake,
        view_set,
        instance,
        "begin_insert_time >= $3 AND end_insert_time <= $4",
        insert_range.begin,
        insert_range.end,
    )
    if log is not None:
        for p in retired:
            log(f"retired partition {p.file_path or '(empty)'} {p.insert_range}")
        log(f"retired {len(retired)} partition(s) of {view_set}/{instance}")
    return retired


async def retire_partition_by_file(lake: Lakehouse, file_path: str) -> str:
    """Retire the partition stored in ``file_path``: ``SUCCESS: …`` or ``ERROR: …``."""
    try:
        with pg_errors(f"finding partition {file_path}"):
            row = await lake.pool.fetchrow(
                "SELECT view_set_name, view_instance_id FROM lakehouse_partitions WHERE file_path = $1", file_path
            )
        if row is None:
            return f"ERROR: no partition with file {file_path}"
        retired = await _retire(lake, row[0], row[1], "file_path = $3", file_path)
    except LakehouseError as exc:
        return f"ERROR: {exc}"
    if not retired:
        return f"ERROR: no partition with file {file_path}"
    return f"SUCCESS: retired partition {file_path}"


async def retire_partition_by_metadata(
    lake: Lakehouse, view_set: str, instance: str, insert_range: TimeRange, file_schema_hash: bytes | None = None
) -> str:
    """Retire the partition with exactly this identity: ``SUCCESS: …`` or ``ERROR: …``.

    Args:
        lake: the lakehouse.
        view_set: its view set.
        instance: its instance id.
        insert_range: its exact ``[begin_insert_time, end_insert_time)``.
        file_schema_hash: its schema hash (any when None, the 4-argument form).
    """
    clause = "begin_insert_time = $3 AND end_insert_time = $4"
    args: list[object] = [insert_range.begin, insert_range.end]
    if file_schema_hash is not None:
        clause += " AND file_schema_hash = $5"
        args.append(file_schema_hash)
    try:
        retired = await _retire(lake, view_set, instance, clause, *args)
    except LakehouseError as exc:
        return f"ERROR: {exc}"
    if not retired:
        return f"ERROR: no partition of {view_set}/{instance} over {insert_range}"
    return f"SUCCESS: retired {len(retired)} partition(s) of {view_set}/{instance} over {insert_range}"
