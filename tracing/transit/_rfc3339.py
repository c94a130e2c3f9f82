"""RFC 3339 timestamps as integer nanoseconds since the Unix epoch.

Micromegas bodies carry times as RFC 3339 text with up to 9 fractional digits; Python's
``datetime`` keeps only microseconds, so the wire layer works in integer nanoseconds and
formats/parses the text itself.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d{2}:?\d{2})\Z",
    re.ASCII,  # without it \d also matches non-ASCII digits (e.g. Arabic-Indic), which int() accepts
)
_NS = 1_000_000_000


def parse_rfc3339_ns(text: str) -> int:
    """Parse an RFC 3339 timestamp into nanoseconds since the Unix epoch.

    Args:
        text: e.g. ``2024-05-01T12:00:00.123456789Z`` or ``…+02:00``.

    Returns:
        Nanoseconds since 1970-01-01T00:00:00Z (digits past the ninth are truncated).

    Raises:
        ValueError: when the text is not an RFC 3339 timestamp.

    >>> parse_rfc3339_ns("1970-01-01T00:00:01.5Z")
    1500000000
    """
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        msg = f"not an RFC 3339 timestamp: {text!r}"
        raise ValueError(msg)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    # datetime validates the calendar fields (month 13, Feb 30 …); leap second 60 is clamped.
    try:
        datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError as exc:
        msg = f"not an RFC 3339 timestamp: {text!r}"
        raise ValueError(msg) from exc
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset_h, offset_m = int(digits[:2]), int(digits[2:])
        if offset_h > 23 or offset_m > 59:
            msg = f"bad UTC offset in {text!r}"
            raise ValueError(msg)
        seconds -= sign * (offset_h * 3600 + offset_m * 60)
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return seconds * _NS + nanos


def format_rfc3339_ns(ns: int) -> str:
    """Format nanoseconds since the Unix epoch as RFC 3339 UTC with 9 fractional digits.

    >>> format_rfc3339_ns(1500000000)
    '1970-01-01T00:00:01.500000000Z'
    """
    seconds, nanos = divmod(int(ns), _NS)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def ns_to_datetime(ns: int) -> datetime:
    """Convert nanoseconds to an aware UTC ``datetime`` (microsecond precision, truncated)."""
    seconds, nanos = divmod(int(ns), _NS)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=nanos // 1000)


def datetime_to_ns(value: datetime) -> int:
    """Convert an aware ``datetime`` to nanoseconds since the Unix epoch."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000
