"""The SQL face of the query deny list: ``list_query_denials()``, ``deny_queries(…)``, ``remove_query_denial(…)``.

All three are admin functions (micromegas-query.md §9.1, §9.2, §9.4): the query service passes
the table functions to ``expand_table_functions`` and registers the scalar function only for
admin callers, so others get "table function not found" / "Invalid function", as in Micromegas.

* ``SELECT * FROM list_query_denials()``: every rule (``rule_id``, ``created_at``,
  ``created_by``, ``reason``, ``match_expr``, ``last_hit_at``), oldest first.
* ``SELECT * FROM deny_queries(match_expr, reason)``: validates the expression (see
  ``_query_deny_list.py``) and the reason, stores the rule and returns its id (``msg``, as
  Micromegas's log-stream answer, and ``rule_id``); a bad
  argument is an error naming the function and changes nothing.
* ``SELECT remove_query_denial(rule_id)``: ``SUCCESS: …`` when the rule was removed,
  ``ERROR: …`` when there was none with this id; a malformed id is an error.

Each service applies its own changes at once; other services within their refresh period.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import datafusion
import pyarrow as pa
from datafusion import udf

from ._query_deny_list import DenyList, DenyRule, MatchExpressionError
from ._sql_table_functions import SqlEnvironment, TableFunction

__all__ = ["DENY_QUERIES_SCHEMA", "LIST_QUERY_DENIALS_SCHEMA", "deny_list_table_functions", "deny_list_udfs"]

_TS = pa.timestamp("ns", tz="+00:00")

LIST_QUERY_DENIALS_SCHEMA = pa.schema(
    [
        pa.field("rule_id", pa.utf8(), nullable=False),
        pa.field("created_at", _TS, nullable=False),
        pa.field("created_by", pa.utf8(), nullable=False),
        pa.field("reason", pa.utf8(), nullable=False),
        pa.field("match_expr", pa.utf8(), nullable=False),
        pa.field("last_hit_at", _TS),
    ]
)
"""``list_query_denials()``."""

DENY_QUERIES_SCHEMA = pa.schema(
    [
        pa.field("time", _TS, nullable=False),
        pa.field("msg", pa.utf8(), nullable=False),
        pa.field("rule_id", pa.utf8(), nullable=False),
    ]
)
"""``deny_queries(match_expr, reason)``: Micromegas's log-stream shape (``time``, ``msg`` = the new
rule's id), plus the id again as ``rule_id``."""

RunAsync = Callable[[Coroutine[Any, Any, Any]], Any]


def _rules_table(rules: Sequence[DenyRule]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "rule_id": r.rule_id,
                "created_at": r.created_at,
                "created_by": r.created_by,
                "reason": r.reason,
                "match_expr": r.match_expr,
                "last_hit_at": r.last_hit_at,
            }
            for r in rules
        ],
        schema=LIST_QUERY_DENIALS_SCHEMA,
    )


def _text_arg(value: Any, function: str, what: str) -> str:
    if not isinstance(value, str):
        msg = f"{function}: {what} must be a string, got {value!r}"
        raise ValueError(msg)
    return value


def deny_list_table_functions(deny_list: DenyList, created_by: str) -> dict[str, TableFunction]:
    """``list_query_denials`` and ``deny_queries`` over ``deny_list`` (admin only).

    Args:
        deny_list: the service's deny list.
        created_by: who is asking (stored with the rules they add).
    """

    def list_denials(_ctx: datafusion.SessionContext, env: SqlEnvironment, _args: Sequence[Any]) -> pa.Table:
        return _rules_table(env.call_async(deny_list.list()))

    def deny(_ctx: datafusion.SessionContext, env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
        match_expr = _text_arg(args[0], "deny_queries", "match_expr")
        reason = _text_arg(args[1], "deny_queries", "reason")
        try:
            rule = env.call_async(deny_list.add(match_expr, reason, created_by))
        except MatchExpressionError as exc:
            msg = f"deny_queries: {exc}"
            raise ValueError(msg) from None
        now = datetime.now(UTC)
        return pa.table({"time": [now], "msg": [rule.rule_id], "rule_id": [rule.rule_id]}, schema=DENY_QUERIES_SCHEMA)

    functions = [
        TableFunction("list_query_denials", LIST_QUERY_DENIALS_SCHEMA, list_denials, (0,), admin_only=True),
        TableFunction("deny_queries", DENY_QUERIES_SCHEMA, deny, (2,), admin_only=True, mutates=True),
    ]
    return {fn.name: fn for fn in functions}


def deny_list_udfs(deny_list: DenyList, run_async: RunAsync) -> list[datafusion.ScalarUDF]:
    """``remove_query_denial(rule_id) → Utf8`` (register for admin callers only)."""

    def remove(rule_ids: pa.Array) -> pa.Array:
        out: list[str | None] = []
        for rule_id in rule_ids.to_pylist():
            if rule_id is None:
                out.append(None)
                continue
            try:
                removed = run_async(deny_list.remove(rule_id))
            except MatchExpressionError as exc:
                msg = f"remove_query_denial: {exc}"
                raise ValueError(msg) from None
            out.append(
                f"SUCCESS: removed query denial {rule_id}"
                if removed
                else f"ERROR: no query denial with rule_id {rule_id} (see list_query_denials())"
            )
        return pa.array(out, pa.utf8())

    return [udf(remove, [pa.utf8()], pa.utf8(), "volatile", "remove_query_denial")]
