"""SQL of trace search and of one trace (spans and logs by trace id).

A trace is found by id through the global, trace-sorted ``otel_spans`` (``trace_id = '<hex>'``
prunes every row group but one per file). Search works in two steps, each a small query:

1. the matching traces: filters on a single span (service, operation, attribute, text in the
   name, or the id itself) and ``status`` (an ERROR span, or none) are conditions of one
   aggregation by trace; ``min_ms``/``max_ms`` bound the trace's duration (the root's when
   only durations are asked: then the root spans alone answer); sorted by start or duration,
   ``LIMIT``;
2. span count, services and error count of just those traces (``trace_id IN (…)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ._errors import ExploreError
from ._sql_literals import is_hex_id, like_pattern, sql_text

__all__ = [
    "TraceFilter",
    "trace_logs_sql",
    "trace_spans_sql",
    "trace_stats_sql",
    "traces_sql",
]

MAX_TRACE_SPANS = 100_000
LOG_MARGIN_NS = 15 * 60 * 1_000_000_000
"""How far before its first span and after its last the logs of a trace are looked for: clock skew
between services, and records stamped when they are handled rather than when their span ran."""
SORTS = ("start", "duration")
_ATTR_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:")


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Validated trace search parameters (see ``/explore/api/traces``)."""

    service: str | None = None
    operation: str | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    status: str | None = None
    attrs: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    text: str | None = None
    sort: str = "start"
    limit: int = 50

    def __post_init__(self) -> None:
        if self.status not in (None, "error", "ok"):
            raise ExploreError(f"status must be 'error' or 'ok', got {self.status!r}")
        if self.sort not in SORTS:
            raise ExploreError(f"sort must be 'start' or 'duration', got {self.sort!r}")
        if self.min_ms is not None and self.max_ms is not None and self.min_ms > self.max_ms:
            raise ExploreError("min_ms must not be above max_ms")
        for key, _value in self.attrs:
            if not key or not set(key) <= _ATTR_KEY_CHARS:
                raise ExploreError(f"attr key must be letters, digits or . _ - / :, got {key!r}")


def parse_attrs(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``key=value`` attribute filters."""
    pairs = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise ExploreError(f"attr must be key=value, got {value!r}")
        pairs.append((key.strip(), text))
    return tuple(pairs)


def _span_conditions(f: TraceFilter) -> list[str]:
    conditions = []
    if f.service is not None:
        conditions.append(f"service_name = {sql_text(f.service)}")
    if f.operation is not None:
        conditions.append(f"name = {sql_text(f.operation)}")
    for key, value in f.attrs:
        attribute = f"property_get(properties, {sql_text(key)}) = {sql_text(value)}"
        resource = f"property_get(process_properties, {sql_text('otel.resource.' + key)}) = {sql_text(value)}"
        conditions.append(f"({attribute} OR {resource})")
    if f.text is not None:
        text = f"name ILIKE {like_pattern(f.text)}"
        if is_hex_id(f.text, 32):
            text = f"({text} OR trace_id = {sql_text(f.text.strip().lower())})"
        conditions.append(text)
    return conditions


def traces_sql(f: TraceFilter) -> str:
    """The traces that match, newest or longest first (step 1).

    Without conditions on spans or status, the root spans are enough (a filter and a top-k over
    them). With some, one aggregation over the spans by trace: it costs less than semi-joins of
    the roots with each condition's traces, and measures the whole trace (first start to last
    end), roots or not.
    """
    conditions = _span_conditions(f)
    order = "start_time DESC" if f.sort == "start" else "duration DESC"
    if not conditions and f.status is None:
        where = ["parent_span_id IS NULL"]
        if f.min_ms is not None:
            where.append(f"duration >= {int(f.min_ms * 1e6)}")
        if f.max_ms is not None:
            where.append(f"duration <= {int(f.max_ms * 1e6)}")
        return (
            "SELECT trace_id, start_time, duration, service_name AS root_service, name AS root_name "  # noqa: S608
            f"FROM otel_spans WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {int(f.limit)}"
        )
    duration = "max(arrow_cast(end_time, 'Int64')) - min(arrow_cast(start_time, 'Int64'))"
    errors = "sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END)"
    having = []
    if conditions:
        having.append(f"bool_or({' AND '.join(conditions)})")
    if f.status == "error":
        having.append(f"{errors} > 0")
    elif f.status == "ok":
        having.append(f"{errors} = 0")
    if f.min_ms is not None:
        having.append(f"{duration} >= {int(f.min_ms * 1e6)}")
    if f.max_ms is not None:
        having.append(f"{duration} <= {int(f.max_ms * 1e6)}")
    return (
        f"SELECT trace_id, min(start_time) AS start_time, {duration} AS duration, "  # noqa: S608
        f"max(CASE WHEN parent_span_id IS NULL THEN service_name END) AS root_service, "
        f"max(CASE WHEN parent_span_id IS NULL THEN name END) AS root_name "
        f"FROM otel_spans GROUP BY trace_id HAVING {' AND '.join(having)} ORDER BY {order} LIMIT {int(f.limit)}"
    )


def _id_list(trace_ids: Sequence[str]) -> str:
    for trace_id in trace_ids:
        if not is_hex_id(trace_id, 32):
            raise ExploreError(f"trace_id must be 32 hex characters, got {trace_id!r}")
    return ", ".join(sql_text(t.lower()) for t in trace_ids)


def trace_stats_sql(trace_ids: Sequence[str]) -> str:
    """Span count, end, services and errors of the given traces (step 2)."""
    return (
        "SELECT trace_id, count(*) AS spans, max(end_time) AS end_time, "  # noqa: S608
        "array_agg(DISTINCT service_name) AS services, "
        "sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors "
        f"FROM otel_spans WHERE trace_id IN ({_id_list(trace_ids)}) GROUP BY trace_id"
    )


def trace_spans_sql(trace_id: str) -> str:
    """Every span of one trace (a checked 32-hex id), by start time."""
    return (
        "SELECT span_id, parent_span_id, service_name, name, kind, start_time, end_time, duration, "  # noqa: S608
        "status, status_message, properties, process_properties, events, links, process_id "
        f"FROM otel_spans WHERE trace_id = {sql_text(trace_id)} ORDER BY start_time, span_id "
        f"LIMIT {MAX_TRACE_SPANS}"
    )


def trace_logs_sql(trace_id: str, limit: int = 1000) -> str:
    """Log entries of one trace, oldest first."""
    from ._log_queries import LOG_COLUMNS

    return (
        f"SELECT {LOG_COLUMNS} FROM log_entries WHERE trace_id = {sql_text(trace_id)} "  # noqa: S608
        f"ORDER BY time LIMIT {int(limit)}"
    )
