"""The dependency graph of DDL-defined views: which views a definition reads, and the checks on it.

A DDL view reads the view sets its extract and count queries scan (``PlannedDefinition.reads``,
found by planning them). The graph must stay acyclic and ordered by update group, since the
daemon's ascending update groups are the only order in which it materialises views:

* ``check_graph`` (before the lock): no view read by a new definition reads it back, directly
  or not; each view it reads has a smaller update group; on ``REPLACE``, each view reading it
  keeps a greater update group and still plans against the new definition;
* ``check_stored_graph`` (under the DDL lock, against the stored rows): the DDL views a new
  definition reads still exist, and no stored definition reads a view being dropped.
"""

from __future__ import annotations

import asyncpg

from ._sql_view_set import SqlViewSet
from ._view_ddl import CreateView, DropView, ViewDdl, sql_identifiers
from ._view_definitions import ViewDefinition, list_definitions
from ._view_planning import PlannedDefinition, plan_definition
from ._view_set import ViewRegistry

__all__ = ["check_graph", "check_stored_graph"]


def _ddl_views(views: ViewRegistry) -> dict[str, SqlViewSet]:
    return {v.name: v for v in views if isinstance(v, SqlViewSet)}


def _path_to(views: ViewRegistry, start: str, target: str) -> list[str] | None:
    """A chain of reads from DDL view ``start`` to ``target`` (``[start, …, target]``), or None."""
    ddl = _ddl_views(views)
    pending, came_from = [start], {start: start}
    while pending:
        name = pending.pop()
        for read in sorted(ddl[name].reads) if name in ddl else ():
            if read == target:
                path = [target, name]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if read not in came_from:
                came_from[read] = name
                pending.append(read)
    return None


def check_graph(views: ViewRegistry, definition: ViewDefinition, planned: PlannedDefinition) -> None:
    """The daemon's update groups are the only ordering: read views must come strictly earlier.

    Raises:
        ValueError: a cycle, an update group out of order, or a reader the new definition breaks.
    """
    name, group = definition.view_set_name, definition.update_group
    for read in sorted(planned.reads):
        path = _path_to(views, read, name)
        if path is not None:
            chain = " -> ".join([name, *path])
            msg = f"view set {name} would read itself through {chain} (views may not form a cycle)"
            raise ValueError(msg)
    for view in views.global_views():
        if view.name in planned.reads and (view.update_group or 0) >= group:
            msg = (
                f"update_group {group} must be greater than {view.update_group}, the update group of "
                f"{view.name}, which the view reads (the daemon updates views in ascending update groups)"
            )
            raise ValueError(msg)
    readers = [v for v in _ddl_views(views).values() if name in v.reads and v.name != name]
    for reader in readers:
        if reader.definition.update_group <= group:
            msg = (
                f"update_group {group} must be less than {reader.definition.update_group}, the update group of "
                f"{reader.name}, which reads {name} (the daemon updates views in ascending update groups)"
            )
            raise ValueError(msg)
    if readers:
        replaced = views.with_view(SqlViewSet(definition, planned, views))
        for reader in readers:
            try:
                plan_definition(replaced, reader.definition)
            except ValueError as exc:
                msg = f"view set {reader.name} reads {name} and would no longer plan: {exc}"
                raise ValueError(msg) from None


def _stored_reads(views: ViewRegistry, definition: ViewDefinition) -> frozenset[str]:
    """The views a stored definition reads: as planned when it is loaded as stored, else its words."""
    loaded = _ddl_views(views).get(definition.view_set_name)
    if loaded is not None and loaded.definition == definition:
        return loaded.reads
    queries = (definition.extract_query, definition.count_src_query)
    return frozenset(set().union(*(sql_identifiers(q) for q in queries)))


async def check_stored_graph(
    conn: asyncpg.Connection, views: ViewRegistry, ddl: ViewDdl, planned: PlannedDefinition | None
) -> None:
    """Under the lock: the stored definitions read by a new one exist, none reads a dropped one.

    Raises:
        ValueError: the reason (a concurrent DDL statement may have changed the definitions).
    """
    stored = {s.definition.view_set_name: s.definition for s in await list_definitions(conn)}
    if isinstance(ddl, CreateView) and planned is not None:
        ddl_reads = planned.reads & set(_ddl_views(views))
        gone = sorted(n for n in ddl_reads if n not in stored)
        if gone:
            msg = f"view set {ddl.definition.view_set_name} reads {', '.join(gone)}, which no longer exist(s)"
            raise ValueError(msg)
        return
    name = ddl.name if isinstance(ddl, DropView) else ""
    readers = sorted(
        other for other, definition in stored.items() if other != name and name in _stored_reads(views, definition)
    )
    if readers:
        msg = f"cannot drop view set {name}: view set(s) {', '.join(readers)} read it (drop or replace them first)"
        raise ValueError(msg)
