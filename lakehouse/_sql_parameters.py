"""Bound parameters of prepared statements, written into the SQL text as literals.

FlightSQL clients (ADBC ``cursor.execute(sql, params)``) send the parameter values of a prepared
statement with ``DoPut``; the server answers with a new handle, and the client executes that.
Sirius's prepared-statement handles are the SQL text itself (no server state, any replica can
execute them), so binding produces a new SQL text: each placeholder ``$n`` (1-based) or ``?``
(positional, in order) outside string literals, quoted identifiers and comments is replaced by
a SQL literal of the value. The statement is then planned like any other: a value can never
change the statement's structure.

Literals: NULL, TRUE/FALSE, integers, doubles (``CAST('NaN' AS DOUBLE)`` for non-finite ones),
``'strings'`` (quotes doubled), ``X'hex'`` bytes, ``TIMESTAMP '…'`` (UTC), ``DATE '…'``,
decimals. One row of parameters per statement.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from typing import Any

import pyarrow as pa

from ._sql_text import skip_text

__all__ = ["ParameterError", "bind_parameters", "sql_literal"]

_DOLLAR = re.compile(r"\$(\d+)")


class ParameterError(ValueError):
    """Parameters that do not fit the statement's placeholders, or a value with no SQL literal."""


def sql_literal(value: Any) -> str:  # noqa: PLR0911 - one arm per value kind
    r"""The SQL literal of a Python value (as pyarrow's ``as_py`` gives them).

    Raises:
        ParameterError: no literal for the value's type.

    >>> [sql_literal(v) for v in (None, True, 3, 1.5, "it's", b"\x01")]
    ['NULL', 'TRUE', '3', '1.5', "'it''s'", "X'01'"]
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"CAST('{value}' AS DOUBLE)"
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"X'{bytes(value).hex()}'"
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{value.isoformat()}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    msg = f"no SQL literal for a parameter of type {type(value).__name__}"
    raise ParameterError(msg)


def _timestamp_literal(scalar: pa.Scalar) -> str | None:
    """Nanosecond-exact literal of a timestamp scalar (``as_py`` would drop nanoseconds)."""
    if not pa.types.is_timestamp(scalar.type) or not scalar.is_valid:
        return None
    ns = scalar.cast(pa.timestamp("ns", tz=scalar.type.tz)).cast(pa.int64()).as_py()
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"TIMESTAMP '{text}.{nanos:09d}'"


def _literals(parameters: pa.Table | pa.RecordBatch) -> list[str]:
    if parameters.num_rows != 1:
        msg = f"a statement takes one row of parameters, got {parameters.num_rows}"
        raise ParameterError(msg)
    out = []
    for column in parameters.columns:
        scalar = column[0]
        if pa.types.is_dictionary(scalar.type):
            scalar = scalar.value if scalar.is_valid else pa.scalar(None)
        literal = _timestamp_literal(scalar)
        out.append(literal if literal is not None else sql_literal(scalar.as_py()))
    return out


def bind_parameters(sql: str, parameters: pa.Table | pa.RecordBatch) -> str:
    """``sql`` with its placeholders replaced by the literals of the one row of ``parameters``.

    Raises:
        ParameterError: not one row, a placeholder without a value, a value without a
            placeholder, both ``$n`` and ``?`` used, or a value with no SQL literal.

    >>> bind_parameters("SELECT * FROM t WHERE a = $1 AND b = '$1?'", pa.table({"p": ["x"]}))
    "SELECT * FROM t WHERE a = 'x' AND b = '$1?'"
    """
    literals = _literals(parameters)
    out: list[str] = []
    used: set[int] = set()
    positional = 0
    styles: set[str] = set()
    i = last = 0
    while i < len(sql):
        skipped = skip_text(sql, i)
        if skipped is not None:
            i = skipped
            continue
        ch = sql[i]
        dollar = _DOLLAR.match(sql, i) if ch == "$" else None
        if dollar is not None or ch == "?":
            if dollar is not None:
                index = int(dollar.group(1)) - 1
                end = dollar.end()
                styles.add("$n")
            else:
                index, positional, end = positional, positional + 1, i + 1
                styles.add("?")
            if not 0 <= index < len(literals):
                msg = f"placeholder {sql[i:end]} has no value ({len(literals)} parameter(s) given)"
                raise ParameterError(msg)
            used.add(index)
            out += [sql[last:i], literals[index]]
            i = last = end
            continue
        i += 1
    out.append(sql[last:])
    if len(styles) > 1:
        msg = "use either $n or ? placeholders, not both"
        raise ParameterError(msg)
    if len(used) != len(literals):
        msg = f"{len(literals)} parameter(s) given but the statement uses {len(used)}"
        raise ParameterError(msg)
    return "".join(out)
