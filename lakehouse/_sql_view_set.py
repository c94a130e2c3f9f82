"""View sets defined by DDL: a ``ViewDefinition`` run as a global SQL-batch view set.

A ``SqlViewSet`` is materialised by the daemon in its update group like the built-in global
views (Micromegas's ``SqlBatchView``):

* ``source_count`` runs ``count_src_query`` with ``{begin}``/``{end}`` set to the partition's
  insert range (RFC 3339) — the number recorded as ``source_data_hash``;
* ``build`` runs ``extract_query`` the same way, sorted by ``merge_sort_order`` when given;
* ``merge`` runs ``merge_partitions_query`` with ``{source}`` naming the partitions' rows;
* queries see ``merge_partitions_query`` over the (range-filtered) partitions, registered as
  ``__<name>__partitions``, so several partitions read as one.

The ETL session of a partition holds every other global view, restricted to the partitions
whose insert range overlaps the partition's (``{begin}``/``{end}`` filters do the rest).
A query with a time range also sees the rows inserted since the view's last partitions
(``fresh_global_rows``, JIT) when the definition allows it: ``extract_query`` selects its rows by
``{begin}``/``{end}`` and reads only view sets that can be computed for an insert range at query
time (the block-fed built-ins, and DDL views that allow JIT themselves). Those rows are
extracted in memory, never written: only the insert ranges of the last hour from the query's
start that no partition covers (the daemon writes the partitions).

``load_view_sets`` builds the registry a lakehouse serves: the built-ins plus every stored
definition that still plans (one that does not is logged and skipped, and retried at the next
reload). When the stored definitions have not changed since a load without failures, the
current registry is kept and nothing is planned: a steady-state reload is one SELECT.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

import datafusion
import pyarrow as pa
from datafusion import col

from ._exceptions import ViewError
from ._partition_files import PartitionFiles as _Files
from ._partitions import Partition, find_overlapping
from ._read_only_sql import read_only_sql
from ._sql_functions import new_session_context, register_sql_functions
from ._time_range import NS_PER_HOUR, TimeRange, to_datetime
from ._view_ddl import parse_time_delta_ns
from ._view_definitions import ViewDefinition, list_definitions
from ._view_planning import PlannedDefinition, plan_definition
from ._view_set import GLOBAL_INSTANCE, BlockViewSet, ViewRegistry, ViewSet, schema_hash

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = ["JIT_HORIZON_NS", "SqlViewSet", "load_view_sets", "uncovered"]

_log = logging.getLogger(__name__)

JIT_HORIZON_NS = NS_PER_HOUR
"""How far back from now a query's JIT looks for insert ranges without partitions (older gaps
are the daemon's: a query never rebuilds more than this much source in memory)."""

# What each lakehouse last loaded: (base registry id, definitions) and the registry built from them.
_LOADED: weakref.WeakKeyDictionary[Lakehouse, tuple[tuple[int, tuple[ViewDefinition, ...]], ViewRegistry]] = (
    weakref.WeakKeyDictionary()
)


def _substitute(sql: str, insert_range: TimeRange) -> str:
    begin = to_datetime(insert_range.begin_ns).isoformat()
    end = to_datetime(insert_range.end_ns).isoformat()
    return sql.replace("{begin}", begin).replace("{end}", end)


async def _etl_context(
    lake: Lakehouse, insert_range: TimeRange, exclude: str, only: frozenset[str] | None = None, *, fresh: bool = False
) -> datafusion.SessionContext:
    """A context whose global views hold their partitions overlapping ``insert_range``.

    ``only`` restricts it to some views; ``fresh`` adds to each the rows of the parts of
    ``insert_range`` that its partitions do not cover, computed in memory (JIT).
    """
    ctx = new_session_context()
    register_sql_functions(ctx, is_admin=False)
    files = _Files(ctx, lake.store)
    for view in lake.views.global_views():
        if view.name == exclude or (only is not None and view.name not in only):
            continue
        found = await find_overlapping(lake.pool, view.name, GLOBAL_INSTANCE, view.file_schema_hash, insert_range)
        frame = await files.frame(view, found)
        if fresh:
            missing = [await _rows_of(lake, view, gap) for gap in uncovered(insert_range, found)]
            if any(t.num_rows for t in missing):
                frame = frame.union(ctx.from_arrow(pa.concat_tables(missing).cast(view.schema)))
        view.register_global(ctx, frame)
    return ctx


def uncovered(window: TimeRange, partitions: list[Partition]) -> list[TimeRange]:
    """The parts of ``window`` (insert time) that no partition covers.

    A partition written before its range ended covers its range up to when it was written
    only: blocks inserted later are not in it.
    """
    covered = sorted(
        (p.begin_insert_ns, min(p.end_insert_ns, max(p.updated_ns, p.begin_insert_ns))) for p in partitions
    )
    gaps: list[TimeRange] = []
    cursor = window.begin_ns
    for begin, end in covered:
        if begin > cursor:
            gaps.append(TimeRange(cursor, min(begin, window.end_ns)))
        cursor = max(cursor, end)
        if cursor >= window.end_ns:
            break
    if cursor < window.end_ns:
        gaps.append(TimeRange(cursor, window.end_ns))
    return [g for g in gaps if g.end_ns > g.begin_ns]


def jit_capable(view: ViewSet) -> bool:
    """Whether the rows of ``view`` for an insert range can be computed at query time."""
    return isinstance(view, BlockViewSet) or (isinstance(view, SqlViewSet) and view.jit)


async def _rows_of(lake: Lakehouse, view: ViewSet, insert_range: TimeRange) -> pa.Table:
    """Rows ``view`` holds for ``insert_range``, computed in memory (nothing written)."""
    if isinstance(view, SqlViewSet):
        return await view.extract_fresh(lake, insert_range)
    if isinstance(view, BlockViewSet):
        table, _ = await view.build(lake, GLOBAL_INSTANCE, insert_range)
        return table
    return view.schema.empty_table()


def _collect(
    ctx: datafusion.SessionContext, sql: str, order: tuple[str, ...] | None = None, what: str = "query"
) -> pa.Table:
    """Run ``sql``; a failure (the definition no longer fits its sources) is a ``ViewError``."""
    try:
        frame = read_only_sql(ctx, sql)
        if order:
            frame = frame.sort(*(col(c).sort(ascending=True) for c in order))
        return frame.to_arrow_table()
    except Exception as exc:
        msg = f"{what} failed: {exc}"
        raise ViewError(msg) from exc


class SqlViewSet(ViewSet):
    """A global view set whose data is defined by the three queries of a ``ViewDefinition``."""

    def __init__(self, definition: ViewDefinition, planned: PlannedDefinition, views: ViewRegistry) -> None:
        options = definition.options
        self.definition = definition
        self.name = definition.view_set_name
        self.schema = planned.schema
        self.reads = planned.reads
        """The view sets its extract and count queries read (its dependencies)."""
        self.extract_reads = planned.extract_reads
        self.jit = (
            "{begin}" in definition.extract_query
            and "{end}" in definition.extract_query
            and all(name in views and jit_capable(views.get(name)) for name in planned.extract_reads)
        )
        """Whether queries see rows not yet materialised (see the module docstring)."""
        self.file_schema_hash = schema_hash(planned.schema)
        self.update_group = definition.update_group
        self.max_partition_delta_ns = max(
            parse_time_delta_ns(options.source_partition_delta), parse_time_delta_ns(options.merge_partition_delta)
        )
        self.event_time_columns = (options.min_time_column, options.max_time_column)
        self.sort_order = options.merge_sort_order or ()

    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """``count_src_query`` over ``insert_range``."""
        self.check_instance(instance)
        ctx = await _etl_context(lake, insert_range, self.name)
        sql = _substitute(self.definition.count_src_query, insert_range)
        table = await asyncio.to_thread(_collect, ctx, sql, None, f"{self.name}: count_src_query")
        value = table.column(0)[0].as_py() if table.num_rows else None
        return int(value or 0)

    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """``extract_query`` over ``insert_range``, and the source count."""
        count = await self.source_count(lake, instance, insert_range)
        ctx = await _etl_context(lake, insert_range, self.name)
        sql = _substitute(self.definition.extract_query, insert_range)
        order = self.definition.options.merge_sort_order
        table = await asyncio.to_thread(_collect, ctx, sql, order, f"{self.name}: extract_query")
        return table.cast(self.schema), count

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """``merge_partitions_query`` over the partitions' rows."""
        rows = pa.concat_tables([t.cast(self.schema) for t in tables]) if tables else self.schema.empty_table()
        ctx = new_session_context()
        register_sql_functions(ctx, is_admin=False)
        ctx.register_view("source", ctx.from_arrow(rows))
        sql = self.definition.merge_partitions_query.replace("{source}", "source")
        order = self.definition.options.merge_sort_order
        return _collect(ctx, sql, order, f"{self.name}: merge_partitions_query").cast(self.schema)

    async def extract_fresh(self, lake: Lakehouse, insert_range: TimeRange) -> pa.Table:
        """``extract_query`` over ``insert_range`` with its sources' rows not yet materialised (JIT)."""
        ctx = await _etl_context(lake, insert_range, self.name, self.extract_reads, fresh=True)
        sql = _substitute(self.definition.extract_query, insert_range)
        table = await asyncio.to_thread(_collect, ctx, sql, None, f"{self.name}: extract_query")
        return table.cast(self.schema)

    async def fresh_global_rows(self, lake: Lakehouse, query_range: TimeRange) -> pa.Table | None:
        """Rows of the insert ranges that no partition covers yet, computed in memory.

        The window runs from the query's start (at most ``JIT_HORIZON_NS`` ago) to now. None when
        the definition does not allow JIT or every part of the window is materialised.
        """
        if not self.jit:
            return None
        now_ns = lake.now_ns()
        # rows of events in the query range were inserted after the range began
        window = TimeRange(max(query_range.begin_ns, now_ns - JIT_HORIZON_NS), now_ns + 1)
        if window.begin_ns >= window.end_ns:
            return None
        found = await find_overlapping(lake.pool, self.name, GLOBAL_INSTANCE, self.file_schema_hash, window)
        gaps = uncovered(window, found)
        if not gaps:
            return None
        lake.stats.jit_updates += 1
        return pa.concat_tables([await self.extract_fresh(lake, gap) for gap in gaps])

    def register_global(self, ctx: datafusion.SessionContext, frame: datafusion.DataFrame) -> None:
        """Register the partitions as ``__<name>__partitions`` and the view as the merge query over them.

        Registering again (a query's JIT rows added) replaces both.
        """
        partitions = f"__{self.name}__partitions"
        for name in (self.name, partitions):
            if ctx.table_exist(name):
                ctx.deregister_table(name)
        ctx.register_view(partitions, frame)
        merge = self.definition.merge_partitions_query.replace("{source}", partitions)
        ctx.register_view(self.name, read_only_sql(ctx, merge))


async def load_view_sets(lake: Lakehouse) -> ViewRegistry:
    """The built-in view sets plus every stored definition that plans, in update-group order.

    Raises:
        MetadataStoreError: the definitions could not be read.
    """
    stored_definitions = await list_definitions(lake.pool)
    key = (id(lake.base_views), tuple(s.definition for s in stored_definitions))
    last = _LOADED.get(lake)
    if last is not None and last[0] == key and last[1] is lake.views:
        return lake.views  # nothing changed and nothing failed last time: no planning
    registry = lake.base_views
    failed = False
    for stored in stored_definitions:
        definition = stored.definition
        if definition.view_set_name in lake.base_views:
            _log.debug("view set %s is built in; its stored definition is not used", definition.view_set_name)
            continue
        try:
            planned = await asyncio.to_thread(plan_definition, registry, definition)  # views of lower groups
            registry = registry.with_view(SqlViewSet(definition, planned, registry))
        except Exception as exc:  # noqa: BLE001 - one broken definition must not hide the others
            failed = True
            _log.warning("view set %s: definition skipped: %s", definition.view_set_name, exc)
    if failed:  # retried at every reload (a source may come back)
        _LOADED.pop(lake, None)
    else:
        _LOADED[lake] = (key, registry)
    return registry
