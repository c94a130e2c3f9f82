"""Partition administration: the lakehouse side of the admin SQL functions.

Plain async functions (``view_set_infos`` here; ``retire_partitions``,
``retire_partition_by_file``, ``retire_partition_by_metadata``, ``list_partitions`` and
``materialize_partitions`` live with their concepts) and ``LakehousePartitionAdmin``, which
wraps them in the ``PartitionAdmin`` shape the SQL functions use (times in Unix ns, a log
callback for long operations, ``SUCCESS: …`` / ``ERROR: …`` strings as Micromegas returns).
Retired files are not deleted at once: they go to ``temporary_files`` (queries planned before
the retirement may still read them) and the hourly cleanup removes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from ._materialize import LogSink, materialize_partitions
from ._partition_retirement import retire_partition_by_file, retire_partition_by_metadata, retire_partitions
from ._partitions import Partition, list_partitions
from ._time_range import NS_PER_SECOND, TimeRange
from ._view_ddl_execution import execute_view_ddl
from ._view_definitions import definitions_table, list_definitions
from ._view_set import TIMESTAMP, ViewSetInfo

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse
    from ._view_ddl import ViewDdl

__all__ = [
    "LIST_PARTITIONS_SCHEMA",
    "LIST_VIEW_SETS_SCHEMA",
    "LakehousePartitionAdmin",
    "partitions_table",
    "retire_partition_by_file",
    "retire_partition_by_metadata",
    "retire_partitions",
    "view_set_infos",
]

LIST_PARTITIONS_SCHEMA = pa.schema(
    [
        pa.field("view_set_name", pa.string(), nullable=False),
        pa.field("view_instance_id", pa.string(), nullable=False),
        pa.field("begin_insert_time", TIMESTAMP, nullable=False),
        pa.field("end_insert_time", TIMESTAMP, nullable=False),
        pa.field("min_event_time", TIMESTAMP),
        pa.field("max_event_time", TIMESTAMP),
        pa.field("updated", TIMESTAMP, nullable=False),
        pa.field("file_path", pa.string()),
        pa.field("file_size", pa.int64(), nullable=False),
        pa.field("file_schema_hash", pa.binary(), nullable=False),
        pa.field("source_data_hash", pa.binary(), nullable=False),
        pa.field("num_rows", pa.int64(), nullable=False),
        pa.field("partition_format_version", pa.int32(), nullable=False),
        pa.field("sort_order", pa.list_(pa.string())),
        pa.field("max_sort_key_time", TIMESTAMP),
    ]
)
"""Rows of ``list_partitions()`` (``micromegas-query.md`` §9.1)."""

LIST_VIEW_SETS_SCHEMA = pa.schema(
    [
        pa.field("view_set_name", pa.string(), nullable=False),
        pa.field("current_schema_hash", pa.binary(), nullable=False),
        pa.field("schema", pa.string(), nullable=False),
        pa.field("has_view_maker", pa.bool_(), nullable=False),
        pa.field("global_instance_available", pa.bool_(), nullable=False),
    ]
)
"""Rows of ``list_view_sets()``."""


def partitions_table(partitions: list[Partition]) -> pa.Table:
    """Partitions as a ``LIST_PARTITIONS_SCHEMA`` table."""
    rows = [
        {
            "view_set_name": p.view_set_name,
            "view_instance_id": p.view_instance_id,
            "begin_insert_time": p.begin_insert_ns,
            "end_insert_time": p.end_insert_ns,
            "min_event_time": p.min_event_ns,
            "max_event_time": p.max_event_ns,
            "updated": p.updated_ns,
            "file_path": p.file_path,
            "file_size": p.file_size,
            "file_schema_hash": p.file_schema_hash,
            "source_data_hash": p.source_data_hash,
            "num_rows": p.num_rows,
            "partition_format_version": p.partition_format_version,
            "sort_order": None if p.sort_order is None else list(p.sort_order),
            "max_sort_key_time": p.max_sort_key_ns,
        }
        for p in partitions
    ]
    return pa.Table.from_pylist(rows, schema=LIST_PARTITIONS_SCHEMA)


def view_set_infos(lake: Lakehouse) -> list[ViewSetInfo]:
    """One ``list_view_sets()`` row per view set."""
    return [view.info() for view in lake.views]


class LakehousePartitionAdmin:
    """The lakehouse behind the admin SQL functions (``PartitionAdmin`` of ``_sql_admin``).

    Args:
        lake: the lakehouse.
    """

    def __init__(self, lake: Lakehouse) -> None:
        self._lake = lake

    async def list_partitions(self) -> pa.Table:
        """All partition rows."""
        return partitions_table(await list_partitions(self._lake.pool))

    async def list_view_sets(self) -> pa.Table:
        """One row per view set."""
        rows = [
            {
                "view_set_name": i.view_set_name,
                "current_schema_hash": i.current_schema_hash,
                "schema": i.schema,
                "has_view_maker": i.has_view_maker,
                "global_instance_available": i.global_instance_available,
            }
            for i in view_set_infos(self._lake)
        ]
        return pa.Table.from_pylist(rows, schema=LIST_VIEW_SETS_SCHEMA)

    async def list_view_set_definitions(self) -> pa.Table:
        """The stored view DDL definitions (``list_view_set_definitions()``)."""
        return definitions_table(await list_definitions(self._lake.pool))

    async def execute_view_ddl(self, ddl: ViewDdl, updated_by: str | None) -> pa.Table:
        """Apply a ``CREATE``/``DROP MATERIALIZED VIEW``; its one status row."""
        return await execute_view_ddl(self._lake, ddl, updated_by)

    async def retire_partitions(
        self, view_set: str, instance_id: str, begin_ns: int, end_ns: int, log: LogSink
    ) -> None:
        """Retire the partitions of one instance inside ``[begin, end)``."""
        await retire_partitions(self._lake, view_set, instance_id, TimeRange(begin_ns, end_ns), log)

    async def materialize_partitions(
        self, view_set: str, begin_ns: int, end_ns: int, partition_delta_seconds: int, log: LogSink
    ) -> None:
        """Bring global partitions over ``[begin, end)`` up to date, cut at the present (said in ``log``)."""
        await materialize_partitions(
            self._lake,
            view_set,
            TimeRange(begin_ns, end_ns),
            partition_delta_seconds * NS_PER_SECOND,
            log=log,
            until_now=True,
        )

    async def regenerate_partitions(
        self, view_set: str, begin_ns: int, end_ns: int, partition_delta_seconds: int, log: LogSink
    ) -> None:
        """Rebuild global partitions over ``[begin, end)`` from source, cut at the present (said in ``log``)."""
        await materialize_partitions(
            self._lake,
            view_set,
            TimeRange(begin_ns, end_ns),
            partition_delta_seconds * NS_PER_SECOND,
            log=log,
            force=True,
            until_now=True,
        )

    async def retire_partition_by_file(self, file_path: str) -> str:
        """``SUCCESS: …`` / ``ERROR: …``."""
        return await retire_partition_by_file(self._lake, file_path)

    async def retire_partition_by_metadata(
        self, view_set: str, instance_id: str, begin_ns: int, end_ns: int, file_schema_hash: bytes | None
    ) -> str:
        """``SUCCESS: …`` / ``ERROR: …``."""
        return await retire_partition_by_metadata(
            self._lake, view_set, instance_id, TimeRange(begin_ns, end_ns), file_schema_hash
        )
