"""Arguments of table functions: checked Python values and Micromegas's wording of their errors.

A table function's arguments arrive evaluated (``_sql_table_functions``): literals as Python
values, timestamps as Unix nanoseconds. These checks turn a wrong one into a ``ValueError``
naming the function and the argument, and ``argument_ordinal`` words positions as Micromegas does.
"""

from __future__ import annotations

from typing import Any

from ..tracing.transit import parse_rfc3339_ns

__all__ = ["argument_ordinal", "int_arg", "str_arg", "time_arg"]


def time_arg(value: Any, function: str, what: str) -> int:
    """A time argument as Unix ns: RFC 3339 text, or a timestamp (already ns from ``_evaluate``)."""
    if isinstance(value, bool) or value is None:
        msg = f"{function}: {what} must be a time, got {value!r}"
        raise ValueError(msg)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_rfc3339_ns(value.strip())
        except ValueError as exc:
            msg = f"{function}: {what} is not an RFC 3339 time: {value!r}"
            raise ValueError(msg) from exc
    msg = f"{function}: {what} must be a time, got {value!r}"
    raise ValueError(msg)


_ORDINALS = ("First", "Second", "Third", "Fourth", "Fifth", "Sixth")


def argument_ordinal(index: int) -> str:
    """``"First"``, ``"Second"``… for a 0-based argument index (Micromegas's error wording)."""
    return _ORDINALS[index] if index < len(_ORDINALS) else f"Argument #{index + 1}:"


def str_arg(value: Any, function: str, what: str) -> str:
    if not isinstance(value, str):
        msg = f"{function}: {what} must be a string, got {value!r}"
        raise ValueError(msg)
    return value


def int_arg(value: Any, function: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{function}: {what} must be an integer, got {value!r}"
        raise ValueError(msg)
    return value
