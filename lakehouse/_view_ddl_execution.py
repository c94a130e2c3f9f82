"""Applying view DDL to the lakehouse: validate, store (or delete) the definition, answer a status row.

``execute_view_ddl`` is what an admin's ``CREATE [OR REPLACE] MATERIALIZED VIEW`` or
``DROP MATERIALIZED VIEW`` does. A definition is checked before its row is written:

* the name: ``^[a-z_][a-z0-9_]{0,254}$``, not ``__…``, not ``source``, not a built-in view set;
* the placeholders: ``{begin}`` and ``{end}`` in ``count_src_query``, ``{source}`` in
  ``merge_partitions_query``;
* ``update_group`` is greater than that of every global view the queries name, and they call
  no volatile function (``now()``, ``random()``…) nor a table function that writes partitions;
* the extract query plans over the lakehouse (with ``{begin}``/``{end}`` set to now) and its
  time column(s) are nanosecond timestamps; the count query plans to one integer ``count``.

Writers serialise on ``pg_advisory_xact_lock(2)`` (Micromegas's view-DDL key). ``DROP`` retires
the view's global partitions with its row. The answer is one row ``(view_set_name, status)``,
status ``created``, ``replaced``, ``dropped`` or ``not_found``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa

from ._partition_admin import retire_partitions
from ._time_range import TimeRange
from ._view_ddl import CreateView, DropView, ViewDdl
from ._view_definitions import ViewDefinition, delete_definition, upsert_definition
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
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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


def _words(sql: str) -> set[str]:
    """Lower-case identifiers of ``sql`` outside string literals and comments."""
    text = re.sub(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return {w.lower() for w in _WORD.findall(text)}


def _check_dependencies(lake: Lakehouse, definition: ViewDefinition) -> None:
    """The daemon's update groups are the only ordering: read views must come strictly earlier."""
    queries = (definition.extract_query, definition.count_src_query, definition.merge_partitions_query)
    words = set().union(*(_words(q) for q in queries))
    for banned in sorted(words & _BANNED_FUNCTIONS):
        msg = f"the queries of a view may not call {banned}() (it would run again at every daemon pass)"
        raise ValueError(msg)
    for view in lake.views.global_views():
        group = view.update_group or 0
        if view.name != definition.view_set_name and view.name in words and group >= definition.update_group:
            msg = (
                f"update_group {definition.update_group} must be greater than {group}, the update group of "
                f"{view.name}, which the view reads (the daemon updates views in ascending update groups)"
            )
            raise ValueError(msg)


async def _check_queries(lake: Lakehouse, definition: ViewDefinition) -> None:
    from ._sql_view_set import check_count_query, infer_schema

    schema = await infer_schema(lake, definition)
    for column in {definition.options.min_time_column, definition.options.max_time_column}:
        if column not in schema.names:
            msg = f"time column {column!r} is not a column of extract_query (columns: {', '.join(schema.names)})"
            raise ValueError(msg)
        kind = schema.field(column).type
        if not (pa.types.is_timestamp(kind) and kind.unit == "ns"):
            msg = f"time column {column!r} must be a nanosecond timestamp, got {kind}"
            raise ValueError(msg)
    for column in definition.options.merge_sort_order or ():
        if column not in schema.names:
            msg = f"merge_sort_order column {column!r} is not a column of extract_query"
            raise ValueError(msg)
    await check_count_query(lake, definition)


async def execute_view_ddl(lake: Lakehouse, ddl: ViewDdl, updated_by: str | None) -> pa.Table:
    """Apply ``ddl`` and return its status row; the node's view sets are reloaded after a change.

    Raises:
        ValueError: the definition is invalid, the name is taken (without ``OR REPLACE``) or
            unknown (``DROP`` without ``IF EXISTS``); nothing was changed.
        MetadataStoreError: PostgreSQL failed; nothing was changed.
    """
    if isinstance(ddl, CreateView):
        name = ddl.definition.view_set_name
        validate_name(lake, name)
        _check_placeholders(ddl.definition)
        _check_dependencies(lake, ddl.definition)
        await _check_queries(lake, ddl.definition)
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
                await delete_definition(conn, name)
                status = "dropped"
        else:
            if exists and not ddl.or_replace:
                msg = f"view set {name!r} already exists; use CREATE OR REPLACE MATERIALIZED VIEW"
                raise ValueError(msg)
            await upsert_definition(conn, ddl.definition, updated_by)
            status = "replaced" if exists else "created"
    if status == "dropped":
        await retire_partitions(lake, name, GLOBAL_INSTANCE, TimeRange(0, _FAR_FUTURE_NS), lambda _msg: None)
    if status != "not_found":
        await lake.reload_view_definitions()
    return pa.table({"view_set_name": [name], "status": [status]}, schema=VIEW_DDL_RESULT_SCHEMA)
