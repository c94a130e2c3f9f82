"""Hex strings compared with the binary id columns (``trace_id``, ``span_id``, ``parent_span_id``).

``otel_spans`` and ``log_entries`` store OpenTelemetry ids as ``FixedSizeBinary`` (16 bytes for
a trace id, 8 for a span id). DataFusion cannot compare those with a string, so
``WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'`` fails to plan. People (and tools) write
ids in hex, so :func:`plan_sql` accepts that form:

* the SQL text is scanned for a string literal compared with one of the id columns
  (``col = '…'``, ``'…' = col``, ``<>``/``!=``/``<``/``<=``/``>``/``>=``, ``col [NOT] IN ('…', …)``,
  the column optionally qualified or double-quoted);
* when there is such a comparison, the statement is planned as written first. Only if
  DataFusion rejects it for comparing a binary column with a string are those literals turned
  into binary literals (``'4bf9…'`` → ``X'4bf9…'``) and the statement planned again. A column
  that merely carries the name (``SELECT encode(trace_id, 'hex') AS trace_id …``) is a string
  column, plans as written and keeps its meaning.

A binary literal compares with the ``FixedSizeBinary`` column directly, so the Parquet min/max
statistics still prune (the global ``otel_spans`` partitions are sorted by ``trace_id``: a
lookup reads one row group per file). A literal that is not an id in hex (wrong length, not
hex) is reported as an error naming the expected form, instead of matching nothing.

A statement comparing an id column with a literal (hex string, ``X'…'`` or ``from_hex``) is
planned with Parquet filter pushdown on: the scan then decodes the other columns only for the
rows that match. Query sessions leave pushdown off otherwise (``SessionSettings``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import datafusion

from ._sql_functions import OVERLOADS
from ._sql_overloads import plan_with_overloads

__all__ = [
    "ID_COLUMNS",
    "PUSHDOWN_OPTION",
    "HexLiteral",
    "find_hex_id_literals",
    "is_id_coercion_error",
    "is_id_lookup",
    "plan_sql",
    "rewrite_hex_ids",
]

ID_COLUMNS: dict[str, int] = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
"""Binary id columns by name, with their size in bytes."""

PUSHDOWN_OPTION = "datafusion.execution.parquet.pushdown_filters"
"""The DataFusion option switched on for lookups by id."""

_ID_LOOKUP = re.compile(r"\b(?:trace_id|span_id|parent_span_id)\s*=\s*(?:[xX]?'|from_hex\s*\()", re.IGNORECASE)


def is_id_lookup(sql: str) -> bool:
    """Whether ``sql`` compares a trace or span id column with a literal (a lookup by id).

    >>> is_id_lookup("SELECT * FROM otel_spans WHERE trace_id = X'00ff'")
    True
    >>> is_id_lookup("SELECT level, count(*) FROM log_entries GROUP BY level")
    False
    """
    return _ID_LOOKUP.search(sql) is not None


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op><>|!=|<=|>=|=|<|>|\|\||::)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_COMPARISONS = frozenset({"=", "<>", "!=", "<", "<=", ">", ">="})
# Tokens that may precede a column or literal that is a whole operand of a comparison (a
# keyword such as WHERE/AND/WHEN, a parenthesis or a comma), and tokens that may not follow
# one (they would bind it into a wider expression: ``x || trace_id``, ``'…'::bytea``).
_OPERAND_START = frozenset({"(", ",", "WORD"})
_BINDS_TIGHTER = frozenset({".", "(", "::", "||", "+", "-", "*", "/", "%", "["})
_HEX = re.compile(r"[0-9A-Fa-f]*")
# DataFusion's messages for a binary column compared with a string (both argument orders).
_COERCION_ERROR = re.compile(
    r"comparison operation (FixedSize)?Binary(\(\d+\))? \S+ Utf8"
    r"|comparison operation Utf8(View)? \S+ (FixedSize)?Binary"
    r"|compare (FixedSize)?Binary(\(\d+\))? with \[[^\]]*Utf8"
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int

    @property
    def key(self) -> str:
        """What the grammar checks: the operator or punctuation, ``WORD`` or the kind."""
        if self.kind in {"op", "other"}:
            return self.text
        return "WORD" if self.kind in {"word", "quoted"} else self.kind


@dataclass(frozen=True, slots=True)
class HexLiteral:
    """A string literal compared with a binary id column.

    Attributes:
        column: the id column's name (lower case).
        start: offset of the literal's opening quote in the SQL text.
        end: offset just past its closing quote.
        value: the literal's value (quotes removed, ``''`` unescaped).
    """

    column: str
    start: int
    end: int
    value: str

    @property
    def size(self) -> int:
        """Bytes of the column (16 for a trace id, 8 for a span id)."""
        return ID_COLUMNS[self.column]

    def problem(self) -> str | None:
        """Why the literal is not an id in hex, or None when it is one."""
        if len(self.value) == 2 * self.size and _HEX.fullmatch(self.value):
            return None
        return (
            f"{self.column} holds {self.size} bytes: compare it with a string of {2 * self.size} "
            f"hex digits (e.g. {self.column} = '{'0' * (2 * self.size - 1)}1'), got {self.value!r}"
        )


def _tokens(sql: str) -> list[_Token]:
    out = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        if kind not in {"space", "comment"}:
            out.append(_Token(kind, match.group(), match.start(), match.end()))
    return out


def _id_column(token: _Token) -> str | None:
    if token.kind == "word" and token.text.lower() in ID_COLUMNS:
        return token.text.lower()
    if token.kind == "quoted" and token.text[1:-1] in ID_COLUMNS:
        return token.text[1:-1]
    return None


def _column_at(tokens: list[_Token], i: int) -> tuple[str, int, int] | None:
    """``(name, first, last)`` when an id column reference (maybe qualified) ends at ``i``."""
    name = _id_column(tokens[i]) if 0 <= i < len(tokens) else None
    if name is None:
        return None
    first = i
    while first >= 2 and tokens[first - 1].text == "." and tokens[first - 2].kind in {"word", "quoted"}:
        first -= 2
    return name, first, i


def _column_from(tokens: list[_Token], i: int) -> tuple[str, int, int] | None:
    """``(name, first, last)`` when an id column reference (maybe qualified) starts at ``i``."""
    last = i
    while last + 2 < len(tokens) and tokens[last].kind in {"word", "quoted"} and tokens[last + 1].text == ".":
        last += 2
    column = _column_at(tokens, last)
    return column if column is not None and column[1] == i else None


def _is_operand(tokens: list[_Token], before: int, after: int) -> bool:
    """True when the tokens around a column or literal do not bind it into a wider expression."""
    prev_ok = before < 0 or tokens[before].key in _OPERAND_START
    next_ok = after >= len(tokens) or tokens[after].text not in _BINDS_TIGHTER
    return prev_ok and next_ok


def _literal(token: _Token, column: str) -> HexLiteral:
    return HexLiteral(column, token.start, token.end, token.text[1:-1].replace("''", "'"))


def find_hex_id_literals(sql: str) -> list[HexLiteral]:
    """String literals compared with an id column, in text order.

    >>> sql = "SELECT 1 FROM s WHERE s.trace_id = 'ab' OR 'cd' <> s.span_id"
    >>> [(h.column, h.value) for h in find_hex_id_literals(sql)]
    [('trace_id', 'ab'), ('span_id', 'cd')]
    >>> [h.value for h in find_hex_id_literals("SELECT 1 FROM s WHERE trace_id NOT IN ('a', 'b')")]
    ['a', 'b']
    >>> find_hex_id_literals("SELECT encode(trace_id, 'hex') = 'ab', trace_id || 'x' = 'ab' FROM s")
    []
    """
    tokens = _tokens(sql)
    found: list[HexLiteral] = []
    for i, token in enumerate(tokens):
        if token.text in _COMPARISONS and 0 < i < len(tokens) - 1:
            left, right = tokens[i - 1], tokens[i + 1]
            column = _column_at(tokens, i - 1)
            if column and right.kind == "string" and _is_operand(tokens, column[1] - 1, i + 2):
                found.append(_literal(right, column[0]))
                continue
            column = _column_from(tokens, i + 1) if left.kind == "string" else None
            if column and _is_operand(tokens, i - 2, column[2] + 1):
                found.append(_literal(left, column[0]))
        elif token.kind == "word" and token.text.upper() == "IN":
            found.extend(_in_list(tokens, i))
    return sorted(found, key=lambda h: h.start)


def _in_list(tokens: list[_Token], i: int) -> list[HexLiteral]:
    """The literals of ``col [NOT] IN ('…', …)`` when ``tokens[i]`` is the ``IN``."""
    j = i - 1
    if j >= 0 and tokens[j].kind == "word" and tokens[j].text.upper() == "NOT":
        j -= 1
    column = _column_at(tokens, j)
    if column is None or not _is_operand(tokens, column[1] - 1, j + 1) or i + 1 >= len(tokens):
        return []
    if tokens[i + 1].text != "(":
        return []
    literals, k = [], i + 2
    while k < len(tokens) and tokens[k].kind == "string":
        literals.append(_literal(tokens[k], column[0]))
        if k + 1 < len(tokens) and tokens[k + 1].text == ",":
            k += 2
            continue
        return literals if k + 1 < len(tokens) and tokens[k + 1].text == ")" else []
    return []


def rewrite_hex_ids(sql: str, literals: list[HexLiteral] | None = None) -> str:
    """``sql`` with the given (default: every) id literal written as a binary literal.

    Raises:
        ValueError: a literal is not an id in hex of the column's size.

    >>> rewrite_hex_ids("SELECT * FROM otel_spans WHERE trace_id = '0A' || 'x'")
    "SELECT * FROM otel_spans WHERE trace_id = '0A' || 'x'"
    >>> rewrite_hex_ids("SELECT * FROM otel_spans WHERE span_id IN ('00000000000000AB')")
    "SELECT * FROM otel_spans WHERE span_id IN (X'00000000000000ab')"
    """
    out, last = [], 0
    for literal in find_hex_id_literals(sql) if literals is None else literals:
        problem = literal.problem()
        if problem is not None:
            msg = f"Error during planning: {problem}"
            raise ValueError(msg)
        out += [sql[last : literal.start], f"X'{literal.value.lower()}'"]
        last = literal.end
    out.append(sql[last:])
    return "".join(out)


def is_id_coercion_error(exc: BaseException) -> bool:
    """True when DataFusion refused to compare a binary column with a string."""
    return _COERCION_ERROR.search(str(exc)) is not None


def _plan(ctx: datafusion.SessionContext, sql: str) -> datafusion.DataFrame:
    """``ctx.sql``, with calls of multi-type functions pointed at their variants (``_sql_overloads``)."""
    return plan_with_overloads(ctx, sql, OVERLOADS)


def plan_sql(ctx: datafusion.SessionContext, sql: str) -> datafusion.DataFrame:
    """``ctx.sql(sql)``, accepting hex strings compared with the binary id columns.

    Statements without such a comparison are planned exactly as ``ctx.sql`` does (no extra
    work). Others are analysed once as written; only a rejected binary/string comparison makes
    them be planned again with binary literals.

    Raises:
        ValueError: an id literal is not hex of the column's size (only when the column is binary).
        Exception: DataFusion's planning errors, unchanged.
    """
    if is_id_lookup(sql):
        # Read when the scan is planned; measured 19 ms with it vs 77 ms without for a trace
        # among small one-row-group partitions (bench/README.md, bench/aggregates.py).
        ctx.sql(f"SET {PUSHDOWN_OPTION} = true").collect()
    literals = find_hex_id_literals(sql)
    if not literals:
        return _plan(ctx, sql)
    try:
        df = _plan(ctx, sql)
        # The type-coercion analyser runs when the plan is optimised, not in ctx.sql.
        df.optimized_logical_plan()
    except Exception as exc:
        if not is_id_coercion_error(exc):
            raise
        return _plan(ctx, rewrite_hex_ids(sql, literals))
    return df
