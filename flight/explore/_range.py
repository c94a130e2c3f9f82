"""The time range of an Explore request: ``from``/``to`` as people type them, and time buckets.

``from`` and ``to`` take what ``sirius query --begin/--end`` takes (RFC 3339 or a duration
before now: ``15m``, ``1h``, ``7d``), parsed by :mod:`sirius.flight._time_arguments`; ``from``
defaults to ``1h`` (or the caller's default) and ``to`` to now. Charts cut the range into
buckets of a round size chosen so there are about 60 to 120 of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...tracing import format_rfc3339_ns
from .._time_arguments import TimeArgumentError, parse_time
from ._errors import ExploreError

__all__ = ["DEFAULT_FROM", "TimeWindow", "bucket_seconds", "parse_window"]

DEFAULT_FROM = "1h"
NS_PER_S = 1_000_000_000
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)
_MAX_BUCKETS = 120


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A resolved range, in Unix ns, with its RFC 3339 texts (what the FlightSQL headers carry)."""

    begin_ns: int
    end_ns: int

    @property
    def begin(self) -> str:
        """The beginning as RFC 3339 (ns precision)."""
        return format_rfc3339_ns(self.begin_ns)

    @property
    def end(self) -> str:
        """The end as RFC 3339 (ns precision)."""
        return format_rfc3339_ns(self.end_ns)

    def as_json(self) -> dict[str, str]:
        """The envelope's ``range``."""
        return {"from": self.begin, "to": self.end}


def parse_window(begin: str | None, end: str | None, now_ns: int, *, default_from: str = DEFAULT_FROM) -> TimeWindow:
    """The window of ``from``/``to`` (``to`` defaults to now, ``from`` to ``default_from``).

    >>> w = parse_window("1h", None, 7_200 * NS_PER_S)
    >>> (w.begin, w.end)
    ('1970-01-01T01:00:00.000000000Z', '1970-01-01T02:00:00.000000000Z')

    Raises:
        ExploreError: an unreadable time, or ``from`` after ``to``.
    """
    begin_text = begin if begin and begin.strip() else default_from
    try:
        begin_ns = parse_time(begin_text, now_ns)
    except TimeArgumentError as exc:
        raise ExploreError(f"from: {exc}") from None
    try:
        end_ns = parse_time(end, now_ns) if end and end.strip() else now_ns
    except TimeArgumentError as exc:
        raise ExploreError(f"to: {exc}") from None
    if begin_ns >= end_ns:
        raise ExploreError("from must be before to")
    return TimeWindow(begin_ns, end_ns)


def bucket_seconds(window: TimeWindow) -> int:
    """A round bucket size giving at most 120 (and, for ranges over two minutes, at least ~50) buckets.

    >>> bucket_seconds(TimeWindow(0, 3600 * NS_PER_S))
    30
    >>> bucket_seconds(TimeWindow(0, 86400 * NS_PER_S))
    900
    """
    span_s = max((window.end_ns - window.begin_ns) / NS_PER_S, 1.0)
    for step in _STEPS:
        if span_s / step <= _MAX_BUCKETS:
            return step
    return _STEPS[-1]
