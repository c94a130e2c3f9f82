"""SQL/JSON path expressions over JSONB values: ``jsonb_path_query`` and ``jsonb_path_query_first``.

The path language is the SQL/JSON one (PostgreSQL, databend), in lax mode:

* ``$`` the root; ``.key``, ``."quoted key"``, ``.*`` (every member value);
* ``[n]``, ``[n, m]``, ``[n to m]``, ``[last]``, ``[last - n]``, ``[*]`` on arrays (a negative or
  out-of-range index selects nothing);
* member accessors on an array apply to each element (lax unwrapping, one level);
* a filter ``? (predicate)`` after any step keeps the items it holds for. Predicates compare
  ``@``-relative paths (or ``$``-absolute ones) with literals or other paths: ``==``, ``!=`` /
  ``<>``, ``<``, ``<=``, ``>``, ``>=``; combine them with ``&&``, ``||``, ``!`` and parentheses;
  ``exists(path)``, ``path starts with "prefix"``. Literals: ``"strings"`` (JSON escapes),
  numbers, ``true``, ``false``, ``null``. A comparison holds when some pair of the two sides'
  items compares true; values of different JSON types never compare (``null == null`` holds).

JavaScript-style filters (``$[?(@.a)]``) are a syntax error, as in Micromegas. A path that does
not parse raises :class:`JsonPathError` (a ``ValueError``) naming the position.

``jsonb_path_query(jsonb, path) → Dictionary(Int32, Binary)`` returns the JSONB array of every
match (``[]`` for none); ``jsonb_path_query_first`` the first match, or NULL. Each path is parsed
once per batch and each distinct JSONB value decoded once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ._sql_jsonb import DICT_BINARY, decode_jsonb, dictionary_result, encode_jsonb, keyed_values

__all__ = ["JsonPath", "JsonPathError", "jsonb_path_udfs", "parse_json_path"]

_PATH_CACHE = 256  # parsed paths kept per function (per session)


class JsonPathError(ValueError):
    """A JSONPath expression that does not parse."""


# ---------------------------------------------------------------------------------------------
# tokens

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<op>==|!=|<>|<=|>=|&&|\|\||[<>!$@.\[\]*,?()\-])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            msg = f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}"
            raise JsonPathError(msg)
        kind = match.lastgroup or "op"
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------------------------
# syntax tree

Step = tuple[str, Any]
"""``("key", name)``, ``("wild", None)``, ``("index", [(lo, hi), …])``, ``("all", None)``,
``("filter", predicate)``; indices are ``(from_last, offset)`` pairs."""


@dataclass(frozen=True)
class JsonPath:
    """A parsed path: ``absolute`` (``$``) or relative (``@``, inside filters) and its steps."""

    absolute: bool
    steps: tuple[Step, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, what: str) -> JsonPathError:
        tok = self.tok
        found = "end of path" if tok.kind == "end" else repr(tok.text)
        return JsonPathError(f"{what}, found {found} at position {tok.pos}")

    def accept(self, text: str) -> bool:
        if self.tok.kind in ("op", "word") and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {text!r}")

    def path(self) -> JsonPath:
        if self.accept("$"):
            absolute = True
        elif self.accept("@"):
            absolute = False
        else:
            raise self.error("a path starts with '$' or '@'")
        steps: list[Step] = []
        while True:
            if self.accept("."):
                steps.append(self.member())
            elif self.accept("["):
                steps.append(self.subscript())
            elif self.tok.text == "?" and self.tok.kind == "op":
                self.i += 1
                if self.tok.text != "(":
                    raise self.error("expected '(' after '?'")
                self.i += 1
                steps.append(("filter", self.disjunction()))
                self.expect(")")
            else:
                return JsonPath(absolute, tuple(steps))

    def member(self) -> Step:
        tok = self.tok
        if tok.kind == "op" and tok.text == "*":
            self.i += 1
            return ("wild", None)
        if tok.kind == "word":
            self.i += 1
            return ("key", tok.text)
        if tok.kind == "string":
            self.i += 1
            return ("key", _string(tok))
        raise self.error("expected a member name after '.'")

    def subscript(self) -> Step:
        if self.accept("*"):
            self.expect("]")
            return ("all", None)
        ranges = []
        while True:
            lo = self.index()
            hi = self.index() if self.accept("to") else lo
            ranges.append((lo, hi))
            if self.accept("]"):
                return ("index", tuple(ranges))
            self.expect(",")

    def index(self) -> tuple[bool, int]:
        if self.accept("last"):
            if self.accept("-"):
                return True, -self.integer()
            if self.tok.kind == "number" and self.tok.text.startswith("-"):
                return True, self.integer()  # "last-1" lexes as last, -1
            return True, 0
        return False, self.integer()

    def integer(self) -> int:
        tok = self.tok
        if tok.kind != "number" or not re.fullmatch(r"-?\d+", tok.text):
            raise self.error("expected an array index")
        self.i += 1
        return int(tok.text)

    # predicates ------------------------------------------------------------------------------

    def disjunction(self) -> Any:
        left = self.conjunction()
        while self.accept("||"):
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> Any:
        left = self.negation()
        while self.accept("&&"):
            left = ("and", left, self.negation())
        return left

    def negation(self) -> Any:
        if self.accept("!"):
            return ("not", self.negation())
        if self.tok.kind == "op" and self.tok.text == "(":
            start = self.i
            self.i += 1
            inner = self.disjunction()
            if self.accept(")"):
                return inner
            self.i = start  # not a parenthesised predicate
        return self.comparison()

    def comparison(self) -> Any:
        if self.tok.kind == "word" and self.tok.text == "exists":
            self.i += 1
            self.expect("(")
            inner = self.path()
            self.expect(")")
            return ("exists", inner)
        left = self.operand()
        if self.tok.kind == "word" and self.tok.text == "starts":
            self.i += 1
            self.expect("with")
            tok = self.tok
            if tok.kind != "string":
                raise self.error("expected a string after 'starts with'")
            self.i += 1
            return ("starts", left, _string(tok))
        op = self.tok.text if self.tok.kind == "op" else ""
        if op not in ("==", "!=", "<>", "<", "<=", ">", ">="):
            raise self.error("expected a comparison operator")
        self.i += 1
        return ("cmp", "!=" if op == "<>" else op, left, self.operand())

    def operand(self) -> Any:
        tok = self.tok
        if tok.kind == "op" and tok.text in ("$", "@"):
            return ("path", self.path())
        if tok.kind == "string":
            self.i += 1
            return ("lit", _string(tok))
        if tok.kind == "number":
            self.i += 1
            number = float(tok.text)
            return ("lit", int(tok.text) if re.fullmatch(r"-?\d+", tok.text) else number)
        if tok.kind == "word" and tok.text in ("true", "false", "null"):
            self.i += 1
            return ("lit", {"true": True, "false": False, "null": None}[tok.text])
        raise self.error("expected a path or a literal")


def _string(tok: _Token) -> str:
    try:
        value = json.loads(tok.text)
    except json.JSONDecodeError as exc:
        msg = f"bad string literal at position {tok.pos}: {exc.msg}"
        raise JsonPathError(msg) from exc
    return str(value)


def parse_json_path(text: str) -> JsonPath:
    """Parse a SQL/JSON path (must start with ``$``).

    Raises:
        JsonPathError: the text is not a path; the message names the position.

    >>> parse_json_path('$.a[*] ? (@.b == "x")').steps[0]
    ('key', 'a')
    """
    parser = _Parser(text)
    if parser.tok.kind == "end":
        msg = "empty JSONPath"
        raise JsonPathError(msg)
    if not (parser.tok.kind == "op" and parser.tok.text == "$"):
        raise parser.error("a JSONPath starts with '$'")
    path = parser.path()
    if parser.tok.kind != "end":
        raise parser.error("unexpected text after the path")
    return path


# ---------------------------------------------------------------------------------------------
# evaluation


def _indices(length: int, ranges: tuple[tuple[tuple[bool, int], tuple[bool, int]], ...]) -> Iterator[int]:
    for (lo_last, lo), (hi_last, hi) in ranges:
        start = length - 1 + lo if lo_last else lo
        stop = length - 1 + hi if hi_last else hi
        yield from range(max(start, 0), min(stop, length - 1) + 1)


def _members(item: Any, key: str | None) -> Iterator[Any]:
    """Values of ``key`` (every value when None) in an object, or in each object of an array (lax)."""
    objects = (
        [item] if isinstance(item, dict) else [e for e in item if isinstance(e, dict)] if isinstance(item, list) else []
    )
    for obj in objects:
        if key is None:
            yield from obj.values()
        elif key in obj:
            yield obj[key]


def _apply(step: Step, item: Any, root: Any) -> Iterator[Any]:
    kind, arg = step
    if kind in ("key", "wild"):
        yield from _members(item, arg)
    elif kind == "all":
        yield from item if isinstance(item, list) else [item]
    elif kind == "index":
        elements = item if isinstance(item, list) else [item]
        for i in _indices(len(elements), arg):
            yield elements[i]
    elif _holds(arg, item, root):  # filter
        yield item


def evaluate(path: JsonPath, root: Any, current: Any = None) -> list[Any]:
    """Every item ``path`` selects in ``root`` (``@`` is ``current`` for relative paths)."""
    items = [root if path.absolute else current]
    for step in path.steps:
        items = [out for item in items for out in _apply(step, item, root)]
    return items


def _operand(operand: Any, current: Any, root: Any) -> list[Any]:
    if operand[0] == "lit":
        return [operand[1]]
    return evaluate(operand[1], root, current)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "container"


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(op: str, a: Any, b: Any) -> bool:
    kind = _kind(a)
    if kind != _kind(b) or kind == "container":
        return False
    if kind in ("null", "bool") and op not in ("==", "!="):
        return False
    return _COMPARE[op](a, b)


def _holds(predicate: Any, current: Any, root: Any) -> bool:
    kind = predicate[0]
    if kind == "and":
        return _holds(predicate[1], current, root) and _holds(predicate[2], current, root)
    if kind == "or":
        return _holds(predicate[1], current, root) or _holds(predicate[2], current, root)
    if kind == "not":
        return not _holds(predicate[1], current, root)
    if kind == "exists":
        return bool(evaluate(predicate[1], root, current))
    if kind == "starts":
        return any(isinstance(v, str) and v.startswith(predicate[2]) for v in _operand(predicate[1], current, root))
    _, op, left, right = predicate
    rights = _operand(right, current, root)
    return any(_compare(op, a, b) for a in _operand(left, current, root) for b in rights)


# ---------------------------------------------------------------------------------------------
# UDF bodies


def _query(first: bool) -> Callable[[pa.Array, pa.Array], pa.Array]:
    name = "jsonb_path_query_first" if first else "jsonb_path_query"
    parsed: dict[str, JsonPath] = {}

    def path_of(text: str) -> JsonPath:
        path = parsed.get(text)
        if path is None:
            try:
                path = parse_json_path(text)
            except JsonPathError as exc:
                msg = f"{name}: invalid JSONPath '{text}': {exc}"
                raise ValueError(msg) from exc
            if len(parsed) < _PATH_CACHE:
                parsed[text] = path
        return path

    def one(raw: bytes, text: str) -> bytes | None:
        matches = evaluate(path_of(text), decode_jsonb(raw))
        if first:
            return encode_jsonb(matches[0]) if matches else None
        return encode_jsonb(matches)

    def udf(values: pa.Array, paths: pa.Array) -> pa.Array:
        # one evaluation per distinct JSONB value when the path is the same on every row
        indices, results = keyed_values(values, paths, one, pa.binary())
        return dictionary_result(indices, results, pa.binary())

    return udf


def jsonb_path_udfs() -> list[tuple[str, Callable[..., pa.Array], list[pa.DataType], pa.DataType]]:
    """``(name, function, input types, return type)`` of the JSONPath functions.

    JSONB arguments are ``Dictionary(Int32, Binary)``; plain ``Binary`` goes through the overloads.
    """
    return [
        ("jsonb_path_query", _query(False), [DICT_BINARY, pa.utf8()], DICT_BINARY),
        ("jsonb_path_query_first", _query(True), [DICT_BINARY, pa.utf8()], DICT_BINARY),
    ]
