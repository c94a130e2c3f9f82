"""``span_stats``: span counts and durations per start minute, process, service, name, kind and status.

A batch view over the global ``otel_spans`` rows whose ``insert_time`` lies in the partition's
insert range, like ``log_stats`` over ``log_entries`` (global, update group 3000, after
``otel_spans``): ``date_bin('1 minute', start_time)`` as ``time_bin``, the number of spans and
the sum, minimum and maximum of ``duration`` (integer nanoseconds, so every statistic is exact
and the minimum of per-minute minima is the minimum of the spans). Its source count is that
number of ``otel_spans`` rows, so a partition built before ``otel_spans`` caught up is rebuilt by
a later pass. Merging adds counts and sums and keeps the extreme minima and maxima.

``_log_stats_rewrite.py`` plans ``count``/``sum``/``min``/``max`` of spans grouped and filtered
by those keys on this view (``SELECT service_name, count(*) FROM otel_spans WHERE status =
'ERROR' GROUP BY service_name``) when the answer is the same.
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
from ._otel_spans import OTEL_SPANS_SCHEMA, OtelSpansView

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["SPAN_STATS_SCHEMA", "SpanStatsView"]

SPAN_STATS_SCHEMA = pa.schema(
    [
        pa.field("time_bin", TIMESTAMP, nullable=False),
        pa.field("process_id", DICT_STR, nullable=False),
        pa.field("service_name", DICT_STR, nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("kind", DICT_STR, nullable=False),
        pa.field("status", DICT_STR, nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("duration_sum", pa.int64(), nullable=False),
        pa.field("duration_min", pa.int64(), nullable=False),
        pa.field("duration_max", pa.int64(), nullable=False),
    ]
)
_KEYS = ("time_bin", "process_id", "service_name", "name", "kind", "status")
_SOURCE = OtelSpansView
_GROUP = ", ".join(_KEYS)
_BUILD_SQL = (
    f"SELECT {_GROUP}, count(*) AS count, sum(duration) AS duration_sum,"  # noqa: S608
    " min(duration) AS duration_min, max(duration) AS duration_max"
    " FROM (SELECT date_bin(INTERVAL '1 minute', start_time) AS time_bin, * FROM rows)"
    f" GROUP BY {_GROUP} ORDER BY {_GROUP}"
)
_MERGE_SQL = (
    f"SELECT {_GROUP}, sum(count) AS count, sum(duration_sum) AS duration_sum,"  # noqa: S608
    " min(duration_min) AS duration_min, max(duration_max) AS duration_max"
    f" FROM rows GROUP BY {_GROUP} ORDER BY {_GROUP}"
)


def _aggregate(rows: pa.Table, sql: str) -> pa.Table:
    """``sql`` over ``rows`` (registered as ``rows``) in a DataFusion context, in the view's schema."""
    if rows.num_rows == 0:
        return SPAN_STATS_SCHEMA.empty_table()
    ctx = new_session_context(target_partitions=1)
    ctx.register_record_batches("rows", [rows.to_batches()])
    return ctx.sql(sql).to_arrow_table().select(SPAN_STATS_SCHEMA.names).cast(SPAN_STATS_SCHEMA)


class SpanStatsView(ViewSet):
    """Per-minute span statistics computed from the global ``otel_spans`` partitions."""

    name: ClassVar[str] = "span_stats"
    schema: ClassVar[pa.Schema] = SPAN_STATS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(SPAN_STATS_SCHEMA)
    update_group: ClassVar[int | None] = 3000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("time_bin", "time_bin")
    sort_order: ClassVar[tuple[str, ...]] = _KEYS

    async def _sources(self, lake: Lakehouse, insert_range: TimeRange) -> list:  # type: ignore[type-arg]
        self.check_instance(GLOBAL_INSTANCE)
        return await find_overlapping(lake.pool, _SOURCE.name, GLOBAL_INSTANCE, _SOURCE.file_schema_hash, insert_range)

    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """Number of global ``otel_spans`` rows inserted in ``insert_range``."""
        partitions = await self._sources(lake, insert_range)
        total = sum(p.num_rows for p in partitions if insert_range.contains(p.insert_range))
        partial = [p for p in partitions if not insert_range.contains(p.insert_range)]
        if partial:
            rows = await read_partition_files(lake.store, partial, OTEL_SPANS_SCHEMA, ["insert_time"])
            total += count_in_range(rows.column("insert_time"), insert_range.begin_ns, insert_range.end_ns)
        return total

    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """The range's spans summarised per start minute, process, service, name, kind and status."""
        partitions = await self._sources(lake, insert_range)
        columns = ["insert_time", "start_time", "process_id", "service_name", "name", "kind", "status", "duration"]
        rows = await read_partition_files(lake.store, partitions, OTEL_SPANS_SCHEMA, columns)
        inserted = rows.column("insert_time").cast(pa.int64())
        mask = pc.and_(pc.greater_equal(inserted, insert_range.begin_ns), pc.less(inserted, insert_range.end_ns))
        rows = rows.filter(mask)
        return await asyncio.to_thread(_aggregate, rows, _BUILD_SQL), rows.num_rows

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Add the counts and sums of identical keys, keep their extreme minima and maxima."""
        rows = pa.concat_tables(tables) if tables else SPAN_STATS_SCHEMA.empty_table()
        return _aggregate(rows, _MERGE_SQL)
