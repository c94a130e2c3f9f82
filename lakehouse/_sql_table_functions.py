"""Sirius's table functions, expanded before DataFusion plans the query.

DataFusion-python table functions (UDTFs) only see literal arguments and cannot run queries
(a nested query from inside planning panics: environment.md §5.2). Several Micromegas table
functions need exactly that: ``expand_histogram((SELECT make_histogram(…) …))`` takes a scalar
subquery, ``process_spans``/``perfetto_trace_chunks`` read ``thread_spans`` of every thread of a
process, and the admin functions do asynchronous work on the partition store.

So :func:`expand_table_functions` rewrites the SQL text first: every call of a registered table
function is found (outside string literals, quoted identifiers and comments), its arguments are
evaluated (literals directly, anything else with ``SELECT <arg>`` on the same session), the
function runs, its result is registered as a temporary table ``__sirius_tf_<n>`` and the call is
replaced by that name. Admin functions are expanded only for admin callers; for the others the
call is left as is and DataFusion reports an unknown table function, as Micromegas does.

With ``schema_only`` (prepared statements: the client wants the result schema, not the side
effects) each function contributes an empty table of its declared schema instead of running.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import datafusion
import pyarrow as pa

from ..identity import PermissionDeniedError
from . import _sql_admin as admin
from ._audience_scope import audience_of_session
from ._read_only_sql import read_only_sql
from ._sql_arguments import argument_ordinal
from ._sql_arguments import int_arg as _int_arg
from ._sql_arguments import str_arg as _str_arg
from ._sql_arguments import time_arg as _time_arg
from ._sql_blocks import PARSE_BLOCK_SCHEMA, PARSE_BLOCK_UDF
from ._sql_histograms import EXPAND_HISTOGRAM_SCHEMA, expand_histogram_table
from ._sql_jsonb import DICT_BINARY, jsonb_array_elements_table, jsonb_each_table
from ._sql_spans import (
    PERFETTO_CHUNKS_ARGUMENTS,
    PERFETTO_CHUNKS_SCHEMA,
    PROCESS_SPANS_ARGUMENTS,
    PROCESS_SPANS_SCHEMA,
    perfetto_trace_chunks,
    process_spans,
)
from ._sql_text import SqlCall, find_calls, rename_calls_by_arity, skip_comment, skip_quoted
from ._view_ddl import ViewDdl, parse_view_ddl
from ._view_ddl_execution import VIEW_DDL_RESULT_SCHEMA
from ._view_definitions import LIST_VIEW_SET_DEFINITIONS_SCHEMA

__all__ = [
    "SqlCall",
    "SqlEnvironment",
    "TableFunction",
    "collect_table",
    "expand_table_functions",
    "find_calls",
    "rename_calls_by_arity",
    "skip_comment",
    "skip_quoted",
    "table_functions",
]

T = TypeVar("T")
RunAsync = Callable[[Coroutine[Any, Any, Any]], Any]
"""Runs a coroutine on the application's event loop and returns its result (blocking)."""


def collect_table(ctx: datafusion.SessionContext, sql: str) -> pa.Table:
    """Run ``sql`` on ``ctx`` and return the whole result (the default :attr:`SqlEnvironment.collect`)."""
    return read_only_sql(ctx, sql).to_arrow_table()


@dataclass(frozen=True)
class SqlEnvironment:
    """What table functions need at query time.

    Attributes:
        is_admin: the caller may run the admin functions.
        begin_ns: query range start (Unix ns) or None.
        end_ns: query range end (Unix ns) or None.
        partitions: the partition store, or None when the deployment has none.
        run_async: runs a partition-store coroutine to completion from this (non-loop) thread.
        collect: runs a nested query (the server passes one that honours the query's deadline).
        schema_only: register empty results of the declared schemas, run nothing.
        now_ns: clock for the ``time`` column of admin log rows.
        session_for: a new session of the same caller over another query range (``begin_ns``,
            ``end_ns``); lets functions given an explicit range (``process_spans`` with four
            arguments) read range-bound views when the request carried no range headers.
        principal: who runs the query (recorded as ``updated_by`` of view DDL), or None.
    """

    is_admin: bool = True
    begin_ns: int | None = None
    end_ns: int | None = None
    partitions: admin.PartitionAdmin | None = None
    run_async: RunAsync | None = None
    collect: Callable[[datafusion.SessionContext, str], pa.Table] = collect_table
    schema_only: bool = False
    now_ns: Callable[[], int] = time.time_ns
    session_for: Callable[[int, int], datafusion.SessionContext] | None = None
    principal: str | None = None

    def call_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a partition-store coroutine through :attr:`run_async`."""
        if self.run_async is None:
            coro.close()
            msg = "this server has no event loop for partition administration"
            raise RuntimeError(msg)
        return self.run_async(coro)

    def require_partitions(self, function: str) -> admin.PartitionAdmin:
        """The partition store, or a clear error naming ``function``."""
        if self.partitions is None:
            msg = f"{function}: this deployment has no partition store"
            raise ValueError(msg)
        return self.partitions


TableImpl = Callable[[datafusion.SessionContext, SqlEnvironment, Sequence[Any]], pa.Table]


@dataclass(frozen=True)
class TableFunction:
    """A table function expanded before planning.

    Attributes:
        name: SQL name (matched case-insensitively).
        schema: result schema (registered empty in ``schema_only`` mode).
        impl: ``impl(ctx, env, args) -> pyarrow.Table``; ``args`` are evaluated Python values.
        arity: accepted argument counts.
        admin_only: expanded only for admin callers.
        arguments: what each positional argument must be (e.g. ``"a string (the process ID)"``);
            when given, a call missing some names the first missing one, as Micromegas does.
    """

    name: str
    schema: pa.Schema
    impl: TableImpl
    arity: tuple[int, ...]
    admin_only: bool = False
    arguments: tuple[str, ...] = ()
    mutates: bool = False
    """Changes state (``deny_queries``): the whole statement is planned first, over an empty
    result, so a statement that cannot run (an unknown column, say) changes nothing."""


_TEMP_NAMES = itertools.count()  # unique temporary table names, even when a session is reused


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _literal(text: str) -> tuple[bool, Any]:
    """(True, value) for a plain string/number/NULL literal; (False, None) otherwise."""
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'" and skip_quoted(text, 0, "'") == len(text):
        return True, text[1:-1].replace("''", "'")
    if _NUMBER.fullmatch(text):
        number = float(text)
        return True, int(text) if re.fullmatch(r"[+-]?\d+", text) else number
    if text.upper() == "NULL":
        return True, None
    return False, None


def _evaluate(ctx: datafusion.SessionContext, env: SqlEnvironment, text: str) -> Any:
    is_literal, value = _literal(text)
    if is_literal:
        return value
    table = env.collect(ctx, f"SELECT {text} AS v")
    if table.num_rows == 0:
        return None
    value = table.column(0)[0]
    if pa.types.is_dictionary(value.type):
        return value.as_py()
    if pa.types.is_timestamp(value.type):
        return value.cast(pa.timestamp("ns", tz=value.type.tz)).cast(pa.int64()).as_py()  # Unix ns
    return value.as_py()


def _register(ctx: datafusion.SessionContext, name: str, table: pa.Table) -> None:
    batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    ctx.register_record_batches(name, [batches])


def expand_table_functions(
    ctx: datafusion.SessionContext,
    sql: str,
    env: SqlEnvironment,
    functions: dict[str, TableFunction] | None = None,
) -> str:
    """Run the table functions called in ``sql`` and return the SQL that reads their results.

    Args:
        ctx: the query's session (results are registered in it).
        sql: the client's statement.
        env: caller rights, range, partition store, nested-query runner.
        functions: registry (default :func:`table_functions`).

    Returns:
        The SQL with each call replaced by the name of a registered temporary table.

    Raises:
        ValueError: wrong number of arguments, a bad argument value, or a failing function
            (the message names the function).
        PermissionDeniedError: a non-admin calls an admin function or runs view DDL.
    """
    ddl = parse_view_ddl(sql)
    if ddl is not None:
        return _view_ddl(ctx, env, ddl)
    registry = functions if functions is not None else table_functions()
    if not env.is_admin:
        _refuse_admin_only(sql, registry)
    names = {name for name, fn in registry.items() if env.is_admin or not fn.admin_only}
    calls = find_calls(sql, names)
    if not calls:
        return sql
    for call in calls:
        _check_arity(registry[call.name], call)
    if not env.schema_only and any(registry[call.name].mutates for call in calls):
        # plan (not run) the statement over empty results first: a failure stops it here.
        read_only_sql(ctx, _rewrite(ctx, sql, calls, registry, env, dry=True))
    return _rewrite(ctx, sql, calls, registry, env, dry=env.schema_only)


# Admin-only scalar functions (registered on admins' sessions only, by _sql_functions and the deny
# list): named so that a non-admin calling one is told it is reserved, not that it does not exist.
# ``__4`` is the arity-renamed form ``prepare_sql`` gives the four-argument call.
_ADMIN_ONLY_SCALAR_FUNCTIONS = frozenset(
    {
        "remove_query_denial",
        "retire_partition_by_file",
        "retire_partition_by_metadata",
        "retire_partition_by_metadata__4",
    }
)


def _refuse_admin_only(sql: str, registry: dict[str, TableFunction]) -> None:
    """Refuse a non-admin's call to an admin function (partition retirement, deny list, …).

    Raises:
        PermissionDeniedError: naming the first such function.
    """
    reserved = {name for name, fn in registry.items() if fn.admin_only} | _ADMIN_ONLY_SCALAR_FUNCTIONS
    calls = find_calls(sql, reserved)
    if calls:
        name = calls[0].name.split("__", 1)[0]
        msg = f"permission denied: {name} is reserved to lakehouse administrators"
        raise PermissionDeniedError(msg)


def _check_arity(fn: TableFunction, call: SqlCall) -> None:
    if len(call.args) in fn.arity:
        return
    expected = " or ".join(str(a) for a in fn.arity)
    msg = f"{fn.name} takes {expected} argument(s), got {len(call.args)}"
    if len(call.args) < len(fn.arguments):
        missing = len(call.args)
        msg = f"{argument_ordinal(missing)} argument to {fn.name} must be {fn.arguments[missing]}, given none ({msg})"
    raise ValueError(msg)


def _rewrite(
    ctx: datafusion.SessionContext,
    sql: str,
    calls: list[SqlCall],
    registry: dict[str, TableFunction],
    env: SqlEnvironment,
    *,
    dry: bool,
) -> str:
    """Register each call's result (an empty table of its schema when ``dry``) and return the SQL reading them."""
    out, last = [], 0
    for call in calls:
        fn = registry[call.name]
        temp = f"__sirius_tf_{next(_TEMP_NAMES)}"
        if dry:
            table = fn.schema.empty_table()
        else:
            args = [_evaluate(ctx, env, arg) for arg in call.args]
            table = fn.impl(ctx, env, args)
            if table.schema != fn.schema:
                table = table.cast(fn.schema)
        _register(ctx, temp, table)
        out.append(sql[last : call.start])
        out.append(temp)
        last = call.end
    out.append(sql[last:])
    return "".join(out)


def _view_ddl(ctx: datafusion.SessionContext, env: SqlEnvironment, ddl: ViewDdl) -> str:
    """Apply a view DDL statement (admins only) and return the SQL reading its status row."""
    verb = "DROP MATERIALIZED VIEW" if hasattr(ddl, "if_exists") else "CREATE MATERIALIZED VIEW"
    if not env.is_admin:
        msg = f"permission denied: {verb} is reserved to lakehouse administrators"
        raise PermissionDeniedError(msg)
    temp = f"__sirius_tf_{next(_TEMP_NAMES)}"
    if env.schema_only:
        table = VIEW_DDL_RESULT_SCHEMA.empty_table()
    else:
        execute = getattr(env.partitions, "execute_view_ddl", None)
        if execute is None:
            msg = f"{verb}: this deployment has no lakehouse to store view definitions in"
            raise ValueError(msg)
        table = env.call_async(execute(ddl, env.principal))
    _register(ctx, temp, table)
    return f"SELECT * FROM {temp}"  # noqa: S608 - a generated table name


# ---------------------------------------------------------------------------------------------
# implementations


def _log_table(env: SqlEnvironment, run: Callable[[admin.LogSink], Coroutine[Any, Any, None]]) -> pa.Table:
    times: list[int] = []
    messages: list[str] = []

    def log(message: str) -> None:
        times.append(env.now_ns())
        messages.append(str(message))

    env.call_async(run(log))
    return pa.table(
        {"time": pa.array(times, pa.int64()).cast(admin.LOG_SCHEMA.field("time").type), "msg": pa.array(messages)},
        schema=admin.LOG_SCHEMA,
    )


def _list_partitions(ctx: datafusion.SessionContext, env: SqlEnvironment, _args: Sequence[Any]) -> pa.Table:
    store = env.partitions
    if store is None:
        return admin.LIST_PARTITIONS_SCHEMA.empty_table()
    table = env.call_async(store.list_partitions())
    audience = audience_of_session(ctx)  # a caller restricted to its audiences lists their partitions only
    return table if audience is None else env.call_async(audience.filter_partitions(table))


def _list_view_sets(_ctx: datafusion.SessionContext, env: SqlEnvironment, _args: Sequence[Any]) -> pa.Table:
    store = env.partitions
    if store is None:
        return admin.LIST_VIEW_SETS_SCHEMA.empty_table()
    return env.call_async(store.list_view_sets())


def _list_view_set_definitions(_ctx: datafusion.SessionContext, env: SqlEnvironment, _args: Sequence[Any]) -> pa.Table:
    list_definitions = getattr(env.partitions, "list_view_set_definitions", None)
    if list_definitions is None:
        return LIST_VIEW_SET_DEFINITIONS_SCHEMA.empty_table()
    return env.call_async(list_definitions())


def _retire_partitions(_ctx: datafusion.SessionContext, env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    name = "retire_partitions"
    store = env.require_partitions(name)
    view_set, instance = _str_arg(args[0], name, "view_set"), _str_arg(args[1], name, "view_instance_id")
    begin, end = _time_arg(args[2], name, "begin"), _time_arg(args[3], name, "end")
    return _log_table(env, lambda log: store.retire_partitions(view_set, instance, begin, end, log))


def _materialize(regenerate: bool) -> TableImpl:
    name = "regenerate_partitions" if regenerate else "materialize_partitions"

    def impl(_ctx: datafusion.SessionContext, env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
        store = env.require_partitions(name)
        view_set = _str_arg(args[0], name, "view_set")
        begin, end = _time_arg(args[1], name, "begin"), _time_arg(args[2], name, "end")
        delta = _int_arg(args[3], name, "partition_delta_seconds")
        method = store.regenerate_partitions if regenerate else store.materialize_partitions
        return _log_table(env, lambda log: method(view_set, begin, end, delta, log))

    return impl


def _jsonb_arg(value: Any, function: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    msg = f"{function}: expects a JSONB value (Binary), got {type(value).__name__}"
    raise ValueError(msg)


def _expand_histogram(_ctx: datafusion.SessionContext, _env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    value = args[0]
    if value is not None and not isinstance(value, dict):
        msg = "expand_histogram expects a histogram (the result of make_histogram or sum_histograms)"
        raise ValueError(msg)
    return expand_histogram_table(value)


def _jsonb_each(_ctx: datafusion.SessionContext, _env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    return jsonb_each_table(_jsonb_arg(args[0], "jsonb_each"))


def _jsonb_array_elements(_ctx: datafusion.SessionContext, _env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    return jsonb_array_elements_table(_jsonb_arg(args[0], "jsonb_array_elements"))


def _parse_block(ctx: datafusion.SessionContext, env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    block_id = _str_arg(args[0], "parse_block", "block_id")
    literal = "'" + block_id.replace("'", "''") + "'"
    try:
        rows = env.collect(ctx, f"SELECT {PARSE_BLOCK_UDF}({literal}) AS v").column(0)[0].as_py()
    except Exception as exc:
        message = str(exc)
        start = message.find("parse_block: ")
        if start >= 0:  # our own ValueError, wrapped by DataFusion (and the nested query's id)
            raise ValueError(re.split(r" \(query_id=|\"\),|'\),", message[start:], maxsplit=1)[0]) from exc
        if PARSE_BLOCK_UDF in message:
            msg = "parse_block: this server has no lakehouse to read blocks from"
            raise ValueError(msg) from exc
        raise
    return pa.Table.from_pylist(rows or [], schema=PARSE_BLOCK_SCHEMA)


def table_functions() -> dict[str, TableFunction]:
    """The registry of table functions expanded before planning (name → function)."""
    jsonb_each_schema = pa.schema([("key", pa.utf8()), ("value", DICT_BINARY)])
    functions = [
        TableFunction("list_partitions", admin.LIST_PARTITIONS_SCHEMA, _list_partitions, (0,)),
        TableFunction("list_view_sets", admin.LIST_VIEW_SETS_SCHEMA, _list_view_sets, (0,)),
        TableFunction("retire_partitions", admin.LOG_SCHEMA, _retire_partitions, (4,), admin_only=True),
        TableFunction(
            "list_view_set_definitions",
            LIST_VIEW_SET_DEFINITIONS_SCHEMA,
            _list_view_set_definitions,
            (0,),
            admin_only=True,
        ),
        TableFunction("materialize_partitions", admin.LOG_SCHEMA, _materialize(False), (4,), admin_only=True),
        TableFunction("regenerate_partitions", admin.LOG_SCHEMA, _materialize(True), (4,), admin_only=True),
        TableFunction("expand_histogram", EXPAND_HISTOGRAM_SCHEMA, _expand_histogram, (1,)),
        TableFunction("jsonb_each", jsonb_each_schema, _jsonb_each, (1,)),
        TableFunction("jsonb_array_elements", pa.schema([("value", DICT_BINARY)]), _jsonb_array_elements, (1,)),
        TableFunction("process_spans", PROCESS_SPANS_SCHEMA, process_spans, (2, 4), arguments=PROCESS_SPANS_ARGUMENTS),
        TableFunction(
            "perfetto_trace_chunks",
            PERFETTO_CHUNKS_SCHEMA,
            perfetto_trace_chunks,
            (4,),
            arguments=PERFETTO_CHUNKS_ARGUMENTS,
        ),
        TableFunction("parse_block", PARSE_BLOCK_SCHEMA, _parse_block, (1,)),
    ]
    return {fn.name: fn for fn in functions}
