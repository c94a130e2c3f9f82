"""SQL of the metrics screen: metric names, series over time buckets, histogram quantiles.

``measures`` rows are bucketed with ``date_bin`` from the start of the range. Aggregation
``auto`` (the default) shows counters as rates: a series with ``delta`` values (OTel sums and
histogram counts, whatever their temporality) is ``sum(delta) / bucket seconds``, others the
average value. ``histograms`` rows are merged per bucket with
``merge_histograms(bounds, delta_counts)`` (delta and cumulative points alike) and read with
``histogram_quantile``.
"""

from __future__ import annotations

from ._errors import ExploreError
from ._range import TimeWindow
from ._sql_literals import like_pattern, sql_text

__all__ = [
    "AGGREGATIONS",
    "KINDS",
    "group_expression",
    "histogram_quantiles_sql",
    "histogram_series_sql",
    "measure_series_sql",
    "metric_names_sql",
    "metric_properties_sql",
]

KINDS = ("measure", "histogram")
AGGREGATIONS = ("auto", "avg", "sum", "max", "rate")
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_PROPERTY_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:")
MAX_GROUPS = 20


def group_expression(group_by: str | None) -> str:
    """SQL of a series' group: ``service_name``, a property key, or one group ('')."""
    if group_by is None or group_by == "":
        return "''"
    if group_by in ("service_name", "service"):
        return "service_name"
    if not set(group_by) <= _PROPERTY_KEY_CHARS:
        raise ExploreError(f"group_by must be service_name or a property key, got {group_by!r}")
    return f"coalesce(property_get(properties, {sql_text(group_by)}), '')"


def metric_names_sql(text: str | None, limit: int = 500) -> str:
    """Measure and histogram names (with unit and services), optionally matching ``text``."""
    where = f" WHERE name ILIKE {like_pattern(text)}" if text else ""
    return (
        "SELECT name, unit, kind, services FROM ("  # noqa: S608 - literals are escaped
        "SELECT name, unit, 'measure' AS kind, array_agg(DISTINCT service_name) AS services "
        f"FROM measures{where} GROUP BY name, unit "
        "UNION ALL SELECT name, unit, 'histogram' AS kind, array_agg(DISTINCT service_name) AS services "
        f"FROM histograms{where} GROUP BY name, unit) ORDER BY name, kind LIMIT {int(limit)}"
    )


def metric_properties_sql(text: str | None, limit: int = 2000) -> str:
    """Distinct property sets per metric name (their keys are the group-by choices)."""
    where = f" WHERE name ILIKE {like_pattern(text)}" if text else ""
    return (
        "SELECT name, kind, jsonb_object_keys(properties) AS keys FROM ("  # noqa: S608
        f"SELECT DISTINCT name, 'measure' AS kind, properties FROM measures{where} "
        f"UNION ALL SELECT DISTINCT name, 'histogram' AS kind, properties FROM histograms{where}) "
        f"LIMIT {int(limit)}"
    )


def _bin(window: TimeWindow, bucket_s: int) -> str:
    return f"date_bin(INTERVAL '{int(bucket_s)} seconds', time)"


def measure_series_sql(name: str, window: TimeWindow, bucket_s: int, group_by: str | None, agg: str) -> str:
    """One value per group and bucket of the measure ``name``."""
    if agg not in AGGREGATIONS:
        raise ExploreError(f"agg must be one of {', '.join(AGGREGATIONS)}, got {agg!r}")
    rate = f"sum(delta) / {float(bucket_s)}"
    value = {
        "avg": "avg(value)",
        "sum": "sum(value)",
        "max": "max(value)",
        "rate": f"coalesce({rate}, 0.0)",
        "auto": f"CASE WHEN count(delta) > 0 THEN {rate} ELSE avg(value) END",
    }[agg]
    return (
        f"SELECT {group_expression(group_by)} AS grp, {_bin(window, bucket_s)} AS t, "  # noqa: S608
        f"{value} AS v, count(delta) > 0 AS is_rate, max(unit) AS unit "
        f"FROM measures WHERE name = {sql_text(name)} GROUP BY grp, t ORDER BY grp, t"
    )


def histogram_series_sql(name: str, window: TimeWindow, bucket_s: int, group_by: str | None) -> str:
    """The p95 of each group and bucket of the histogram ``name``."""
    return (
        f"SELECT {group_expression(group_by)} AS grp, {_bin(window, bucket_s)} AS t, "  # noqa: S608
        "histogram_quantile(merge_histograms(bounds, delta_counts), 0.95) AS v, max(unit) AS unit "
        f"FROM histograms WHERE name = {sql_text(name)} AND delta_counts IS NOT NULL "
        "GROUP BY grp, t ORDER BY grp, t"
    )


def histogram_quantiles_sql(name: str, window: TimeWindow, bucket_s: int) -> str:
    """p50, p95 and p99 per bucket of the histogram ``name``, every series merged."""
    merged = "merge_histograms(bounds, delta_counts)"
    quantiles = ", ".join(f"histogram_quantile({merged}, {q}) AS {label}" for label, q in QUANTILES.items())
    return (
        f"SELECT {_bin(window, bucket_s)} AS t, {quantiles} "  # noqa: S608
        f"FROM histograms WHERE name = {sql_text(name)} AND delta_counts IS NOT NULL GROUP BY t ORDER BY t"
    )
