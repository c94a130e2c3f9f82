"""The lakehouse's views as Sail temporary views: the same partitions as a DataFusion session.

``plan_on_sail(lake, sql, range)`` does the PostgreSQL part, on the caller's loop: it selects,
with the query sessions' own selection (``partitions_for_query``: current schema, event times
overlapping the range), the partition files of each global view the SQL names, and, for each
``view_instance('set', 'id')`` call, runs the JIT update first and selects that instance's
partitions; the call is replaced by the name of a view (``view_instance_<n>``); so is each ``list_partitions()``
/ ``list_view_sets()`` call, by a view of its rows (``_sail_table_functions``). The result, a
``SailPlan``, is registered on a Spark Connect session by ``register_plan`` (blocking calls:
run it in a worker thread).

Each view reads its Parquet files where the store keeps them (a local path, or the cloud URL
``s3://…``/``gs://…`` that DataFusion reads too; the Sail server then needs that store's
credentials in its environment). The in-memory store has no such location: refused.

Spark's TIMESTAMP is microseconds and Sail cannot return nanosecond timestamps to a Spark client,
so every timestamp column is cast to TIMESTAMP in the view: sub-microsecond digits are dropped,
and the range filter compares at microsecond precision (bounds rounded outwards).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sirius.lakehouse import (
    GLOBAL_INSTANCE,
    TimeRange,
    find_view_instance_calls,
    jit_update,
    partitions_for_query,
    substitute_view_instance_calls,
)

from ._exceptions import UnreadableStoreError
from ._sail_table_functions import SailTable, plan_metadata_tables, register_tables

if TYPE_CHECKING:
    from sirius.lakehouse import Lakehouse, ViewSet

__all__ = ["SailPlan", "SailView", "plan_on_sail", "register_plan"]


@dataclass(frozen=True, slots=True)
class SailView:
    """One temporary view: its name, files, Arrow schema and row filter (Spark SQL, or None)."""

    name: str
    paths: tuple[str, ...]
    schema: pa.Schema
    row_filter: str | None


@dataclass(frozen=True, slots=True)
class SailPlan:
    """The statement for Sail (``view_instance`` and metadata table function calls replaced) and what it reads."""

    sql: str
    views: tuple[SailView, ...]
    tables: tuple[SailTable, ...] = ()


def _location_prefix(lake: Lakehouse) -> str:
    store = lake.store
    cloud = getattr(store, "parquet_url_prefix", None)
    if isinstance(cloud, str):
        return cloud
    root = getattr(store, "root", None)
    if root is not None:
        return f"{root}/"
    raise UnreadableStoreError(
        f"the lakehouse's {type(store).__name__} has no location Sail can read: use a local directory or a bucket"
    )


def _micros(ns: int, *, up: bool) -> int:
    return -(-ns // 1000) if up else ns // 1000


def _row_filter(view: ViewSet, query_range: TimeRange | None) -> str | None:
    if query_range is None:
        return None
    low, high = view.row_filter_bounds()
    # Outwards: a row of the DataFusion answer is never lost to the microsecond rounding.
    begin = f"timestamp_micros({_micros(query_range.begin_ns, up=False)})"
    end = f"timestamp_micros({_micros(query_range.end_ns, up=True)})"
    return f"`{low}` <= {end} AND `{high}` >= {begin}"


def _named(sql: str, name: str) -> bool:
    return re.search(rf"(?<![\w`]){re.escape(name)}(?![\w`])", sql, re.IGNORECASE) is not None


async def plan_on_sail(lake: Lakehouse, sql: str, query_range: TimeRange | None) -> SailPlan:
    """Select the partitions ``sql`` reads (JIT first for ``view_instance``) and name its views.

    Raises:
        UnreadableStoreError: the store is in memory.
        ViewError: an unknown view set or a bad instance id in a ``view_instance`` call.
        StatementError: a metadata table function called with arguments.
        MetadataStoreError: PostgreSQL failed.
    """
    prefix = _location_prefix(lake)
    await lake.refresh_view_definitions()
    calls = find_view_instance_calls(sql)
    names = {call: f"view_instance_{number}" for number, call in enumerate(calls)}
    rewritten, tables = await plan_metadata_tables(lake, substitute_view_instance_calls(sql, names))
    # Names outside the view_instance calls (whose first argument names a view set too).
    named = [v for v in lake.views.global_views() if _named(rewritten, v.name)]
    found = await partitions_for_query(
        lake.pool, [(v.name, v.file_schema_hash) for v in named], GLOBAL_INSTANCE, query_range
    )
    views = [
        SailView(
            v.name,
            tuple(prefix + p.file_path for p in found[v.name] if p.file_path),
            v.schema,
            _row_filter(v, query_range),
        )
        for v in named
    ]
    for (view_set, instance), name in names.items():
        view = lake.views.get(view_set)
        view.check_instance(instance)
        await jit_update(lake, view_set, instance, query_range)
        selected = await partitions_for_query(lake.pool, [(view.name, view.file_schema_hash)], instance, query_range)
        paths = tuple(prefix + p.file_path for p in selected[view.name] if p.file_path)
        views.append(SailView(name, paths, view.schema, _row_filter(view, query_range)))
    return SailPlan(rewritten, tuple(views), tables)


_SIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(), pa.uint64(): pa.int64()}


def _spark_arrow(t: pa.DataType) -> pa.DataType:
    """The Arrow type Spark can represent for ``t`` (Spark has no dictionary, no unsigned integer)."""
    if pa.types.is_dictionary(t):
        return _spark_arrow(t.value_type)
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_list(t):
        return pa.list_(_spark_arrow(t.value_type))
    return _SIGNED.get(t, t)


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([pa.field(f.name, _spark_arrow(f.type)) for f in schema]))


def _spark_cast(arrow: pa.DataType) -> str | None:
    """The Spark type a column is cast to in its view, when Sail cannot hand its Arrow type to Spark.

    Unsigned integers become the next signed type (``bigint`` for ``uint64``: the views' counts
    stay far below 2^63); the Python UDF workers cannot read unsigned Arrow columns at all.
    """
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    target = _spark_arrow(arrow)
    if target == arrow:
        return None
    return str(_spark_schema(pa.schema([("v", target)]))[0].dataType.simpleString())


def register_plan(spark: Any, plan: SailPlan) -> None:
    """Create the plan's temporary views on a Spark Connect session."""
    from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention

    register_tables(spark, plan.tables)

    for view in plan.views:
        if view.paths:
            frame = spark.read.parquet(*view.paths)
            columns = []
            for f in view.schema:
                cast = _spark_cast(f.type)
                column = F.col(f"`{f.name}`")
                columns.append(column if cast is None else column.cast(cast).alias(f.name))
            frame = frame.select(*columns)
        else:  # no partition yet: an empty view with the view's columns
            frame = spark.createDataFrame([], schema=_spark_schema(view.schema))
        if view.row_filter is not None:
            frame = frame.where(view.row_filter)
        frame.createOrReplaceTempView(view.name)
