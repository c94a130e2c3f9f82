"""Validated parameters as SQL literals: a parameter never changes the shape of a query.

Every value an Explore query embeds goes through one of these functions: text is quoted with
its single quotes doubled; numbers are parsed and range checked; trace/span ids are checked as
lowercase hex of the right length; process and stream ids as UUIDs; levels as 1..6 or their
names. Each raises :class:`ExploreError` (400) with a message naming the parameter.
"""

from __future__ import annotations

import math
import re
import uuid

from ._errors import ExploreError

__all__ = [
    "LEVEL_NAMES",
    "level_name",
    "parse_float",
    "parse_hex_id",
    "parse_int",
    "parse_level",
    "parse_uuid",
    "sql_text",
]

LEVEL_NAMES = {1: "fatal", 2: "error", 3: "warn", 4: "info", 5: "debug", 6: "trace"}
_LEVEL_BY_NAME = {name: level for level, name in LEVEL_NAMES.items()} | {"warning": 3, "err": 2, "critical": 1}
_HEX = re.compile(r"[0-9a-f]+")


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal (single quotes doubled; NUL refused).

    >>> sql_text("it's")
    "'it''s'"
    """
    if "\x00" in value:
        raise ExploreError("text parameters cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def like_pattern(value: str) -> str:
    """A SQL ``LIKE`` literal matching ``value`` anywhere (``%`` and ``_`` in it taken literally)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sql_text(f"%{escaped}%")


def parse_int(value: str | None, name: str, *, default: int | None, low: int, high: int) -> int | None:
    """An integer parameter in ``[low, high]``, or ``default`` when absent/empty."""
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ExploreError(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ExploreError(f"{name} must be an integer from {low} to {high}, got {number}")
    return number


def parse_float(value: str | None, name: str, *, low: float = 0.0) -> float | None:
    """A finite number parameter ``>= low``, or None when absent/empty."""
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value.strip())
    except ValueError:
        raise ExploreError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < low:
        raise ExploreError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return number


def parse_hex_id(value: str, name: str, *, length: int) -> str:
    """A trace (32) or span (16) id as lowercase hex, checked."""
    text = value.strip().lower()
    if len(text) != length or not _HEX.fullmatch(text):
        raise ExploreError(f"{name} must be {length} hex characters, got {value!r}")
    return text


def is_hex_id(value: str, length: int) -> bool:
    """True when ``value`` is ``length`` hex characters (any case)."""
    text = value.strip().lower()
    return len(text) == length and bool(_HEX.fullmatch(text))


def parse_uuid(value: str, name: str) -> str:
    """A process or stream id in the canonical UUID form."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise ExploreError(f"{name} must be a UUID, got {value!r}") from None


def is_uuid(value: str) -> bool:
    """True when ``value`` is a UUID."""
    try:
        uuid.UUID(value.strip())
    except ValueError:
        return False
    return True


def parse_level(value: str | None) -> int | None:
    """The most verbose level to show: 1..6 or a name (fatal, error, warn, info, debug, trace)."""
    if value is None or value.strip() == "":
        return None
    text = value.strip().lower()
    if text.isdigit() and 1 <= int(text) <= 6:
        return int(text)
    if text in _LEVEL_BY_NAME:
        return _LEVEL_BY_NAME[text]
    raise ExploreError(f"level must be 1..6 or one of fatal, error, warn, info, debug, trace, got {value!r}")


def level_name(level: int) -> str:
    """The name of a level number (``level5`` style for numbers outside 1..6)."""
    return LEVEL_NAMES.get(level, f"level{level}")
