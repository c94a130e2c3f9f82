"""Applying view DDL to the lakehouse: validate, store (or delete) the definition, answer a status row.

``execute_view_ddl`` is what an admin's ``CREATE [OR REPLACE] MATERIALIZED VIEW`` or
``DROP MATERIALIZED VIEW`` does. A definition is checked before its row is written:

* the name: ``^[a-z_][a-z0-9_]{0,254}$``, not ``__…``, not ``source``, not a built-in view set;
* the placeholders: ``{begin}`` and ``{end}`` in ``count_src_query``, ``{source}`` in
  ``merge_partitions_query``;
* the queries call no volatile function (``now()``, ``random()``…) nor a table function that
  writes partitions;
* the three queries plan (``_view_planning.py``: unknown view sets, columns and functions and
  syntax errors are reported by name), the time column(s) are nanosecond timestamps of the
  extract query's output, the count query answers one integer ``count`` and the merge query
  the extract query's columns;
* the views it reads (planned table scans) are known, and ``update_group`` is greater than
  each of theirs; none of them reads it, directly or not (no cycle); on ``REPLACE``, every view
  reading it keeps a greater update group and still plans.

``DROP`` of a view that another DDL view reads is refused, naming the readers. Writers
serialise on ``pg_advisory_xact_lock(2)`` (Micromegas's view-DDL key); the checks against other
stored definitions are repeated under it. ``DROP`` retires the view's global partitions with
its row. The answer is one row ``(view_set_name, status)``,
status ``created``, ``replaced``, ``dropped`` or ``not_found``.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import pyarrow as pa

from ._partition_retirement import retire_partitions
from ._time_range import TimeRange
from ._view_ddl import CreateView, DropView, ViewDdl, sql_identifiers
from ._view_definitions import ViewDefinition, delete_definition, upsert_definition
from ._view_dependencies import check_graph, check_stored_graph
from ._view_planning import plan_definition
from ._view_set import GLOBAL_INSTANCE

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = ["VIEW_DDL_LOCK_KEY", "VIEW_DDL_RESULT_SCHEMA", "execute_view_ddl", "validate_name"]

VIEW_DDL_LOCK_KEY = 2
"""Advisory lock serialising view-definition writers (0 and 1 are the migrations')."""

VIEW_DDL_RESULT_SCHEMA = pa.schema(
    [pa.field("view_set_name", pa.utf8(), nullable=False), pa.field("status", pa.utf8(), nullable=False)]
)
"""The one-row answer of a view DDL statement."""

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,254}")
_BANNED_FUNCTIONS = frozenset(
    {
        "now",
        "random",
        "uuid",
        "current_timestamp",
        "current_date",
        "current_time",
        "view_instance",
        "retire_partitions",
        "materialize_partitions",
        "regenerate_partitions",
        "deny_queries",
        "remove_query_denial",
        "retire_partition_by_file",
        "retire_partition_by_metadata",
        "process_spans",
        "perfetto_trace_chunks",
    }
)
_FAR_FUTURE_NS = 2**62


def validate_name(lake: Lakehouse, name: str) -> None:
    """Refuse a name that cannot be a DDL-defined view set.

    Raises:
        ValueError: the reason.
    """
    if not _NAME.fullmatch(name):
        msg = f"view set name {name!r} must match ^[a-z_][a-z0-9_]{{0,254}}$"
        raise ValueError(msg)
    if name.startswith("__"):
        msg = f"view set name {name!r} must not start with '__' (reserved for internal tables)"
        raise ValueError(msg)
    if name == "source":
        msg = "view set name 'source' is reserved (substituted for '{source}' in merge queries)"
        raise ValueError(msg)
    if name in lake.base_views:
        msg = f"{name!r} is a built-in view set; it cannot be defined, replaced or dropped by DDL"
        raise ValueError(msg)


def _check_placeholders(definition: ViewDefinition) -> None:
    count = definition.count_src_query
    if "{begin}" not in count or "{end}" not in count:
        msg = "count_src_query must filter its source by insert time with '{begin}' and '{end}'"
        raise ValueError(msg)
    if "{source}" not in definition.merge_partitions_query:
        msg = "merge_partitions_query must read its partitions FROM {source}"
        raise ValueError(msg)


def _check_functions(definition: ViewDefinition) -> None:
    """Partitions are rebuilt at every pass that finds new source data: the queries must be repeatable."""
    queries = (definition.extract_query, definition.count_src_query, definition.merge_partitions_query)
    words = set().union(*(sql_identifiers(q) for q in queries))
    for banned in sorted(words & _BANNED_FUNCTIONS):
        msg = f"the queries of a view may not call {banned}() (it would run again at every daemon pass)"
        raise ValueError(msg)


async def execute_view_ddl(lake: Lakehouse, ddl: ViewDdl, updated_by: str | None) -> pa.Table:
    """Apply ``ddl`` and return its status row; the node's view sets are reloaded after a change.

    Raises:
        ValueError: the definition is invalid, the name is taken (without ``OR REPLACE``) or
            unknown (``DROP`` without ``IF EXISTS``); nothing was changed.
        MetadataStoreError: PostgreSQL failed; nothing was changed.
    """
    # the checks below read every stored definition's view: load any another service defined
    await lake.reload_view_definitions()
    views = lake.views
    planned = None
    if isinstance(ddl, CreateView):
        name = ddl.definition.view_set_name
        validate_name(lake, name)
        _check_placeholders(ddl.definition)
        _check_functions(ddl.definition)
        planned = await asyncio.to_thread(plan_definition, views, ddl.definition)
        await asyncio.to_thread(check_graph, views, ddl.definition, planned)
    else:
        name = ddl.name
        validate_name(lake, name)
    async with lake.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", VIEW_DDL_LOCK_KEY)
        exists = await conn.fetchval(
            "SELECT count(*) FROM lakehouse_view_set_definitions WHERE view_set_name = $1", name
        )
        if isinstance(ddl, DropView):
            if not exists:
                if not ddl.if_exists:
                    msg = f"DROP MATERIALIZED VIEW: no view set {name!r} is defined"
                    raise ValueError(msg)
                status = "not_found"
            else:
                await check_stored_graph(conn, views, ddl, None)
                await delete_definition(conn, name)
                status = "dropped"
        else:
            if exists and not ddl.or_replace:
                msg = f"view set {name!r} already exists; use CREATE OR REPLACE MATERIALIZED VIEW"
                raise ValueError(msg)
            await check_stored_graph(conn, views, ddl, planned)
            await upsert_definition(conn, ddl.definition, updated_by)
            status = "replaced" if exists else "created"
    if status == "dropped":
        await retire_partitions(lake, name, GLOBAL_INSTANCE, TimeRange(0, _FAR_FUTURE_NS), lambda _msg: None)
    if status != "not_found":
        await lake.reload_view_definitions()
    return pa.table({"view_set_name": [name], "status": [status]}, schema=VIEW_DDL_RESULT_SCHEMA)
