"""The query deny list: admin rules refusing matching queries, stored in ``query_deny_list``.

A rule is a boolean SQL expression (``match_expr``) over the *match context* of a query, as in
Micromegas (``query_deny_list``, lakehouse schema v9): the nullable text columns ``user_id``,
``email``, ``service_account``, ``client``, ``agent``, ``entrypoint``, ``session``, ``notebook``,
``cell``, ``client_ip``, ``sql`` and ``sql_hash`` (the statement's literal-stripped fingerprint,
:func:`sql_fingerprint`). The expression language is the SQL subset rules need: ``=``, ``<>``/``!=``,
``[NOT] LIKE``/``ILIKE``, ``[NOT] IN (…)``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT``,
parentheses and ``'…'`` literals, evaluated with SQL's three-valued logic (a comparison with a
NULL column is unknown, and only a *true* rule denies). An expression that names no column
(``'a' = 'a'``) would deny everything and is refused.

:class:`DenyList` keeps the compiled rules of one service in memory (:meth:`DenyList.check` runs
on every query without touching PostgreSQL) and reloads them every
``MICROMEGAS_QUERY_DENY_REFRESH_SECONDS``; adding or removing a rule through it reloads at once.
A failed reload keeps the previous rules (fail-open: the list is an availability valve). The
oldest matching rule (``created_at``, then ``rule_id``) is the one reported. Hits are counted in
memory and flushed to ``last_hit_at`` at each reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from ._environment_variables import MICROMEGAS_QUERY_DENY_MAX_RULES, MICROMEGAS_QUERY_DENY_REFRESH_SECONDS
from ._exceptions import ConfigurationError
from ._pool import pg_errors

__all__ = [
    "MATCH_COLUMNS",
    "DenyList",
    "DenyRule",
    "MatchExpressionError",
    "compile_match_expr",
    "sql_fingerprint",
]

_LOG = logging.getLogger(__name__)

MATCH_COLUMNS = (
    "user_id",
    "email",
    "service_account",
    "client",
    "agent",
    "entrypoint",
    "session",
    "notebook",
    "cell",
    "client_ip",
    "sql",
    "sql_hash",
)
"""Columns a rule's expression may name (all nullable text)."""

DEFAULT_MAX_RULES = 100
MAX_REASON_CHARS = 1000
MAX_EXPR_CHARS = 4000


class MatchExpressionError(ValueError):
    """A ``match_expr`` that does not compile (the message says where and why)."""


# ---------------------------------------------------------------------------------------------
# SQL fingerprint

_SQL_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[eEnNxX]?'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op>::|<>|!=|<=|>=|\|\||->>|->|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def sql_fingerprint(sql: str) -> str:
    """First 16 hex digits of the SHA-256 of the normalised token stream of ``sql``.

    Literals (strings, numbers) become ``?``, whitespace and comments go, unquoted words are
    lower-cased and quoted identifiers kept verbatim, so dashboard refreshes that differ only in
    their time literals share one fingerprint (Micromegas's ``sql_hash`` rules).

    >>> sql_fingerprint("SELECT * FROM t WHERE x = 1") == sql_fingerprint("select *  from t where x=42")
    True
    """
    tokens = []
    for match in _SQL_TOKEN.finditer(sql):
        kind = match.lastgroup
        text = match.group()
        if kind in ("ws", "comment"):
            continue
        if kind in ("string", "number"):
            tokens.append("?")
        elif kind == "word":
            tokens.append(text.lower())
        else:
            tokens.append(text)
    return hashlib.sha256(" ".join(tokens).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# match expressions

_EXPR_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><>|!=|=|\(|\)|,)|(?P<bad>\S))"
)
_KEYWORDS = {"and", "or", "not", "like", "ilike", "in", "is", "null"}

Context = Mapping[str, str | None]
Predicate = Callable[[Context], bool | None]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, word, op, end
    text: str
    pos: int


def _tokens(expr: str) -> list[_Token]:
    out = []
    pos = 0
    while pos < len(expr):
        match = _EXPR_TOKEN.match(expr, pos)
        if match is None or match.end() == pos:  # only trailing whitespace left
            break
        kind = match.lastgroup or "bad"
        text = match.group(kind)
        start = match.start(kind)
        if kind == "bad":
            if text == "'":
                msg = f"unterminated string literal at position {start + 1}"
            else:
                msg = f"unexpected {text!r} at position {start + 1}"
            raise MatchExpressionError(msg)
        out.append(_Token(kind, text, start))
        pos = match.end()
    out.append(_Token("end", "", len(expr)))
    return out


def _like_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


class _Parser:
    """Recursive descent over the rule grammar; builds closures evaluated per query."""

    def __init__(self, expr: str) -> None:
        self._tokens = _tokens(expr)
        self._i = 0
        self.columns: set[str] = set()

    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _keyword(self, *words: str) -> bool:
        token = self._peek()
        if token.kind == "word" and token.text.lower() in words:
            self._i += 1
            return True
        return False

    def _expect_op(self, op: str) -> None:
        token = self._peek()
        if token.kind != "op" or token.text != op:
            raise self._error(f"expected {op!r}")
        self._i += 1

    def _error(self, what: str) -> MatchExpressionError:
        token = self._peek()
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return MatchExpressionError(f"{what} at position {token.pos + 1}, found {found}")

    def parse(self) -> Predicate:
        predicate = self._or()
        if self._peek().kind != "end":
            raise self._error("expected AND, OR or the end of the expression")
        return predicate

    def _or(self) -> Predicate:
        terms = [self._and()]
        while self._keyword("or"):
            terms.append(self._and())
        if len(terms) == 1:
            return terms[0]

        def any_of(ctx: Context) -> bool | None:
            values = [term(ctx) for term in terms]
            return True if True in values else None if None in values else False

        return any_of

    def _and(self) -> Predicate:
        terms = [self._not()]
        while self._keyword("and"):
            terms.append(self._not())
        if len(terms) == 1:
            return terms[0]

        def all_of(ctx: Context) -> bool | None:
            values = [term(ctx) for term in terms]
            return False if False in values else None if None in values else True

        return all_of

    def _not(self) -> Predicate:
        if self._keyword("not"):
            inner = self._not()
            return lambda ctx: _not(inner(ctx))
        return self._predicate()

    def _operand(self) -> Callable[[Context], str | None]:
        token = self._peek()
        if token.kind == "string":
            self._i += 1
            value = token.text[1:-1].replace("''", "'")
            return lambda _ctx: value
        if token.kind == "word" and token.text.lower() == "null":
            self._i += 1
            return lambda _ctx: None
        if token.kind == "word" and token.text.lower() not in _KEYWORDS:
            name = token.text.lower()
            if name not in MATCH_COLUMNS:
                msg = f"unknown column {token.text!r} at position {token.pos + 1}; columns: {', '.join(MATCH_COLUMNS)}"
                raise MatchExpressionError(msg)
            self._i += 1
            self.columns.add(name)
            return lambda ctx: ctx.get(name)
        raise self._error("expected a column name or a '…' string")

    def _predicate(self) -> Predicate:
        token = self._peek()
        if token.kind == "op" and token.text == "(":
            self._i += 1
            inner = self._or()
            self._expect_op(")")
            return inner
        left = self._operand()
        token = self._peek()
        if token.kind == "op" and token.text in ("=", "<>", "!="):
            self._i += 1
            right = self._operand()
            equal = token.text == "="

            def compare(ctx: Context) -> bool | None:
                a, b = left(ctx), right(ctx)
                return None if a is None or b is None else (a == b) == equal

            return compare
        if self._keyword("is"):
            negated = self._keyword("not")
            if not self._keyword("null"):
                raise self._error("expected NULL after IS")
            return lambda ctx: (left(ctx) is None) != negated
        negated = self._keyword("not")
        if self._keyword("like", "ilike"):
            ignore_case = self._tokens[self._i - 1].text.lower() == "ilike"
            pattern = self._peek()
            if pattern.kind != "string":
                raise self._error("expected a '…' pattern after LIKE")
            self._i += 1
            regex = _like_regex(pattern.text[1:-1].replace("''", "'"), ignore_case=ignore_case)

            def like(ctx: Context) -> bool | None:
                value = left(ctx)
                return None if value is None else (regex.fullmatch(value) is not None) != negated

            return like
        if self._keyword("in"):
            self._expect_op("(")
            items = [self._operand()]
            while self._peek().kind == "op" and self._peek().text == ",":
                self._i += 1
                items.append(self._operand())
            self._expect_op(")")

            def member(ctx: Context) -> bool | None:
                value = left(ctx)
                if value is None:
                    return None
                values = [item(ctx) for item in items]
                found = True if value in values else None if None in values else False
                return _not(found) if negated else found

            return member
        raise self._error("expected a comparison (=, <>, LIKE, ILIKE, IN, IS NULL)")


def compile_match_expr(expr: str) -> Predicate:
    """Compile a rule's expression to a predicate over a match context (a column → value mapping).

    Raises:
        MatchExpressionError: the expression is empty, too long, malformed, names an unknown
            column, or names no column at all.
    """
    if not isinstance(expr, str) or not expr.strip():
        msg = "the match expression is empty"
        raise MatchExpressionError(msg)
    if len(expr) > MAX_EXPR_CHARS:
        msg = f"the match expression is longer than {MAX_EXPR_CHARS} characters"
        raise MatchExpressionError(msg)
    parser = _Parser(expr)
    predicate = parser.parse()
    if not parser.columns:
        columns = ", ".join(MATCH_COLUMNS)
        msg = f"the match expression names no column, so it would deny every query; use one of: {columns}"
        raise MatchExpressionError(msg)
    return predicate


# ---------------------------------------------------------------------------------------------
# rules and their cache


@dataclass(frozen=True, slots=True)
class DenyRule:
    """One row of ``query_deny_list``."""

    rule_id: str
    created_at: datetime
    created_by: str
    reason: str
    match_expr: str
    last_hit_at: datetime | None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        msg = f"{name} must be a positive number, got {raw!r}"
        raise ConfigurationError(msg)
    return value


_COLUMNS = "rule_id, created_at, created_by, reason, match_expr, last_hit_at"
_INSERT = (
    "INSERT INTO query_deny_list (rule_id, created_at, created_by, reason, match_expr)"
    " VALUES ($1, now(), $2, $3, $4) RETURNING rule_id, created_at, created_by, reason, match_expr, last_hit_at"
)


def _rule(row: asyncpg.Record) -> DenyRule:
    return DenyRule(
        str(row["rule_id"]), row["created_at"], row["created_by"], row["reason"], row["match_expr"], row["last_hit_at"]
    )


class DenyList:
    """The deny rules of one service, compiled and cached (see the module docstring).

    Args:
        pool: PostgreSQL pool of the lakehouse (``query_deny_list``).
        refresh_seconds: reload period of :meth:`run_refresh`.
        max_rules: :meth:`add` refuses more rules than this.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, refresh_seconds: float = 10.0, max_rules: int = DEFAULT_MAX_RULES
    ) -> None:
        self._pool = pool
        self.refresh_seconds = refresh_seconds
        self.max_rules = max_rules
        self._rules: tuple[tuple[DenyRule, Predicate], ...] = ()
        self._hits: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self.refresh_errors = 0

    @classmethod
    def from_env(cls, pool: asyncpg.Pool, environ: Mapping[str, str] | None = None) -> DenyList:
        """A deny list configured by ``MICROMEGAS_QUERY_DENY_REFRESH_SECONDS`` and ``…_MAX_RULES``.

        Raises:
            ConfigurationError: a value that is not a positive number.
        """
        env = os.environ if environ is None else environ
        refresh = _positive(env, MICROMEGAS_QUERY_DENY_REFRESH_SECONDS, 10.0)
        max_rules = int(_positive(env, MICROMEGAS_QUERY_DENY_MAX_RULES, DEFAULT_MAX_RULES))
        return cls(pool, refresh_seconds=refresh, max_rules=max_rules)

    @property
    def rules(self) -> tuple[DenyRule, ...]:
        """The rules in force in this service (oldest first)."""
        return tuple(rule for rule, _ in self._rules)

    def check(self, context: Context) -> DenyRule | None:
        """The oldest rule denying a query with this match context, or None (no I/O)."""
        for rule, predicate in self._rules:
            if predicate(context) is True:
                with self._lock:
                    self._hits[rule.rule_id] = datetime.now(UTC)
                return rule
        return None

    async def refresh(self) -> None:
        """Flush hit times, then reload and recompile the rules (a rule that no longer compiles is skipped)."""
        with self._lock:
            hits, self._hits = self._hits, {}
        async with self._pool.acquire() as conn:
            with pg_errors("recording query denial hits"):
                for rule_id, at in hits.items():
                    await conn.execute(
                        "UPDATE query_deny_list SET last_hit_at = greatest(coalesce(last_hit_at, $2), $2)"
                        " WHERE rule_id = $1",
                        uuid.UUID(rule_id),
                        at,
                    )
            with pg_errors("reading the query deny list"):
                rows = await conn.fetch(f"SELECT {_COLUMNS} FROM query_deny_list ORDER BY created_at, rule_id")  # noqa: S608 - constant
        compiled = []
        for row in rows:
            rule = _rule(row)
            try:
                compiled.append((rule, compile_match_expr(rule.match_expr)))
            except MatchExpressionError as exc:
                _LOG.warning("query deny rule %s is not enforced: %s", rule.rule_id, exc)
        self._rules = tuple(compiled)

    async def run_refresh(self) -> None:
        """Reload forever every ``refresh_seconds`` (cancel to stop); failures keep the previous rules."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - fail open: keep serving with the last rules
                self.refresh_errors += 1
                _LOG.warning("query deny list refresh failed (previous rules kept): %s", exc)
            await asyncio.sleep(self.refresh_seconds)

    async def list(self) -> list[DenyRule]:
        """Every rule in PostgreSQL, oldest first."""
        async with self._pool.acquire() as conn:
            with pg_errors("listing query denials"):
                rows = await conn.fetch(f"SELECT {_COLUMNS} FROM query_deny_list ORDER BY created_at, rule_id")  # noqa: S608 - constant
        return [_rule(row) for row in rows]

    async def add(self, match_expr: str, reason: str, created_by: str) -> DenyRule:
        """Validate and store a rule, then reload this service's rules.

        Raises:
            MatchExpressionError: a bad expression, an empty or too long reason, too many rules.
        """
        compile_match_expr(match_expr)
        if not isinstance(reason, str) or not reason.strip():
            msg = "the reason is empty: say why the queries are denied"
            raise MatchExpressionError(msg)
        if len(reason) > MAX_REASON_CHARS:
            msg = f"the reason is longer than {MAX_REASON_CHARS} characters"
            raise MatchExpressionError(msg)
        rule_id = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            with pg_errors("adding a query denial"):
                await conn.execute("LOCK TABLE query_deny_list IN SHARE ROW EXCLUSIVE MODE")
                count = await conn.fetchval("SELECT count(*) FROM query_deny_list")
                if count >= self.max_rules:
                    msg = f"the deny list already holds {count} rules (limit {self.max_rules}); remove one first"
                    raise MatchExpressionError(msg)
                row = await conn.fetchrow(
                    _INSERT,
                    rule_id,
                    created_by[:255],
                    reason,
                    match_expr,
                )
        await self.refresh()
        return _rule(row)

    async def remove(self, rule_id: str) -> bool:
        """Delete a rule (False: there was none with this id), then reload this service's rules.

        Raises:
            MatchExpressionError: ``rule_id`` is not a UUID.
        """
        try:
            parsed = uuid.UUID(str(rule_id).strip())
        except ValueError:
            msg = f"{rule_id!r} is not a rule id (a UUID from list_query_denials())"
            raise MatchExpressionError(msg) from None
        async with self._pool.acquire() as conn:
            with pg_errors("removing a query denial"):
                status = await conn.execute("DELETE FROM query_deny_list WHERE rule_id = $1", parsed)
        await self.refresh()
        return status.endswith(" 1")
