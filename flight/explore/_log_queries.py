"""SQL of the logs screen and of ``sirius tail``: ``log_entries`` filtered, newest first.

Paging is by time: ``before_ns`` asks for rows strictly older than a cursor (the next page),
``after_ns`` for rows strictly newer (live tail). Every filter is a validated literal. A page is
read in two steps: the times of its rows (:func:`log_times_sql`, cheap), then the rows at or after
the oldest of them (:func:`logs_sql` with ``since_ns``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...tracing import format_rfc3339_ns
from ._errors import ExploreError
from ._sql_literals import like_pattern, parse_hex_id, parse_uuid, sql_text

__all__ = ["LOG_COLUMNS", "LogFilter", "log_conditions", "log_times_sql", "logs_sql"]

LOG_COLUMNS = "time, level, service_name, target, msg, process_id, trace_id, span_id, properties"
"""Columns of a log row, in the order the renderer reads them."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Validated log search parameters (see ``/explore/api/logs``)."""

    text: str | None = None
    level: int | None = None
    service: str | None = None
    target: str | None = None
    process_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    before_ns: int | None = None
    after_ns: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.level is not None and not 1 <= self.level <= 6:
            raise ExploreError(f"level must be 1..6, got {self.level}")
        if self.process_id is not None:
            parse_uuid(self.process_id, "process")
        if self.trace_id is not None:
            parse_hex_id(self.trace_id, "trace_id", length=32)
        if self.span_id is not None:
            parse_hex_id(self.span_id, "span_id", length=16)
        if not 1 <= self.limit <= 10_000:
            raise ExploreError(f"limit must be from 1 to 10000, got {self.limit}")


def _time_literal(ns: int) -> str:
    return f"TIMESTAMP {sql_text(format_rfc3339_ns(int(ns)))}"


def log_conditions(f: LogFilter) -> list[str]:
    """The WHERE conditions of a filter."""
    where = []
    if f.text is not None:
        where.append(f"msg ILIKE {like_pattern(f.text)}")
    if f.level is not None:
        where.append(f"level <= {int(f.level)}")
    if f.service is not None:
        where.append(f"service_name = {sql_text(f.service)}")
    if f.target is not None:
        where.append(f"target = {sql_text(f.target)}")
    if f.process_id is not None:
        where.append(f"process_id = {sql_text(parse_uuid(f.process_id, 'process'))}")
    if f.trace_id is not None:
        where.append(f"trace_id = {sql_text(parse_hex_id(f.trace_id, 'trace_id', length=32))}")
    if f.span_id is not None:
        where.append(f"span_id = {sql_text(parse_hex_id(f.span_id, 'span_id', length=16))}")
    if f.before_ns is not None:
        where.append(f"time < {_time_literal(f.before_ns)}")
    if f.after_ns is not None:
        where.append(f"time > {_time_literal(f.after_ns)}")
    return where


def _where_and_limit(f: LogFilter, extra_row: bool, since_ns: int | None = None) -> tuple[str, int]:
    """The WHERE clause (empty without conditions) and LIMIT shared by both steps of a page."""
    where = log_conditions(f)
    if since_ns is not None:
        where.append(f"time >= {_time_literal(since_ns)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return clause, f.limit + 1 if extra_row else f.limit


def logs_sql(f: LogFilter, *, extra_row: bool = True, since_ns: int | None = None) -> str:
    """Newest rows first; one row more than ``limit`` when ``extra_row`` (to know a next page exists).

    ``since_ns`` (from :func:`log_times_sql`) keeps only rows at or after it, so only the newest
    rows' pages are read whole.
    """
    clause, limit = _where_and_limit(f, extra_row, since_ns)
    return f"SELECT {LOG_COLUMNS} FROM log_entries{clause} ORDER BY time DESC LIMIT {int(limit)}"  # noqa: S608


def log_times_sql(f: LogFilter, *, extra_row: bool = True) -> str:
    """The times of the rows :func:`logs_sql` would return (the first of two steps).

    Sorting whole rows (message, properties) to keep the newest hundred costs far more than
    sorting their times: the oldest of these times then bounds the second step.
    """
    clause, limit = _where_and_limit(f, extra_row)
    return (
        f"SELECT min(time) AS since, count(*) AS n FROM (SELECT time FROM log_entries{clause} "  # noqa: S608
        f"ORDER BY time DESC LIMIT {int(limit)})"
    )
