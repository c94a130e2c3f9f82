"""The per-minute statistics views: ``log_stats``, ``measure_stats`` and ``span_stats``.

Each summarises the global rows of one source view whose ``insert_time`` lies in the partition's
insert range, keyed by a one-minute ``time_bin`` (global, update group 3000, after their
sources). ``MinuteStatsView`` holds what they share: the source partitions of a range, the source
count (the number of source rows inserted in the range, so a partition built before its source
caught up is rebuilt by a later pass) and the read of the source columns filtered to the range.
Each view says how it summarises those rows and merges its own partitions;
``SqlMinuteStatsView`` does both with one DataFusion statement each, the engine that answers the
queries these views stand in for (``_log_stats_rewrite.py`` plans them on these views).

``log_stats``: log counts per minute, process, level and target, over ``log_entries``:
``date_bin('1 minute', time)`` as ``time_bin`` and ``count(*)``, counted with numpy (a bin and a
sum by key, cheaper than a statement for one count). Merging sums the counts.

``measure_stats``: metric statistics per minute, process, target, name and unit, over
``measures``: the number of rows, the sum, minimum and maximum of ``value``, the number of NaN
values, and the number and sum of the non-null ``delta`` values. Merging adds counts and sums and
keeps the extreme minima and maxima.

The statistics are computed by DataFusion, the engine that answers queries. Its grouped
``min``/``max`` of floats mishandle NaN (DataFusion 55: ``max`` of 1, NaN, -3 in one group is
-3, where the ungrouped ``max`` and DuckDB say NaN), so the minimum of per-minute minima would
not be the minimum of the rows once a NaN is among them: ``value_nans`` counts them, and
``_log_stats_rewrite.py`` plans ``avg``/``min``/``max``/``count``/``sum`` over ``measures`` on
this view only when the session's ``measure_stats`` holds no NaN (without NaN, min and max of
minima and maxima are those of the rows).

``span_stats``: span counts and durations per start minute, process, service, name, kind and
status, over ``otel_spans`` (``date_bin('1 minute', start_time)`` as ``time_bin``): the number of
spans and the sum, minimum and maximum of ``duration`` (integer nanoseconds, so every statistic
is exact and the minimum of per-minute minima is the minimum of the spans). Merging adds counts
and sums and keeps the extreme minima and maxima.

``_log_stats_rewrite.py`` plans ``count``/``sum``/``min``/``max`` of spans grouped and filtered
by those keys on this view (``SELECT service_name, count(*) FROM otel_spans WHERE status =
'ERROR' GROUP BY service_name``) when the answer is the same.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._parquet_files import count_in_range, read_partition_files
from .._partitions import Partition, find_overlapping
from .._sql_functions import new_session_context
from .._time_range import NS_PER_DAY, NS_PER_MINUTE, TimeRange
from .._view_set import DICT_STR, GLOBAL_INSTANCE, TIMESTAMP, ViewSet, schema_hash
from ._aggregate import sum_by
from ._columns import timestamps
from ._log_entries import LogEntriesView
from ._measures import MeasuresView
from ._otel_spans import OtelSpansView

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = [
    "LOG_STATS_SCHEMA",
    "MEASURE_STATS_SCHEMA",
    "SPAN_STATS_SCHEMA",
    "LogStatsView",
    "MeasureStatsView",
    "MinuteStatsView",
    "SpanStatsView",
    "SqlMinuteStatsView",
    "aggregate_with_sql",
]


class MinuteStatsView(ViewSet):
    """A per-minute summary of the global rows of ``source`` (subclasses set the class variables).

    ``source_columns`` are the source columns ``summarise`` reads (``insert_time`` is added).
    """

    source: ClassVar[type[ViewSet]]
    source_columns: ClassVar[tuple[str, ...]]
    update_group: ClassVar[int | None] = 3000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("time_bin", "time_bin")

    async def _sources(self, lake: Lakehouse, insert_range: TimeRange) -> list[Partition]:
        self.check_instance(GLOBAL_INSTANCE)
        source = self.source
        return await find_overlapping(lake.pool, source.name, GLOBAL_INSTANCE, source.file_schema_hash, insert_range)

    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """Number of global source rows inserted in ``insert_range``."""
        partitions = await self._sources(lake, insert_range)
        total = sum(p.num_rows for p in partitions if insert_range.contains(p.insert_range))
        partial = [p for p in partitions if not insert_range.contains(p.insert_range)]
        if partial:
            rows = await read_partition_files(lake.store, partial, self.source.schema, ["insert_time"])
            total += count_in_range(rows.column("insert_time"), insert_range.begin_ns, insert_range.end_ns)
        return total

    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """The range's source rows summarised (``summarise``), and how many there were."""
        partitions = await self._sources(lake, insert_range)
        columns = ["insert_time", *self.source_columns]
        rows = await read_partition_files(lake.store, partitions, self.source.schema, columns)
        inserted = rows.column("insert_time").cast(pa.int64())
        mask = pc.and_(pc.greater_equal(inserted, insert_range.begin_ns), pc.less(inserted, insert_range.end_ns))
        rows = rows.filter(mask)
        return await self.summarise(rows), rows.num_rows

    async def summarise(self, rows: pa.Table) -> pa.Table:
        """The view's rows for ``rows`` (the source columns of one insert range)."""
        raise NotImplementedError


class SqlMinuteStatsView(MinuteStatsView):
    """A per-minute summary built and merged by DataFusion statements over a table named ``rows``."""

    build_sql: ClassVar[str]
    merge_sql: ClassVar[str]

    async def summarise(self, rows: pa.Table) -> pa.Table:
        """``build_sql`` over the source rows, on a thread (DataFusion holds the GIL little)."""
        return await asyncio.to_thread(aggregate_with_sql, rows, self.build_sql, self.schema)

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """``merge_sql`` over the partitions' rows: counts and sums added, extremes kept."""
        rows = pa.concat_tables(tables) if tables else self.schema.empty_table()
        return aggregate_with_sql(rows, self.merge_sql, self.schema)


def aggregate_with_sql(rows: pa.Table, sql: str, schema: pa.Schema) -> pa.Table:
    """``sql`` over ``rows`` (registered as ``rows``) in a one-partition DataFusion context, as ``schema``."""
    if rows.num_rows == 0:
        return schema.empty_table()
    ctx = new_session_context(target_partitions=1)
    ctx.register_record_batches("rows", [rows.to_batches()])
    return ctx.sql(sql).to_arrow_table().select(schema.names).cast(schema)


LOG_STATS_SCHEMA = pa.schema(
    [
        pa.field("time_bin", TIMESTAMP, nullable=False),
        pa.field("process_id", DICT_STR, nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
_LOG_KEYS = ("time_bin", "process_id", "level", "target")


class LogStatsView(MinuteStatsView):
    """Per-minute log statistics computed from the global ``log_entries`` partitions."""

    name: ClassVar[str] = "log_stats"
    schema: ClassVar[pa.Schema] = LOG_STATS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(LOG_STATS_SCHEMA)
    sort_order: ClassVar[tuple[str, ...]] = _LOG_KEYS
    source: ClassVar[type[LogEntriesView]] = LogEntriesView
    source_columns: ClassVar[tuple[str, ...]] = ("time", "process_id", "level", "target")

    async def summarise(self, rows: pa.Table) -> pa.Table:
        """Count the rows per minute, process, level and target."""
        times = np.asarray(rows.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        binned = rows.append_column("time_bin", timestamps(times - times % NS_PER_MINUTE))
        counted = binned.append_column("one", pa.array(np.ones(rows.num_rows, np.int64)))
        return sum_by(counted, _LOG_KEYS, "one", "count", LOG_STATS_SCHEMA)

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Sum the counts of identical keys."""
        rows = pa.concat_tables(tables) if tables else LOG_STATS_SCHEMA.empty_table()
        return sum_by(rows, _LOG_KEYS, "count", "count", LOG_STATS_SCHEMA)


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
_MEASURE_KEYS = ("time_bin", "process_id", "target", "name", "unit")
_MEASURE_GROUP = ", ".join(_MEASURE_KEYS)
_MEASURE_BUILD_SQL = (
    f"SELECT {_MEASURE_GROUP}, count(*) AS count, sum(value) AS value_sum, min(value) AS value_min,"  # noqa: S608
    " max(value) AS value_max, count(*) FILTER (WHERE isnan(value)) AS value_nans,"
    " count(delta) AS delta_count, sum(delta) AS delta_sum"
    " FROM (SELECT date_bin(INTERVAL '1 minute', time) AS time_bin, * FROM rows)"
    f" GROUP BY {_MEASURE_GROUP} ORDER BY {_MEASURE_GROUP}"
)
_MEASURE_MERGE_SQL = (
    f"SELECT {_MEASURE_GROUP}, sum(count) AS count, sum(value_sum) AS value_sum, min(value_min) AS value_min,"  # noqa: S608
    " max(value_max) AS value_max, sum(value_nans) AS value_nans,"
    " sum(delta_count) AS delta_count, sum(delta_sum) AS delta_sum"
    f" FROM rows GROUP BY {_MEASURE_GROUP} ORDER BY {_MEASURE_GROUP}"
)


class MeasureStatsView(SqlMinuteStatsView):
    """Per-minute metric statistics computed from the global ``measures`` partitions."""

    name: ClassVar[str] = "measure_stats"
    schema: ClassVar[pa.Schema] = MEASURE_STATS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(MEASURE_STATS_SCHEMA)
    sort_order: ClassVar[tuple[str, ...]] = _MEASURE_KEYS
    source: ClassVar[type[MeasuresView]] = MeasuresView
    source_columns: ClassVar[tuple[str, ...]] = ("time", "process_id", "target", "name", "unit", "value", "delta")
    build_sql: ClassVar[str] = _MEASURE_BUILD_SQL
    merge_sql: ClassVar[str] = _MEASURE_MERGE_SQL


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
_SPAN_KEYS = ("time_bin", "process_id", "service_name", "name", "kind", "status")
_SPAN_GROUP = ", ".join(_SPAN_KEYS)
_SPAN_BUILD_SQL = (
    f"SELECT {_SPAN_GROUP}, count(*) AS count, sum(duration) AS duration_sum,"  # noqa: S608
    " min(duration) AS duration_min, max(duration) AS duration_max"
    " FROM (SELECT date_bin(INTERVAL '1 minute', start_time) AS time_bin, * FROM rows)"
    f" GROUP BY {_SPAN_GROUP} ORDER BY {_SPAN_GROUP}"
)
_SPAN_MERGE_SQL = (
    f"SELECT {_SPAN_GROUP}, sum(count) AS count, sum(duration_sum) AS duration_sum,"  # noqa: S608
    " min(duration_min) AS duration_min, max(duration_max) AS duration_max"
    f" FROM rows GROUP BY {_SPAN_GROUP} ORDER BY {_SPAN_GROUP}"
)


class SpanStatsView(SqlMinuteStatsView):
    """Per-minute span statistics computed from the global ``otel_spans`` partitions."""

    name: ClassVar[str] = "span_stats"
    schema: ClassVar[pa.Schema] = SPAN_STATS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(SPAN_STATS_SCHEMA)
    sort_order: ClassVar[tuple[str, ...]] = _SPAN_KEYS
    source: ClassVar[type[OtelSpansView]] = OtelSpansView
    source_columns: ClassVar[tuple[str, ...]] = (
        "start_time", "process_id", "service_name", "name", "kind", "status", "duration",
    )  # fmt: skip
    build_sql: ClassVar[str] = _SPAN_BUILD_SQL
    merge_sql: ClassVar[str] = _SPAN_MERGE_SQL
