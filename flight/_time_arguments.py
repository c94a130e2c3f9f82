"""Query time ranges as people type them: RFC 3339 times or durations before now.

One parser for every front end that takes a range from a person: ``sirius query --begin/--end``
and the HTTP gateway's ``time_range_begin``/``time_range_end``. A duration is a number and a
unit, ``s``, ``m``, ``h``, ``d`` or ``w`` (``90s``, ``15m``, ``1h``, ``7d``, ``2w``), meaning
that long before now; with only a beginning the range ends now.
"""

from __future__ import annotations

import re

from ..tracing import format_rfc3339_ns, parse_rfc3339_ns

__all__ = ["TimeArgumentError", "parse_time", "resolve_range"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)", re.IGNORECASE)
_UNIT_NS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_UNIT_NS["w"] = 7 * _UNIT_NS["d"]


class TimeArgumentError(ValueError):
    """A time or range a person gave that cannot be used; the message says what is expected."""


def parse_time(text: str, now_ns: int) -> int:
    """An RFC 3339 time, or a duration before ``now_ns`` (``1h``, ``7d``), as Unix ns.

    >>> parse_time("1h", 7_200_000_000_000)
    3600000000000
    >>> parse_time("1970-01-01T00:00:01Z", 0)
    1000000000

    Raises:
        TimeArgumentError: neither form.
    """
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now_ns - int(float(match.group(1)) * _UNIT_NS[match.group(2).lower()])
    try:
        return parse_rfc3339_ns(text.strip())
    except ValueError:
        msg = f"invalid time {text!r}: expected RFC 3339 (2024-01-01T00:00:00Z) or a duration (30m, 1h, 7d)"
        raise TimeArgumentError(msg) from None


def resolve_range(
    begin: str | None, end: str | None, now_ns: int, *, names: tuple[str, str] = ("--begin", "--end")
) -> tuple[str, str] | None:
    """The range as RFC 3339 texts (what FlightSQL's range headers carry), or None for no range.

    Args:
        begin: range start as typed, or None.
        end: range end as typed, or None (now, when ``begin`` is given).
        now_ns: "now" for durations.
        names: how the two arguments are called in messages.

    Raises:
        TimeArgumentError: an unreadable time, an end with no beginning, or a beginning after the end.
    """
    if begin is None and end is None:
        return None
    if begin is None:
        msg = f"{names[1]} needs {names[0]}"
        raise TimeArgumentError(msg)
    begin_ns = parse_time(begin, now_ns)
    end_ns = parse_time(end, now_ns) if end is not None else now_ns
    if begin_ns > end_ns:
        msg = f"{names[0]} is after {names[1]}"
        raise TimeArgumentError(msg)
    return format_rfc3339_ns(begin_ns), format_rfc3339_ns(end_ns)
