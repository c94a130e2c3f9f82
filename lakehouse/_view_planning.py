"""Planning the queries of a view definition without running them.

A definition is checked, and its schema and sources found, by planning its three queries with
DataFusion in a *planning context*: every global view set of a registry registered as an empty
table of the schema queries see (so planning reads no partition and no PostgreSQL row), plus
Sirius's SQL functions. ``plan_definition`` answers

* the schema of ``extract_query`` (what partitions hold), its time column(s) checked to be
  nanosecond timestamps and its ``merge_sort_order`` columns to exist;
* ``count_src_query`` planned to one integer column ``count``;
* ``merge_partitions_query`` planned over ``{source}`` of that schema, answering its columns;
* ``reads``: the view sets the extract and count queries scan (their table scans in the
  logical plan, subqueries included), the edges of the dependency graph between views.

A query that does not plan raises ``ValueError`` saying which query and why, in words
(unknown view set, column or function, syntax error) followed by DataFusion's own message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import datafusion
import pyarrow as pa

from ._read_only_sql import read_only_sql
from ._sql_functions import new_session_context, register_sql_functions
from ._view_definitions import ViewDefinition
from ._view_set import ViewRegistry

__all__ = ["PlannedDefinition", "plan_definition", "planning_context", "substitute_placeholders"]

_SCAN = re.compile(r"^\s*TableScan: ([A-Za-z0-9_.\"]+)", re.MULTILINE)
_PARTITIONS_TABLE = re.compile(r"__(.+)__partitions")
_PLACEHOLDER_TIME = "1970-01-01T00:00:00+00:00"
_EXPLANATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"table '(?:[\w]+\.)*([\w]+)' not found"), "unknown view set {0!r}"),
    (re.compile(r"Invalid function '([^']+)'"), "unknown function {0}()"),
    (re.compile(r"No field named ([^\s.]+(?:\.[^\s.]+)?)\."), "unknown column {0}"),
    (re.compile(r"ParserError\("), "SQL syntax error"),
)


@dataclass(frozen=True, slots=True)
class PlannedDefinition:
    """What planning a definition found.

    Attributes:
        schema: the columns of ``extract_query`` (the view's partitions).
        reads: the view sets ``extract_query`` and ``count_src_query`` scan.
        extract_reads: those ``extract_query`` scans (what a JIT extraction must provide).
    """

    schema: pa.Schema
    reads: frozenset[str]
    extract_reads: frozenset[str]


def substitute_placeholders(sql: str, begin: str, end: str) -> str:
    """``sql`` with ``{begin}`` and ``{end}`` replaced (RFC 3339 texts)."""
    return sql.replace("{begin}", begin).replace("{end}", end)


def _empty_table(ctx: datafusion.SessionContext, name: str, schema: pa.Schema) -> None:
    ctx.register_record_batches(name, [[pa.RecordBatch.from_pylist([], schema=schema)]])


def planning_context(views: ViewRegistry, exclude: str) -> datafusion.SessionContext:
    """Every global view set of ``views`` but ``exclude`` as an empty table of its served schema."""
    scratch = new_session_context()
    register_sql_functions(scratch, is_admin=False)
    ctx = new_session_context()
    register_sql_functions(ctx, is_admin=False)
    for view in views.global_views():
        if view.name == exclude:
            continue
        before = set(_table_names(scratch))
        view.register_global(scratch, scratch.from_arrow(view.schema.empty_table()))
        # a view may register helper tables too (``__<name>__partitions``): queries can read them
        for name in sorted(set(_table_names(scratch)) - before):
            _empty_table(ctx, name, scratch.table(name).schema())
    return ctx


def _table_names(ctx: datafusion.SessionContext) -> set[str]:
    return set(ctx.catalog().schema().names())


def _explain(exc: Exception) -> str:
    text = str(exc).strip()
    for pattern, words in _EXPLANATIONS:
        found = pattern.search(text)
        if found:
            return f"{words.format(*found.groups())} ({text})"
    return text


def _plan(ctx: datafusion.SessionContext, sql: str, what: str) -> datafusion.DataFrame:
    try:
        return read_only_sql(ctx, sql)
    except Exception as exc:  # noqa: BLE001 - DataFusion raises plain Exceptions; reported as ValueError
        msg = f"{what} does not plan: {_explain(exc)}"
        raise ValueError(msg) from None


def _plan_source_query(
    ctx: datafusion.SessionContext, definition: ViewDefinition, query: str, what: str
) -> datafusion.DataFrame:
    """Plan one of the queries that read the sources (its time placeholders bound to a dummy time).

    Raises:
        ValueError: it does not plan; naming the view being defined says it reads itself.
    """
    sql = substitute_placeholders(query, _PLACEHOLDER_TIME, _PLACEHOLDER_TIME)
    try:
        return _plan(ctx, sql, what)
    except ValueError as exc:
        # the view being defined is not in the planning context: reading it plans as an unknown view set
        if f"unknown view set {definition.view_set_name!r}" in str(exc):
            msg = f"{what} reads {definition.view_set_name}, the view being defined: a view cannot read itself"
            raise ValueError(msg) from None
        raise


def _scans(frame: datafusion.DataFrame) -> frozenset[str]:
    """The tables a plan scans; ``__<name>__partitions`` counts as reading ``name``."""
    names = set()
    for scanned in _SCAN.findall(frame.logical_plan().display_indent()):
        name = scanned.strip('"').rpartition(".")[2]
        helper = _PARTITIONS_TABLE.fullmatch(name)
        names.add(helper.group(1) if helper else name)
    return frozenset(names)


def _check_time_columns(definition: ViewDefinition, schema: pa.Schema) -> None:
    options = definition.options
    for column in dict.fromkeys((options.min_time_column, options.max_time_column)):
        if column not in schema.names:
            msg = f"time column {column!r} is not a column of extract_query (columns: {', '.join(schema.names)})"
            raise ValueError(msg)
        kind = schema.field(column).type
        if not (pa.types.is_timestamp(kind) and kind.unit == "ns"):
            msg = f"time column {column!r} must be a nanosecond timestamp, got {kind}"
            raise ValueError(msg)
    for column in options.merge_sort_order or ():
        if column not in schema.names:
            msg = f"merge_sort_order column {column!r} is not a column of extract_query"
            raise ValueError(msg)


def _check_merge(definition: ViewDefinition, schema: pa.Schema) -> None:
    ctx = new_session_context()
    register_sql_functions(ctx, is_admin=False)
    _empty_table(ctx, "source", schema)
    sql = definition.merge_partitions_query.replace("{source}", "source")
    merged = _plan(ctx, sql, "merge_partitions_query").schema().remove_metadata()
    if merged.names != schema.names:
        msg = (
            f"merge_partitions_query must return the columns of extract_query in the same order "
            f"({', '.join(schema.names)}), got ({', '.join(merged.names)})"
        )
        raise ValueError(msg)
    try:
        merged.empty_table().cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        msg = f"merge_partitions_query returns columns that cannot be read as extract_query's: {exc}"
        raise ValueError(msg) from None


def plan_definition(views: ViewRegistry, definition: ViewDefinition) -> PlannedDefinition:
    """Plan the three queries of ``definition`` over the global view sets of ``views``.

    Raises:
        ValueError: a query does not plan, the time column is not a nanosecond timestamp, the
            count query does not answer one integer ``count``, or the merge query changes columns.
    """
    ctx = planning_context(views, definition.view_set_name)
    extract = _plan_source_query(ctx, definition, definition.extract_query, "extract_query")
    schema = extract.schema().remove_metadata()
    _check_time_columns(definition, schema)
    count = _plan_source_query(ctx, definition, definition.count_src_query, "count_src_query")
    count_schema = count.schema()
    if count_schema.names != ["count"] or not pa.types.is_integer(count_schema.field(0).type):
        msg = f"count_src_query must return one integer column named count, got ({', '.join(map(str, count_schema))})"
        raise ValueError(msg)
    _check_merge(definition, schema)
    known = {v.name for v in views.global_views()}
    extract_reads = _scans(extract) & known
    return PlannedDefinition(schema, extract_reads | (_scans(count) & known), extract_reads)
