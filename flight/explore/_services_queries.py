"""SQL of the services screens: RED figures (rate, errors, duration percentiles) and processes.

RED is measured over a service's *entry* spans in ``otel_spans``: spans of kind ``SERVER`` or
``CONSUMER``, or without a parent. A service whose spans all have a parent in another service
(an in-process callee such as a payments client) has no entry span; its figures are then taken
over all its spans, so it still shows its rate, errors and latency. One query counts spans per
group, entry flag, time bucket and latency bucket; ``_latency`` reads the figures, percentiles
and sparklines from it (a hash aggregation is several times cheaper than a t-digest per group
over a million spans). Native services (no OTel spans) get their process count and error log
count from ``processes`` and ``log_entries``. Durations are ns in the lake and ms in the answers.
"""

from __future__ import annotations

from ._sql_literals import sql_text

__all__ = [
    "ENTRY_SPAN",
    "LATENCY_BUCKET",
    "OTEL_PROCESS",
    "SPARK_LATENCY_BUCKET",
    "error_logs_by_service_sql",
    "processes_by_service_sql",
    "red_histogram_sql",
    "service_error_spans_sql",
]

ENTRY_SPAN = "(kind IN ('SERVER', 'CONSUMER') OR parent_span_id IS NULL)"
"""Condition on ``otel_spans`` rows: an entry span (where a request enters a service)."""

LATENCY_BUCKET = "CAST(floor(log2(CAST(greatest(duration, 1) AS DOUBLE)) * 16) AS BIGINT)"
"""A span's latency bucket: 16 per power of two of its duration in ns (figures over the range)."""

SPARK_LATENCY_BUCKET = "CAST(floor(log2(CAST(greatest(duration, 1) AS DOUBLE)) * 4) AS BIGINT)"
"""A coarser latency bucket, 4 per power of two, for the per-time-bucket p95 of sparklines."""

OTEL_PROCESS = (
    "(property_get(properties, 'otel.resource.service.name') IS NOT NULL "
    "OR property_get(properties, 'otel.resource.telemetry.sdk.name') IS NOT NULL)"
)
"""Condition on ``processes`` rows: the process reported over OTLP (its properties are resource attributes)."""


def red_histogram_sql(bucket_s: int, service: str | None = None) -> str:
    """Spans counted per group, entry flag and latency bucket, and per time bucket (see ``_latency``).

    Two grouping sets in one scan: ``(grp, entry, lb)`` for the figures over the range (``t``
    NULL) and ``(grp, entry, t, lb4)`` for the sparklines (``lb`` NULL). The group is the
    service, or, given ``service``, the operation (span name) of that service.
    """
    group, where = ("service_name", "") if service is None else ("name", f" WHERE service_name = {sql_text(service)}")
    return (
        f"SELECT {group} AS grp, {ENTRY_SPAN} AS entry, "  # noqa: S608 - literals are escaped
        f"date_bin(INTERVAL '{int(bucket_s)} seconds', start_time) AS t, "
        f"{LATENCY_BUCKET} AS lb, {SPARK_LATENCY_BUCKET} AS lb4, "
        "count(*) AS n, sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors, "
        f"min(duration) AS lo, max(duration) AS hi FROM otel_spans{where} "
        "GROUP BY GROUPING SETS ((grp, entry, lb), (grp, entry, t, lb4))"
    )


def processes_by_service_sql() -> str:
    """Processes per service, and how many of them reported over OTLP."""
    return (
        "SELECT service_name AS service, count(*) AS processes, "  # noqa: S608 - constant SQL
        f"sum(CASE WHEN {OTEL_PROCESS} THEN 1 ELSE 0 END) AS otel_processes "
        "FROM processes GROUP BY service_name ORDER BY service_name"
    )


def error_logs_by_service_sql() -> str:
    """Error and fatal log entries per service (the error count of native services)."""
    return (
        "SELECT service_name AS service, count(*) AS errors FROM log_entries "
        "WHERE level <= 2 GROUP BY service_name ORDER BY service_name"
    )


def service_error_spans_sql(service: str, limit: int = 50) -> str:
    """The service's most recent spans with status ERROR."""
    return (
        "SELECT start_time AS time, trace_id, span_id, name, status_message AS message "  # noqa: S608
        f"FROM otel_spans WHERE status = 'ERROR' AND service_name = {sql_text(service)} "
        f"ORDER BY start_time DESC LIMIT {int(limit)}"
    )
