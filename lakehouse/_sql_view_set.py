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
from ._partitions import find_overlapping
from ._sql_functions import new_session_context, register_sql_functions
from ._time_range import TimeRange, to_datetime
from ._view_ddl import parse_time_delta_ns
from ._view_definitions import ViewDefinition, list_definitions
from ._view_set import GLOBAL_INSTANCE, ViewRegistry, ViewSet, schema_hash

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = ["SqlViewSet", "check_count_query", "infer_schema", "load_view_sets"]

_log = logging.getLogger(__name__)

# What each lakehouse last loaded: (base registry id, definitions) and the registry built from them.
_LOADED: weakref.WeakKeyDictionary[Lakehouse, tuple[tuple[int, tuple[ViewDefinition, ...]], ViewRegistry]] = (
    weakref.WeakKeyDictionary()
)


def _substitute(sql: str, insert_range: TimeRange) -> str:
    begin = to_datetime(insert_range.begin_ns).isoformat()
    end = to_datetime(insert_range.end_ns).isoformat()
    return sql.replace("{begin}", begin).replace("{end}", end)


async def _etl_context(
    lake: Lakehouse, insert_range: TimeRange, exclude: str, views: ViewRegistry | None = None
) -> datafusion.SessionContext:
    from ._query_session import _Files

    ctx = new_session_context()
    register_sql_functions(ctx, is_admin=False)
    files = _Files(ctx, lake.store)
    for view in (views or lake.views).global_views():
        if view.name == exclude:
            continue
        found = await find_overlapping(lake.pool, view.name, GLOBAL_INSTANCE, view.file_schema_hash, insert_range)
        view.register_global(ctx, await files.frame(view, found))
    return ctx


def _collect(
    ctx: datafusion.SessionContext, sql: str, order: tuple[str, ...] | None = None, what: str = "query"
) -> pa.Table:
    """Run ``sql``; a failure (the definition no longer fits its sources) is a ``ViewError``."""
    try:
        frame = ctx.sql(sql)
        if order:
            frame = frame.sort(*(col(c).sort(ascending=True) for c in order))
        return frame.to_arrow_table()
    except Exception as exc:
        msg = f"{what} failed: {exc}"
        raise ViewError(msg) from exc


class SqlViewSet(ViewSet):
    """A global view set whose data is defined by the three queries of a ``ViewDefinition``."""

    def __init__(self, definition: ViewDefinition, schema: pa.Schema) -> None:
        options = definition.options
        self.definition = definition
        self.name = definition.view_set_name
        self.schema = schema
        self.file_schema_hash = schema_hash(schema)
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

    def register_global(self, ctx: datafusion.SessionContext, frame: datafusion.DataFrame) -> None:
        """Register the partitions as ``__<name>__partitions`` and the view as the merge query over them."""
        partitions = f"__{self.name}__partitions"
        ctx.register_view(partitions, frame)
        ctx.register_view(self.name, ctx.sql(self.definition.merge_partitions_query.replace("{source}", partitions)))


async def infer_schema(lake: Lakehouse, definition: ViewDefinition, views: ViewRegistry | None = None) -> pa.Schema:
    """The schema of ``extract_query`` (planned with ``{begin}``/``{end}`` set to now).

    Raises:
        ValueError: it does not plan.
    """
    now_ns = lake.now_ns()
    ctx = await _etl_context(lake, TimeRange(now_ns, now_ns), definition.view_set_name, views)
    sql = _substitute(definition.extract_query, TimeRange(now_ns, now_ns))

    def plan() -> pa.Schema:
        try:
            return ctx.sql(sql).schema()
        except Exception as exc:  # noqa: BLE001 - DataFusion raises plain Exceptions; reported as ValueError
            msg = f"extract_query does not plan: {exc}"
            raise ValueError(msg) from None

    return (await asyncio.to_thread(plan)).remove_metadata()


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
            schema = await infer_schema(lake, definition, registry)  # views of lower groups
            registry = registry.with_view(SqlViewSet(definition, schema))
        except Exception as exc:  # noqa: BLE001 - one broken definition must not hide the others
            failed = True
            _log.warning("view set %s: definition skipped: %s", definition.view_set_name, exc)
    if failed:  # retried at every reload (a source may come back)
        _LOADED.pop(lake, None)
    else:
        _LOADED[lake] = (key, registry)
    return registry


async def check_count_query(lake: Lakehouse, definition: ViewDefinition) -> None:
    """Refuse a ``count_src_query`` that does not plan to one integer column ``count``.

    Raises:
        ValueError: the reason.
    """
    now_ns = lake.now_ns()
    ctx = await _etl_context(lake, TimeRange(now_ns, now_ns), definition.view_set_name)
    sql = _substitute(definition.count_src_query, TimeRange(now_ns, now_ns))

    def plan() -> pa.Schema:
        try:
            return ctx.sql(sql).schema()
        except Exception as exc:  # noqa: BLE001 - DataFusion raises plain Exceptions; reported as ValueError
            msg = f"count_src_query does not plan: {exc}"
            raise ValueError(msg) from None

    schema = await asyncio.to_thread(plan)
    if schema.names != ["count"] or not pa.types.is_integer(schema.field(0).type):
        msg = f"count_src_query must return one integer column named count, got ({', '.join(map(str, schema))})"
        raise ValueError(msg)
