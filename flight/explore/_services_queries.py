"""SQL of the services screens: RED figures (rate, errors, duration percentiles) and processes.

RED is measured over a service's *entry* spans in ``otel_spans``: spans of kind ``SERVER`` or
``CONSUMER``, or without a parent. A service whose spans all have a parent in another service
(an in-process callee such as a payments client) has no entry span; its figures are then taken
over all its spans, so it still shows its rate, errors and latency. Native services (no OTel
spans) get their process count and error log count from ``processes`` and ``log_entries``.
Percentiles are ``approx_percentile_cont`` (t-digest) in the server; durations are ns in the
lake and ms in the answers.
"""

from __future__ import annotations

from ._range import TimeWindow
from ._sql_literals import sql_text

__all__ = [
    "ENTRY_SPANS",
    "OTEL_PROCESS",
    "error_logs_by_service_sql",
    "operations_sql",
    "processes_by_service_sql",
    "red_by_service_sql",
    "service_error_spans_sql",
    "spark_by_service_sql",
]

ENTRY_SPANS = (
    "(kind IN ('SERVER', 'CONSUMER') OR parent_span_id IS NULL OR service_name NOT IN "
    "(SELECT DISTINCT service_name FROM otel_spans WHERE kind IN ('SERVER', 'CONSUMER') OR parent_span_id IS NULL))"
)
"""Condition on ``otel_spans`` rows: the spans RED is measured over (see the module docstring)."""

OTEL_PROCESS = (
    "(property_get(properties, 'otel.resource.service.name') IS NOT NULL "
    "OR property_get(properties, 'otel.resource.telemetry.sdk.name') IS NOT NULL)"
)
"""Condition on ``processes`` rows: the process reported over OTLP (its properties are resource attributes)."""

_RED = (
    "count(*) AS requests, "
    "sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors, "
    "approx_percentile_cont(duration, 0.5) / 1e6 AS p50_ms, "
    "approx_percentile_cont(duration, 0.95) / 1e6 AS p95_ms, "
    "approx_percentile_cont(duration, 0.99) / 1e6 AS p99_ms"
)


def _service_filter(service: str | None) -> str:
    return f" AND service_name = {sql_text(service)}" if service is not None else ""


def red_by_service_sql(service: str | None = None) -> str:
    """Requests, errors and p50/p95/p99 (ms) per service over its entry spans."""
    return (
        f"SELECT service_name AS service, {_RED} "  # noqa: S608 - literals are escaped
        f"FROM otel_spans WHERE {ENTRY_SPANS}{_service_filter(service)} "
        "GROUP BY service_name ORDER BY service_name"
    )


def spark_by_service_sql(window: TimeWindow, bucket_s: int, service: str | None = None) -> str:
    """Requests, errors and p95 (ms) per service and time bucket (bucket start as ``t``)."""
    return (
        f"SELECT service_name AS service, "  # noqa: S608 - literals are escaped
        f"date_bin(INTERVAL '{int(bucket_s)} seconds', start_time) AS t, "
        "count(*) AS requests, sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors, "
        "approx_percentile_cont(duration, 0.95) / 1e6 AS p95_ms "
        f"FROM otel_spans WHERE {ENTRY_SPANS}{_service_filter(service)} "
        "GROUP BY service_name, t ORDER BY service_name, t"
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


def operations_sql(service: str) -> str:
    """RED per operation (span name) of one service's entry spans."""
    return (
        f"SELECT name AS operation, {_RED} "  # noqa: S608 - literals are escaped
        f"FROM otel_spans WHERE {ENTRY_SPANS}{_service_filter(service)} "
        "GROUP BY name ORDER BY requests DESC, name LIMIT 200"
    )


def operations_spark_sql(window: TimeWindow, bucket_s: int, service: str) -> str:
    """Requests, errors and p95 per operation of one service and time bucket."""
    return (
        f"SELECT name AS operation, "  # noqa: S608 - literals are escaped
        f"date_bin(INTERVAL '{int(bucket_s)} seconds', start_time) AS t, "
        "count(*) AS requests, sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors, "
        "approx_percentile_cont(duration, 0.95) / 1e6 AS p95_ms "
        f"FROM otel_spans WHERE {ENTRY_SPANS}{_service_filter(service)} "
        "GROUP BY name, t ORDER BY name, t"
    )


def service_error_spans_sql(service: str, limit: int = 50) -> str:
    """The service's most recent spans with status ERROR."""
    return (
        "SELECT start_time AS time, trace_id, span_id, name, status_message AS message "  # noqa: S608
        f"FROM otel_spans WHERE status = 'ERROR'{_service_filter(service)} "
        f"ORDER BY start_time DESC LIMIT {int(limit)}"
    )
