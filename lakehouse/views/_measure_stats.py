"""``measure_stats``: metric statistics per minute, process, target, name and unit (global, group 3000).

A batch view over the global ``measures`` rows whose ``insert_time`` lies in the partition's
insert range, like ``log_stats`` over ``log_entries``: ``date_bin('1 minute', time)`` as
``time_bin``, the number of rows, the sum, minimum and maximum of ``value``, the number of NaN
values, and the number and sum of the non-null ``delta`` values. Its source count is that number
of ``measures`` rows, so a partition built before ``measures`` caught up is rebuilt by a later
pass. Merging adds counts and sums and keeps the extreme minima and maxima.

The statistics are computed by DataFusion, the engine that answers queries. Its grouped
``min``/``max`` of floats mishandle NaN (DataFusion 55: ``max`` of 1, NaN, -3 in one group is
-3, where the ungrouped ``max`` and DuckDB say NaN), so the minimum of per-minute minima would
not be the minimum of the rows once a NaN is among them: ``value_nans`` counts them, and
``_log_stats_rewrite.py`` plans ``avg``/``min``/``max``/``count``/``sum`` over ``measures`` on
this view only when the session's ``measure_stats`` holds no NaN (without NaN, min and max of
minima and maxima are those of the rows).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from .._parquet_files import count_in_range, read_partition_files
from .._partitions import find_overlapping
from .._sql_functions import new_session_context
from .._time_range import NS_PER_DAY, TimeRange
from .._view_set import DICT_STR, GLOBAL_INSTANCE, TIMESTAMP, ViewSet, schema_hash
from ._measures import MEASURES_SCHEMA, MeasuresView

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["MEASURE_STATS_SCHEMA", "MeasureStatsView"]

MEASURE_STATS_SCHEMA = pa.schema(
    [
        pa.field("time_bin", TIMESTAMP, nullable=False),
        pa.field("process_id", DICT_STR, nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("unit", DICT_STR, nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("value_sum", pa.float64(), nullable=False),
        pa.field("value_min", pa.float64(), nullable=False),
        pa.field("value_max", pa.float64(), nullable=False),
        pa.field("value_nans", pa.int64(), nullable=False),
        pa.field("delta_count", pa.int64(), nullable=False),
        pa.field("delta_sum", pa.float64()),
    ]
)
_KEYS = ("time_bin", "process_id", "target", "name", "unit")
_SOURCE = MeasuresView
_GROUP = ", ".join(_KEYS)
_BUILD_SQL = (
    f"SELECT {_GROUP}, count(*) AS count, sum(value) AS value_sum, min(value) AS value_min,"  # noqa: S608
    " max(value) AS value_max, count(*) FILTER (WHERE isnan(value)) AS value_nans,"
    " count(delta) AS delta_count, sum(delta) AS delta_sum"
    f" FROM (SELECT date_bin(INTERVAL '1 minute', time) AS time_bin, * FROM rows) GROUP BY {_GROUP} ORDER BY {_GROUP}"
)
_MERGE_SQL = (
    f"SELECT {_GROUP}, sum(count) AS count, sum(value_sum) AS value_sum, min(value_min) AS value_min,"  # noqa: S608
    " max(value_max) AS value_max, sum(value_nans) AS value_nans,"
    " sum(delta_count) AS delta_count, sum(delta_sum) AS delta_sum"
    f" FROM rows GROUP BY {_GROUP} ORDER BY {_GROUP}"
)


def _aggregate(rows: pa.Table, sql: str) -> pa.Table:
    """``sql`` over ``rows`` (registered as ``rows``) in a DataFusion context, in the view's schema."""
    if rows.num_rows == 0:
        return MEASURE_STATS_SCHEMA.empty_table()
    ctx = new_session_context(target_partitions=1)
    ctx.register_record_batches("rows", [rows.to_batches()])
    return ctx.sql(sql).to_arrow_table().select(MEASURE_STATS_SCHEMA.names).cast(MEASURE_STATS_SCHEMA)


class MeasureStatsView(ViewSet):
    """Per-minute metric statistics computed from the global ``measures`` partitions."""

    name: ClassVar[str] = "measure_stats"
    schema: ClassVar[pa.Schema] = MEASURE_STATS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(MEASURE_STATS_SCHEMA)
    update_group: ClassVar[int | None] = 3000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("time_bin", "time_bin")
    sort_order: ClassVar[tuple[str, ...]] = _KEYS

    async def _sources(self, lake: Lakehouse, insert_range: TimeRange) -> list:  # type: ignore[type-arg]
        self.check_instance(GLOBAL_INSTANCE)
        return await find_overlapping(lake.pool, _SOURCE.name, GLOBAL_INSTANCE, _SOURCE.file_schema_hash, insert_range)

    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """Number of global ``measures`` rows inserted in ``insert_range``."""
        partitions = await self._sources(lake, insert_range)
        total = sum(p.num_rows for p in partitions if insert_range.contains(p.insert_range))
        partial = [p for p in partitions if not insert_range.contains(p.insert_range)]
        if partial:
            rows = await read_partition_files(lake.store, partial, MEASURES_SCHEMA, ["insert_time"])
            total += count_in_range(rows.column("insert_time"), insert_range.begin_ns, insert_range.end_ns)
        return total

    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """The range's measures summarised per minute, process, target, name and unit."""
        partitions = await self._sources(lake, insert_range)
        columns = ["insert_time", "time", "process_id", "target", "name", "unit", "value", "delta"]
        rows = await read_partition_files(lake.store, partitions, MEASURES_SCHEMA, columns)
        inserted = rows.column("insert_time").cast(pa.int64())
        mask = pc.and_(pc.greater_equal(inserted, insert_range.begin_ns), pc.less(inserted, insert_range.end_ns))
        rows = rows.filter(mask)
        return await asyncio.to_thread(_aggregate, rows, _BUILD_SQL), rows.num_rows

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Add the counts and sums of identical keys, keep their extreme minima and maxima."""
        rows = pa.concat_tables(tables) if tables else MEASURE_STATS_SCHEMA.empty_table()
        return _aggregate(rows, _MERGE_SQL)
