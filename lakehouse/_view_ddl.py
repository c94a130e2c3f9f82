"""The view DDL: ``CREATE [OR REPLACE] MATERIALIZED VIEW`` and ``DROP MATERIALIZED VIEW``.

Micromegas 0.32 accepts, as ordinary queries::

    CREATE [OR REPLACE] MATERIALIZED VIEW name WITH (
        extract_query = $$ … $$, count_src_query = $$ … $$, merge_partitions_query = $$ … $$,
        update_group = 4000, time_column = 'time_bin'
        [, min_time_column = '…', max_time_column = '…', source_partition_delta = '1 day',
           merge_partition_delta = '1 day', merge_sort_order = 'a, b'])
    DROP MATERIALIZED VIEW [IF EXISTS] name

:func:`parse_view_ddl` recognises them (``None`` for any other statement) and checks their
shape: option values are single-quoted or dollar-quoted strings or integers, unknown or repeated
options, missing required ones and trailing text are errors (``ValueError`` with the reason).
Comments may appear between tokens. What the queries mean is checked when the definition is
applied (``_view_definition_sets.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._view_definitions import ViewDefinition, ViewOptions

__all__ = [
    "CreateView",
    "DropView",
    "ViewDdl",
    "is_view_ddl",
    "parse_time_delta_ns",
    "parse_view_ddl",
    "sql_identifiers",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?\d+")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_REQUIRED = ("extract_query", "count_src_query", "merge_partitions_query", "update_group", "time_column")
_OPTIONAL = (
    "min_time_column",
    "max_time_column",
    "source_partition_delta",
    "merge_partition_delta",
    "merge_sort_order",
)
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class CreateView:
    """A parsed ``CREATE [OR REPLACE] MATERIALIZED VIEW``."""

    definition: ViewDefinition
    or_replace: bool


@dataclass(frozen=True, slots=True)
class DropView:
    """A parsed ``DROP MATERIALIZED VIEW``."""

    name: str
    if_exists: bool


ViewDdl = CreateView | DropView


def parse_time_delta_ns(text: str) -> int:
    """``'<n> <unit>'`` (second, minute, hour, day; singular or plural) in nanoseconds.

    Raises:
        ValueError: not of that shape, or not positive.
    """
    parts = text.strip().split()
    unit = parts[1].lower().removesuffix("s") if len(parts) == 2 else ""
    if unit not in _UNITS or not _INT.fullmatch(parts[0]) or int(parts[0]) <= 0:
        msg = f"expected a positive '<n> <unit>' (second, minute, hour, day), got {text!r}"
        raise ValueError(msg)
    return int(parts[0]) * _UNITS[unit] * 1_000_000_000


class _Lexer:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.i = 0

    def skip(self) -> None:
        sql = self.sql
        while self.i < len(sql):
            if sql[self.i].isspace():
                self.i += 1
            elif sql.startswith("--", self.i):
                end = sql.find("\n", self.i)
                self.i = len(sql) if end < 0 else end + 1
            elif sql.startswith("/*", self.i):
                end = sql.find("*/", self.i + 2)
                if end < 0:
                    msg = "unterminated /* comment"
                    raise ValueError(msg)
                self.i = end + 2
            else:
                return

    def word(self) -> str | None:
        self.skip()
        match = _NAME.match(self.sql, self.i)
        if match is None:
            return None
        self.i = match.end()
        return match.group()

    def peek_word(self) -> str | None:
        start = self.i
        try:
            return self.word()
        finally:
            self.i = start

    def keyword(self, *words: str) -> bool:
        start = self.i
        for expected in words:
            got = self.word()
            if got is None or got.upper() != expected:
                self.i = start
                return False
        return True

    def expect(self, *words: str) -> None:
        if not self.keyword(*words):
            msg = f"expected {' '.join(words)} {self.where()}"
            raise ValueError(msg)

    def punct(self, char: str) -> bool:
        self.skip()
        if self.sql.startswith(char, self.i):
            self.i += len(char)
            return True
        return False

    def where(self) -> str:
        self.skip()
        if self.i >= len(self.sql):
            return "at the end of the statement"
        return f"at {self.sql[self.i : self.i + 30]!r}"

    def value(self, option: str) -> str | int:
        self.skip()
        sql = self.sql
        if sql.startswith("'", self.i):
            out, j = [], self.i + 1
            while j < len(sql):
                if sql[j] == "'":
                    if sql.startswith("''", j):
                        out.append("'")
                        j += 2
                        continue
                    self.i = j + 1
                    return "".join(out)
                out.append(sql[j])
                j += 1
            msg = f"option {option}: unterminated string literal"
            raise ValueError(msg)
        dollar = _DOLLAR.match(sql, self.i)
        if dollar is not None:
            tag = dollar.group()
            end = sql.find(tag, dollar.end())
            if end < 0:
                msg = f"option {option}: unterminated {tag} string"
                raise ValueError(msg)
            self.i = end + len(tag)
            return sql[dollar.end() : end]
        number = _INT.match(sql, self.i)
        if number is not None:
            self.i = number.end()
            return int(number.group())
        msg = f"option {option}: expected a string ('…' or $$…$$) or an integer {self.where()}"
        raise ValueError(msg)

    def end(self) -> None:
        self.punct(";")
        self.skip()
        if self.i < len(self.sql):
            msg = f"unexpected text after the statement {self.where()} (one statement per query)"
            raise ValueError(msg)


def _is_view_ddl(lex: _Lexer) -> bool:
    start = lex.i
    try:
        first = (lex.word() or "").upper()
        if first == "DROP":
            return (lex.word() or "").upper() == "MATERIALIZED"
        if first != "CREATE":
            return False
        if lex.keyword("OR", "REPLACE"):
            pass
        return (lex.word() or "").upper() == "MATERIALIZED"
    finally:
        lex.i = start


def _name(lex: _Lexer) -> str:
    name = lex.word()
    if name is None:
        msg = f"expected a view set name {lex.where()}"
        raise ValueError(msg)
    return name


def _options(lex: _Lexer) -> dict[str, str | int]:
    lex.expect("WITH")
    if not lex.punct("("):
        msg = f"expected ( after WITH {lex.where()}"
        raise ValueError(msg)
    options: dict[str, str | int] = {}
    while True:
        key = lex.word()
        if key is None:
            msg = f"expected an option name {lex.where()}"
            raise ValueError(msg)
        key = key.lower()
        if key not in _REQUIRED and key not in _OPTIONAL:
            known = ", ".join((*_REQUIRED, *_OPTIONAL))
            msg = f"unknown option {key!r} (known: {known})"
            raise ValueError(msg)
        if key in options:
            msg = f"option {key} is given twice"
            raise ValueError(msg)
        if not lex.punct("="):
            msg = f"expected = after {key} {lex.where()}"
            raise ValueError(msg)
        options[key] = lex.value(key)
        if lex.punct(")"):
            return options
        if not lex.punct(","):
            msg = f"expected , or ) after option {key} {lex.where()}"
            raise ValueError(msg)


def _text(options: dict[str, str | int], key: str) -> str:
    value = options[key]
    if not isinstance(value, str) or not value.strip():
        msg = f"option {key} must be a non-empty string"
        raise ValueError(msg)
    return value


def _definition(name: str, options: dict[str, str | int], sql: str) -> ViewDefinition:
    missing = [key for key in _REQUIRED if key not in options]
    if missing:
        msg = f"CREATE MATERIALIZED VIEW {name}: missing required option(s) {', '.join(missing)}"
        raise ValueError(msg)
    group = options["update_group"]
    if not isinstance(group, int) or not 0 < group < 2**31:
        msg = "option update_group must be a positive integer"
        raise ValueError(msg)
    time_column = _text(options, "time_column")
    source_delta = _text(options, "source_partition_delta") if "source_partition_delta" in options else "1 day"
    merge_delta = _text(options, "merge_partition_delta") if "merge_partition_delta" in options else source_delta
    for key, delta in (("source_partition_delta", source_delta), ("merge_partition_delta", merge_delta)):
        try:
            parse_time_delta_ns(delta)
        except ValueError as exc:
            msg = f"option {key}: {exc}"
            raise ValueError(msg) from None
    order = None
    if "merge_sort_order" in options:
        order = tuple(c.strip() for c in _text(options, "merge_sort_order").split(","))
        if not all(_NAME.fullmatch(c) for c in order):
            msg = "option merge_sort_order must be a comma-separated list of column names"
            raise ValueError(msg)
    view_options = ViewOptions(
        min_time_column=_text(options, "min_time_column") if "min_time_column" in options else time_column,
        max_time_column=_text(options, "max_time_column") if "max_time_column" in options else time_column,
        source_partition_delta=source_delta,
        merge_partition_delta=merge_delta,
        merge_sort_order=order,
    )
    return ViewDefinition(
        view_set_name=name,
        extract_query=_text(options, "extract_query"),
        count_src_query=_text(options, "count_src_query"),
        merge_partitions_query=_text(options, "merge_partitions_query"),
        update_group=group,
        options=view_options,
        definition_sql=sql,
    )


def sql_identifiers(sql: str) -> set[str]:
    """Lower-case identifiers of ``sql`` outside string literals and comments.

    >>> sorted(sql_identifiers("SELECT Level FROM log_entries WHERE msg = 'from measures' -- blocks"))
    ['from', 'level', 'log_entries', 'msg', 'select', 'where']
    """
    text = re.sub(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return {w.lower() for w in _NAME.findall(text)}


def is_view_ddl(sql: str) -> bool:
    """Whether ``sql`` starts as ``CREATE [OR REPLACE] MATERIALIZED`` or ``DROP MATERIALIZED`` (cheap)."""
    try:
        return _is_view_ddl(_Lexer(sql))
    except ValueError:  # an unterminated leading comment: not DDL, DataFusion reports it
        return False


def parse_view_ddl(sql: str) -> ViewDdl | None:
    """The view DDL statement ``sql`` holds, or None when it is another kind of statement.

    Raises:
        ValueError: it is view DDL but malformed (the message says what and where).
    """
    lex = _Lexer(sql)
    if not _is_view_ddl(lex):
        return None
    if lex.keyword("DROP"):
        lex.expect("MATERIALIZED", "VIEW")
        if_exists = lex.keyword("IF", "EXISTS")
        name = _name(lex)
        lex.end()
        return DropView(name, if_exists)
    lex.expect("CREATE")
    or_replace = lex.keyword("OR", "REPLACE")
    lex.expect("MATERIALIZED", "VIEW")
    name = _name(lex)
    if (lex.peek_word() or "").upper() == "AS":
        msg = "CREATE MATERIALIZED VIEW takes its queries as WITH options (extract_query = $$…$$, …), not AS"
        raise ValueError(msg)
    options = _options(lex)
    lex.end()
    return CreateView(_definition(name, options, sql.strip()), or_replace)
