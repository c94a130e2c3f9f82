"""``log_stats``: log counts per minute, process, level and target (global, update group 3000).

A SQL-batch view over the global ``log_entries`` rows whose ``insert_time`` lies in the
partition's insert range: ``date_bin('1 minute', time)`` as ``time_bin`` and ``count(*)``.
Its source count is that number of ``log_entries`` rows, so a partition built before
``log_entries`` caught up is rebuilt by a later pass. Merging sums the counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._parquet_files import count_in_range, read_partition_files
from .._partitions import find_overlapping
from .._time_range import NS_PER_DAY, NS_PER_MINUTE, TimeRange
from .._view_set import DICT_STR, GLOBAL_INSTANCE, TIMESTAMP, ViewSet, schema_hash
from ._aggregate import sum_by
from ._columns import timestamps
from ._log_entries import LOG_ENTRIES_SCHEMA, LogEntriesView

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["LOG_STATS_SCHEMA", "LogStatsView"]

LOG_STATS_SCHEMA = pa.schema(
    [
        pa.field("time_bin", TIMESTAMP, nullable=False),
        pa.field("process_id", DICT_STR, nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
_KEYS = ("time_bin", "process_id", "level", "target")
_SOURCE = LogEntriesView


class LogStatsView(ViewSet):
    """Per-minute log statistics computed from the global ``log_entries`` partitions."""

    name: ClassVar[str] = "log_stats"
    schema: ClassVar[pa.Schema] = LOG_STATS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(LOG_STATS_SCHEMA)
    update_group: ClassVar[int | None] = 3000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("time_bin", "time_bin")
    sort_order: ClassVar[tuple[str, ...]] = _KEYS

    async def _sources(self, lake: Lakehouse, insert_range: TimeRange) -> list:  # type: ignore[type-arg]
        self.check_instance(GLOBAL_INSTANCE)
        return await find_overlapping(lake.pool, _SOURCE.name, GLOBAL_INSTANCE, _SOURCE.file_schema_hash, insert_range)

    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """Number of global ``log_entries`` rows inserted in ``insert_range``."""
        partitions = await self._sources(lake, insert_range)
        total = sum(p.num_rows for p in partitions if insert_range.contains(p.insert_range))
        partial = [p for p in partitions if not insert_range.contains(p.insert_range)]
        if partial:
            rows = await read_partition_files(lake.store, partial, LOG_ENTRIES_SCHEMA, ["insert_time"])
            total += count_in_range(rows.column("insert_time"), insert_range.begin_ns, insert_range.end_ns)
        return total

    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """Count the range's log entries per minute, process, level and target."""
        partitions = await self._sources(lake, insert_range)
        columns = ["insert_time", "time", "process_id", "level", "target"]
        rows = await read_partition_files(lake.store, partitions, LOG_ENTRIES_SCHEMA, columns)
        inserted = rows.column("insert_time").cast(pa.int64())
        mask = pc.and_(pc.greater_equal(inserted, insert_range.begin_ns), pc.less(inserted, insert_range.end_ns))
        rows = rows.filter(mask)
        times = np.asarray(rows.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        binned = rows.append_column("time_bin", timestamps(times - times % NS_PER_MINUTE))
        counted = binned.append_column("one", pa.array(np.ones(rows.num_rows, np.int64)))
        return sum_by(counted, _KEYS, "one", "count", LOG_STATS_SCHEMA), rows.num_rows

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Sum the counts of identical keys."""
        rows = pa.concat_tables(tables) if tables else LOG_STATS_SCHEMA.empty_table()
        return sum_by(rows, _KEYS, "count", "count", LOG_STATS_SCHEMA)
