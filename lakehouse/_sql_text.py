"""SQL text scanning: the calls of named functions, outside literals, quoted names and comments.

Table functions (``_sql_table_functions``), UDF overloads chosen by arity (``_sql_overloads``,
``_sql_functions``) and bound parameters (``_sql_parameters``) all rewrite SQL text before
DataFusion sees it; they share this one scanner so they agree on what is text and what is code:
``'…'`` literals and ``"…"`` identifiers (doubled quotes escape), ``--`` and ``/* */`` comments,
and ``$$…$$`` / ``$tag$…$tag$`` bodies (the queries of view DDL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SqlCall", "find_calls", "rename_calls_by_arity", "skip_comment", "skip_quoted", "skip_text"]


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class SqlCall:
    """One ``name(args)`` occurrence in a SQL text: ``sql[start:end]`` is the whole call."""

    name: str
    start: int
    end: int
    args: tuple[str, ...]


def skip_quoted(sql: str, i: int, quote: str) -> int:
    """Index just past the literal or quoted identifier opening at ``i`` (doubled quotes escape)."""
    j = i + 1
    while j < len(sql):
        if sql[j] == quote:
            if j + 1 < len(sql) and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return len(sql)


def skip_comment(sql: str, i: int) -> int | None:
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    return None


def skip_text(sql: str, i: int) -> int | None:
    """Index just past the quoted literal/identifier or comment opening at ``i``; None if none does."""
    ch = sql[i]
    if ch in "'\"":
        return skip_quoted(sql, i, ch)
    return skip_comment(sql, i)


def _split_args(sql: str, open_paren: int) -> tuple[tuple[str, ...], int] | None:
    """Top-level comma-separated arguments after ``(`` at ``open_paren``; None if unbalanced."""
    depth, i, start, args = 0, open_paren + 1, open_paren + 1, []
    while i < len(sql):
        skipped = skip_text(sql, i)
        if skipped is not None:
            i = skipped
            continue
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                text = sql[start:i].strip()
                if text or args:
                    args.append(text)
                return tuple(args), i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(sql[start:i].strip())
            start = i + 1
        i += 1
    return None


def find_calls(sql: str, names: set[str]) -> list[SqlCall]:
    """Every call of one of ``names`` (lower-case) in ``sql``, outermost first, in text order.

    Calls nested inside another found call's arguments are not reported separately.
    """
    calls: list[SqlCall] = []
    i = 0
    while i < len(sql):
        skipped = skip_text(sql, i)
        if skipped is not None:
            i = skipped
            continue
        dollar = _DOLLAR_QUOTE.match(sql, i) if sql[i] == "$" else None
        if dollar is not None:  # $$…$$ / $tag$…$tag$ (the queries of view DDL) are text, not calls
            end = sql.find(dollar.group(), dollar.end())
            i = len(sql) if end < 0 else end + len(dollar.group())
            continue
        match = _WORD.match(sql, i)
        if match is None:
            i += 1
            continue
        word_end = match.end()
        preceded_by_dot = i > 0 and sql[i - 1] == "."
        j = word_end
        while j < len(sql) and sql[j].isspace():
            j += 1
        name = match.group().lower()
        if name in names and not preceded_by_dot and j < len(sql) and sql[j] == "(":
            parsed = _split_args(sql, j)
            if parsed is not None:
                args, end = parsed
                calls.append(SqlCall(name, i, end, args))
                i = end
                continue
        i = word_end
    return calls


def rename_calls_by_arity(sql: str, renames: dict[tuple[str, int], str]) -> str:
    """Rename ``name(…)`` calls by argument count (lets one SQL name have several UDF arities).

    >>> rename_calls_by_arity("SELECT f(1, 2), f(3)", {("f", 1): "f_1"})
    'SELECT f(1, 2), f_1(3)'
    """
    names = {name for name, _ in renames}
    out, last = [], 0
    for call in find_calls(sql, names):
        name_end = call.start + len(call.name)
        open_paren = sql.index("(", name_end)
        new_name = renames.get((call.name, len(call.args)), sql[call.start : name_end])
        args = ", ".join(rename_calls_by_arity(arg, renames) for arg in call.args)
        out += [sql[last : call.start], new_name, sql[name_end:open_paren], "(", args, ")"]
        last = call.end
    out.append(sql[last:])
    return "".join(out)
