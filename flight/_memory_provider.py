"""A :class:`SessionProvider` over in-memory Arrow tables shaped like the Micromegas views.

For tests, benchmarks and demos of the query services without a lakehouse: global views are
plain tables, view instances (``view_instance('thread_spans', <stream_id>)`` …) are tables keyed
by ``(view_set, instance_id)``, and the query range filters rows with Micromegas's rule for each
view (micromegas-query.md §7), so results match what the real session factory returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import datafusion
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from datafusion import Table, udtf

from ..lakehouse import (
    InMemoryPartitionAdmin,
    PartitionAdmin,
    ViewSetRecord,
    new_session_context,
    register_sql_functions,
)
from ._session import SessionRequest

__all__ = ["GLOBAL_VIEWS", "VIEW_SCHEMAS", "InMemoryLake", "InMemorySessionProvider", "range_filter"]

_TS = pa.timestamp("ns", tz="+00:00")
_DS = pa.dictionary(pa.int32(), pa.utf8())
_DB = pa.dictionary(pa.int32(), pa.binary())


def _schema(*fields: tuple[str, pa.DataType] | tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(f[0], f[1], nullable=f[2] if len(f) > 2 else False) for f in fields])


_IDS = (("process_id", _DS), ("stream_id", _DS), ("block_id", _DS), ("insert_time", _TS))
_WHO = (("exe", _DS), ("username", _DS), ("computer", _DS))

VIEW_SCHEMAS: dict[str, pa.Schema] = {
    "log_entries": _schema(
        *_IDS,
        *_WHO,
        ("time", _TS),
        ("target", _DS),
        ("level", pa.int32()),
        ("msg", pa.utf8()),
        ("properties", _DB),
        ("process_properties", _DB),
    ),
    "measures": _schema(
        *_IDS,
        *_WHO,
        ("time", _TS),
        ("target", _DS),
        ("name", _DS),
        ("unit", _DS),
        ("value", pa.float64()),
        ("properties", _DB),
        ("process_properties", _DB),
    ),
    "thread_spans": _schema(
        ("id", pa.int64()),
        ("parent", pa.int64()),
        ("depth", pa.uint32()),
        ("hash", pa.uint32()),
        ("begin", _TS),
        ("end", _TS),
        ("duration", pa.int64()),
        ("name", _DS),
        ("target", _DS),
        ("filename", _DS),
        ("line", pa.uint32()),
    ),
    "async_events": _schema(
        ("stream_id", _DS),
        ("block_id", _DS),
        ("time", _TS),
        ("event_type", _DS),
        ("span_id", pa.int64()),
        ("parent_span_id", pa.int64()),
        ("depth", pa.uint32()),
        ("hash", pa.uint32()),
        ("name", _DS),
        ("filename", _DS),
        ("target", _DS),
        ("line", pa.uint32()),
    ),
    "processes": _schema(
        ("process_id", pa.utf8()),
        ("exe", pa.utf8()),
        ("username", pa.utf8()),
        ("realname", pa.utf8()),
        ("computer", pa.utf8()),
        ("distro", pa.utf8()),
        ("cpu_brand", pa.utf8()),
        ("tsc_frequency", pa.int64()),
        ("start_time", _TS),
        ("start_ticks", pa.int64()),
        ("insert_time", _TS),
        ("parent_process_id", pa.utf8()),
        ("properties", _DB),
        ("last_update_time", _TS),
        ("last_block_end_ticks", pa.int64()),
        ("last_block_end_time", _TS),
    ),
    "streams": _schema(
        ("stream_id", pa.utf8()),
        ("process_id", pa.utf8()),
        ("dependencies_metadata", pa.binary()),
        ("objects_metadata", pa.binary()),
        ("tags", pa.list_(pa.utf8())),
        ("properties", _DB),
        ("insert_time", _TS),
        ("format", pa.utf8()),
        ("last_update_time", _TS),
    ),
    "blocks": _schema(
        ("block_id", pa.utf8()),
        ("stream_id", pa.utf8()),
        ("process_id", pa.utf8()),
        ("begin_time", _TS),
        ("begin_ticks", pa.int64()),
        ("end_time", _TS),
        ("end_ticks", pa.int64()),
        ("nb_objects", pa.int32()),
        ("object_offset", pa.int64()),
        ("payload_size", pa.int64()),
        ("insert_time", _TS),
        ("streams.dependencies_metadata", pa.binary()),
        ("streams.objects_metadata", pa.binary()),
        ("streams.tags", pa.list_(pa.field("tag", pa.utf8())), True),
        ("streams.properties", _DB),
        ("streams.insert_time", _TS),
        ("streams.format", pa.utf8()),
        ("processes.start_time", _TS),
        ("processes.start_ticks", pa.int64()),
        ("processes.tsc_frequency", pa.int64()),
        ("processes.exe", pa.utf8()),
        ("processes.username", pa.utf8()),
        ("processes.realname", pa.utf8()),
        ("processes.computer", pa.utf8()),
        ("processes.distro", pa.utf8()),
        ("processes.cpu_brand", pa.utf8()),
        ("processes.insert_time", _TS),
        ("processes.parent_process_id", pa.utf8()),
        ("processes.properties", _DB),
    ),
    "log_stats": _schema(
        ("time_bin", _TS), ("process_id", _DS), ("level", pa.int32()), ("target", _DS), ("count", pa.int64())
    ),
}
"""Arrow schemas of the views (micromegas-query.md §3; column order is part of the contract)."""

GLOBAL_VIEWS = ("log_entries", "measures", "processes", "streams", "blocks", "log_stats")
"""Views registered as tables (``GetTables`` lists exactly these)."""

# (lower bound column, upper bound column) compared with the query range (inclusive).
_RANGE_COLUMNS: dict[str, tuple[str, str]] = {
    "log_entries": ("time", "time"),
    "measures": ("time", "time"),
    "async_events": ("time", "time"),
    "thread_spans": ("begin", "end"),
    "processes": ("insert_time", "last_update_time"),
    "streams": ("insert_time", "last_update_time"),
    "log_stats": ("time_bin", "time_bin"),
    "blocks": ("begin_time", "insert_time"),
}


def range_filter(view_set: str, table: pa.Table, begin_ns: int | None, end_ns: int | None) -> pa.Table:
    """Keep the rows Micromegas keeps for a query range: ``lower <= end`` and ``upper >= begin``."""
    if begin_ns is None or end_ns is None or view_set not in _RANGE_COLUMNS or table.num_rows == 0:
        return table
    lower, upper = _RANGE_COLUMNS[view_set]
    low = pc.cast(table[lower], pa.int64())
    high = pc.cast(table[upper], pa.int64())
    return table.filter(pc.and_(pc.less_equal(low, end_ns), pc.greater_equal(high, begin_ns)))


@dataclass
class InMemoryLake:
    """The data an :class:`InMemorySessionProvider` serves.

    Attributes:
        tables: global views by name (missing ones are served empty).
        instances: ``(view_set, instance_id) → table`` for ``view_instance``.
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    instances: dict[tuple[str, str], pa.Table] = field(default_factory=dict)

    def table(self, name: str) -> pa.Table:
        """A global view's table (empty with the view's schema if none was given)."""
        table = self.tables.get(name)
        return table if table is not None else VIEW_SCHEMAS[name].empty_table()


def _view_sets() -> list[ViewSetRecord]:
    return [
        ViewSetRecord(
            name,
            b"\x01",
            str(schema),
            has_view_maker=name not in GLOBAL_VIEWS,
            global_instance_available=name in GLOBAL_VIEWS,
        )
        for name, schema in VIEW_SCHEMAS.items()
    ]


class InMemorySessionProvider:
    """Sessions over an :class:`InMemoryLake`.

    Args:
        lake: the tables to serve.
        partitions: partition store for the admin functions (default: an in-memory one).
        target_partitions: DataFusion parallelism of each session.
    """

    def __init__(
        self,
        lake: InMemoryLake,
        partitions: PartitionAdmin | None = None,
        *,
        target_partitions: int | None = None,
    ) -> None:
        self.lake = lake
        self._partitions = partitions if partitions is not None else InMemoryPartitionAdmin(view_sets=_view_sets())
        self._target_partitions = target_partitions

    @property
    def partitions(self) -> PartitionAdmin | None:
        """The partition store behind the admin functions."""
        return self._partitions

    async def session(self, request: SessionRequest) -> datafusion.SessionContext:
        """A session with the global views (filtered to the range), ``view_instance`` and the functions."""
        ctx = new_session_context(
            memory_limit_bytes=request.memory_limit_bytes, target_partitions=self._target_partitions
        )
        for name in GLOBAL_VIEWS:
            table = range_filter(name, self.lake.table(name), request.begin_ns, request.end_ns)
            batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
            ctx.register_record_batches(name, [batches])
        ctx.register_udtf(udtf(self._view_instance(request), "view_instance"))
        register_sql_functions(ctx, **request.function_context)
        return ctx

    def _view_instance(self, request: SessionRequest) -> object:
        instances: Mapping[tuple[str, str], pa.Table] = self.lake.instances

        def view_instance(*args: datafusion.Expr) -> Table:
            if len(args) != 2:
                msg = "view_instance takes 2 arguments: view_set_name, view_instance_id"
                raise ValueError(msg)
            view_set, instance_id = (str(arg.python_value().as_py()) for arg in args)
            if view_set not in VIEW_SCHEMAS:
                msg = f"unknown view set {view_set!r}"
                raise ValueError(msg)
            if view_set == "thread_spans" and (request.begin_ns is None or request.end_ns is None):
                msg = "thread_spans needs a query range (query_range_begin/query_range_end)"
                raise ValueError(msg)
            if view_set in GLOBAL_VIEWS and instance_id == "global":
                table = self.lake.table(view_set)
            else:
                table = instances.get((view_set, instance_id), VIEW_SCHEMAS[view_set].empty_table())
            table = range_filter(view_set, table, request.begin_ns, request.end_ns)
            # A pyarrow dataset: the only table a UDTF may build while DataFusion plans (env.md §5.2).
            return Table(ds.dataset(table))

        return view_instance
