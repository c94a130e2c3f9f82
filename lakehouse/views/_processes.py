"""``processes``: one row per process with blocks in the partition's insert range (global).

A SQL-batch view over the ``blocks`` rows of the range (read from PostgreSQL with the same join
as the ``blocks`` view): the process's columns from its first block, plus the latest block
``insert_time`` (``last_update_time``), ``end_ticks`` and ``end_time``. Partitions merge with the
same aggregation over their rows. A process with no blocks does not appear (as in Micromegas).

Queries see **one row per process**: the rows that several partitions (days, hours, …) hold
for one process are folded at query time with the same aggregation (``fold_frame``), so
``last_update_time`` is the latest of them. Sirius appends ``service_name``
(``_columns.service_name_of``: OTel ``service.name``, else the ``service.name`` property, else
``exe``).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import datafusion
import pyarrow as pa

from .._block_source import SourceBatch
from .._time_range import NS_PER_DAY
from .._view_set import DICT_BIN, TIMESTAMP, BlockViewSet, schema_hash
from ._aggregate import first_and_max, fold_frame
from ._blocks import blocks_table
from ._columns import service_name_of

__all__ = ["PROCESSES_SCHEMA", "ProcessesView"]

PROCESSES_SCHEMA = pa.schema(
    [
        pa.field("process_id", pa.string(), nullable=False),
        pa.field("exe", pa.string(), nullable=False),
        pa.field("username", pa.string(), nullable=False),
        pa.field("realname", pa.string(), nullable=False),
        pa.field("computer", pa.string(), nullable=False),
        pa.field("distro", pa.string(), nullable=False),
        pa.field("cpu_brand", pa.string(), nullable=False),
        pa.field("tsc_frequency", pa.int64(), nullable=False),
        pa.field("start_time", TIMESTAMP, nullable=False),
        pa.field("start_ticks", pa.int64(), nullable=False),
        pa.field("insert_time", TIMESTAMP, nullable=False),
        pa.field("parent_process_id", pa.string(), nullable=False),
        pa.field("properties", DICT_BIN, nullable=False),
        pa.field("last_update_time", TIMESTAMP, nullable=False),
        pa.field("last_block_end_ticks", pa.int64(), nullable=False),
        pa.field("last_block_end_time", TIMESTAMP, nullable=False),
        # Sirius: the process's service (OTel service.name, else the service.name property, else exe).
        pa.field("service_name", pa.string(), nullable=False),
    ]
)
_MICROMEGAS_SCHEMA = pa.schema(list(PROCESSES_SCHEMA)[:-1])

_DESCRIPTIVE = (
    "exe",
    "username",
    "realname",
    "computer",
    "distro",
    "cpu_brand",
    "tsc_frequency",
    "start_time",
    "start_ticks",
    "insert_time",
    "parent_process_id",
    "properties",
)
_LAST = ("last_update_time", "last_block_end_ticks", "last_block_end_time")


class ProcessesView(BlockViewSet):
    """Processes seen in blocks (SQL-batch view over ``blocks``, update group 2000)."""

    name: ClassVar[str] = "processes"
    schema: ClassVar[pa.Schema] = PROCESSES_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(PROCESSES_SCHEMA)
    update_group: ClassVar[int | None] = 2000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("insert_time", "last_update_time")
    sort_order: ClassVar[tuple[str, ...]] = ("process_id",)
    counts_blocks: ClassVar[bool] = True
    needs_payloads: ClassVar[bool] = False

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Group the range's blocks by process."""
        blocks = blocks_table(batch)
        firsts = {"process_id": "process_id"} | {c: f"processes.{c}" for c in _DESCRIPTIVE}
        maxes = dict(zip(_LAST, ("insert_time", "end_ticks", "end_time"), strict=True))
        grouped = first_and_max(blocks, "process_id", firsts, maxes, _MICROMEGAS_SCHEMA)
        processes = (batch.processes[uuid.UUID(p)] for p in grouped.column("process_id").to_pylist())
        names = pa.array([service_name_of(p.exe, p.properties) for p in processes], pa.string())
        return grouped.append_column(PROCESSES_SCHEMA.field("service_name"), names)

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Group partitions' rows by process again."""
        rows = pa.concat_tables(tables) if tables else PROCESSES_SCHEMA.empty_table()
        firsts = {c: c for c in ("process_id", *_DESCRIPTIVE, "service_name")}
        return first_and_max(rows, "process_id", firsts, {c: c for c in _LAST}, PROCESSES_SCHEMA)

    def serve(self, frame: datafusion.DataFrame) -> datafusion.DataFrame:
        """One row per process over all the partitions read."""
        return fold_frame(frame, "process_id", (*_DESCRIPTIVE, "service_name"), _LAST, PROCESSES_SCHEMA)
