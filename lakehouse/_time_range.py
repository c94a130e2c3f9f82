"""Half-open time ranges in Unix nanoseconds, and the conversions the lakehouse needs.

PostgreSQL keeps microseconds, so every range that becomes a partition key is microsecond
aligned; ``TimeRange`` itself keeps nanoseconds so event times lose nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..tracing.transit import datetime_to_ns, ns_to_datetime

__all__ = ["NS_PER_DAY", "NS_PER_HOUR", "NS_PER_MINUTE", "NS_PER_SECOND", "TimeRange", "to_datetime", "to_ns"]

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MINUTE
NS_PER_DAY = 24 * NS_PER_HOUR
_NS_PER_US = 1_000


def to_ns(value: datetime | int) -> int:
    """Unix nanoseconds of an aware ``datetime`` (ints pass through).

    Raises:
        ValueError: for a naive ``datetime``.
    """
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        msg = f"naive datetime {value.isoformat()}: give a timezone"
        raise ValueError(msg)
    return datetime_to_ns(value)


def to_datetime(ns: int) -> datetime:
    """Aware UTC ``datetime`` of Unix nanoseconds (truncated to microseconds)."""
    return ns_to_datetime(ns)


@dataclass(frozen=True, slots=True, order=True)
class TimeRange:
    """``[begin_ns, end_ns)`` in Unix nanoseconds.

    >>> r = TimeRange(0, 3 * NS_PER_SECOND)
    >>> [s.begin_ns // NS_PER_SECOND for s in r.slices(NS_PER_SECOND)]
    [0, 1, 2]
    """

    begin_ns: int
    end_ns: int

    def __post_init__(self) -> None:
        if self.end_ns < self.begin_ns:
            msg = f"time range ends before it begins: {self.begin_ns} > {self.end_ns}"
            raise ValueError(msg)

    @classmethod
    def of(cls, begin: datetime | int, end: datetime | int) -> TimeRange:
        """Build from aware datetimes or nanoseconds."""
        return cls(to_ns(begin), to_ns(end))

    @property
    def begin(self) -> datetime:
        """``begin_ns`` as an aware datetime (microseconds)."""
        return to_datetime(self.begin_ns)

    @property
    def end(self) -> datetime:
        """``end_ns`` as an aware datetime (microseconds)."""
        return to_datetime(self.end_ns)

    @property
    def duration_ns(self) -> int:
        """Length of the range."""
        return self.end_ns - self.begin_ns

    def contains(self, other: TimeRange) -> bool:
        """True when ``other`` lies inside this range."""
        return self.begin_ns <= other.begin_ns and other.end_ns <= self.end_ns

    def overlaps(self, other: TimeRange) -> bool:
        """True when the half-open ranges share an instant."""
        return self.begin_ns < other.end_ns and other.begin_ns < self.end_ns

    def union(self, other: TimeRange) -> TimeRange:
        """The smallest range holding both."""
        return TimeRange(min(self.begin_ns, other.begin_ns), max(self.end_ns, other.end_ns))

    def slices(self, delta_ns: int) -> Iterator[TimeRange]:
        """Consecutive ``delta_ns`` slices aligned on multiples of ``delta_ns`` covering the range."""
        if delta_ns <= 0:
            msg = "slice length must be positive"
            raise ValueError(msg)
        start = self.begin_ns - self.begin_ns % delta_ns
        while start < self.end_ns:
            yield TimeRange(start, start + delta_ns)
            start += delta_ns

    def __str__(self) -> str:
        return f"[{_fmt(self.begin_ns)}, {_fmt(self.end_ns)})"


def _fmt(ns: int) -> str:
    base = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // _NS_PER_US)
    return base.isoformat().replace("+00:00", "Z")
