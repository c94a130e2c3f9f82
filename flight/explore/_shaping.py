"""Query rows shaped into the API's ``data``: services with sparklines, traces, logs, processes, series.

Pure functions from the rows :func:`._render.table_rows` gives (timestamps as ns, ids as hex,
JSONB as objects) to the JSON the contract describes (times as RFC 3339 plus ``*_ns``,
durations as ms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._critical_path import SpanTiming, critical_path
from ._latency import RedFigures
from ._range import NS_PER_S, TimeWindow
from ._render import rfc3339
from ._sql_literals import level_name

__all__ = [
    "bucket_starts",
    "log_rows",
    "metric_series",
    "process_row",
    "services_data",
    "stream_rows",
    "trace_data",
    "trace_list",
]

Row = dict[str, Any]
_RESOURCE_PREFIX = "otel.resource."


def bucket_starts(window: TimeWindow, bucket_s: int) -> list[int]:
    """Start (ns) of every bucket overlapping the window, as ``date_bin`` cuts time (from the epoch)."""
    step = bucket_s * NS_PER_S
    first = window.begin_ns // step * step
    count = max(1, math.ceil((window.end_ns - first) / step))
    return [first + i * step for i in range(count)]


def _ms(value: Any) -> float | None:
    return None if value is None else float(value)


def services_data(
    window: TimeWindow,
    bucket_s: int,
    figures: dict[str, RedFigures],
    process_rows: Sequence[Row],
    error_rows: Sequence[Row],
    *,
    key: str = "service",
) -> dict[str, Any]:
    """``/explore/api/services`` data (or, with ``key="operation"``, a service's operations)."""
    starts = bucket_starts(window, bucket_s)
    seconds = max((window.end_ns - window.begin_ns) / NS_PER_S, 1e-9)
    processes = {row["service"]: row for row in process_rows}
    log_errors = {row["service"]: int(row["errors"]) for row in error_rows}
    names = sorted(set(figures) | set(processes) | set(log_errors), key=lambda n: (n is None, n or ""))
    empty = {"requests": [0] * len(starts), "errors": [0] * len(starts), "p95_ms": [None] * len(starts)}
    out = []
    for name in names:
        stats = figures.get(name)
        proc = processes.get(name, {})
        otel = stats is not None or int(proc.get("otel_processes") or 0) > 0
        requests = stats.requests if stats else 0
        errors = stats.errors if stats else log_errors.get(name, 0)
        spark = (
            {"requests": stats.spark_requests, "errors": stats.spark_errors, "p95_ms": stats.spark_p95_ms}
            if stats
            else empty
        )
        entry: Row = {
            key: name,
            "kind": "otel" if otel else "native",
            "requests": requests,
            "rate_per_s": requests / seconds,
            "errors": errors,
            "error_rate": (errors / requests) if requests else 0.0,
            "p50_ms": stats.p50_ms if stats else None,
            "p95_ms": stats.p95_ms if stats else None,
            "p99_ms": stats.p99_ms if stats else None,
            "processes": int(proc.get("processes") or 0),
            "log_errors": log_errors.get(name, 0),
            "spark": {"t": [rfc3339(t) for t in starts], **spark},
        }
        if key != "service":
            del entry["kind"], entry["processes"], entry["log_errors"]
        out.append(entry)
    return {"bucket_seconds": bucket_s, ("services" if key == "service" else "operations"): out}


def log_rows(rows: Sequence[Row]) -> list[Row]:
    """Log rows as the API gives them."""
    return [
        {
            "time": rfc3339(row["time"]),
            "time_ns": row["time"],
            "level": row["level"],
            "level_name": level_name(row["level"]),
            "service": row["service_name"],
            "target": row["target"],
            "msg": row["msg"],
            "process_id": row["process_id"],
            "trace_id": row["trace_id"],
            "span_id": row["span_id"],
            "properties": row["properties"] if isinstance(row["properties"], dict) else {},
        }
        for row in rows
    ]


def process_row(row: Row) -> Row:
    """A process as the API gives it."""
    return {
        "process_id": row["process_id"],
        "service": row["service_name"],
        "exe": row["exe"],
        "kind": row["kind"],
        "computer": row["computer"],
        "username": row["username"],
        "start_time": rfc3339(row["start_time"]),
        "last_seen": rfc3339(row["last_seen"]),
        "properties": row["properties"] if isinstance(row["properties"], dict) else {},
    }


_STREAM_KINDS = ("cpu", "log", "metrics", "trace")


def stream_rows(rows: Sequence[Row]) -> list[Row]:
    """A process's streams as the API gives them."""
    out = []
    for row in rows:
        tags = [t for t in row["tags"] or [] if t is not None]
        kind = next((k for k in _STREAM_KINDS if k in tags), tags[0] if tags else "other")
        out.append(
            {
                "stream_id": row["stream_id"],
                "tags": tags,
                "kind": kind,
                "blocks": int(row["blocks"] or 0),
                "events": int(row["events"] or 0),
                "properties": row["properties"] if isinstance(row["properties"], dict) else {},
            }
        )
    return out


def trace_list(roots: Sequence[Row], stats: Sequence[Row]) -> list[Row]:
    """Trace search results: root spans joined with their traces' figures, in the roots' order."""
    by_id = {row["trace_id"]: row for row in stats}
    out = []
    for root in roots:
        s = by_id.get(root["trace_id"], {})
        start = root["start_time"]
        end = max(int(s.get("end_time") or 0), start + int(root["duration"]))
        out.append(
            {
                "trace_id": root["trace_id"],
                "start": rfc3339(start),
                "start_ns": start,
                "duration_ms": (end - start) / 1e6,
                "root_service": root["root_service"],
                "root_name": root["root_name"],
                "spans": int(s.get("spans") or 1),
                "services": sorted(x for x in s.get("services") or [root["root_service"]] if x is not None),
                "errors": int(s.get("errors") or 0),
            }
        )
    return out


def _resource(process_properties: Any) -> dict[str, Any]:
    if not isinstance(process_properties, dict):
        return {}
    return {
        (k[len(_RESOURCE_PREFIX) :] if k.startswith(_RESOURCE_PREFIX) else k): v for k, v in process_properties.items()
    }


def _events(events: Any) -> list[Row]:
    out = []
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        time_ns = event.get("time_unix_nano")
        out.append(
            {
                "time_ns": int(time_ns) if time_ns is not None else None,
                "name": event.get("name"),
                "attributes": event.get("attributes") or {},
            }
        )
    return out


def _links(links: Any) -> list[Row]:
    return [
        {"trace_id": link.get("trace_id"), "span_id": link.get("span_id"), "attributes": link.get("attributes") or {}}
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict)
    ]


def _cached(convert: Any) -> Any:
    """``convert`` memoised by the identity of its argument (rows share decoded JSONB objects)."""
    done: dict[int, Any] = {}

    def call(value: Any) -> Any:
        key = id(value)
        if key not in done:
            done[key] = convert(value)
        return done[key]

    return call


def trace_data(trace_id: str, columns: Mapping[str, Sequence[Any]], logs: list[Row]) -> dict[str, Any]:
    """``/explore/api/trace/<id>`` data: every span with its details and critical-path mark.

    Args:
        trace_id: the trace's id (hex).
        columns: the columns of ``trace_spans_sql``'s answer (``_render.table_columns``), at least one row.
        logs: the trace's log rows.
    """
    ids, parents = columns["span_id"], columns["parent_span_id"]
    starts, ends = columns["start_time"], columns["end_time"]
    critical = critical_path([SpanTiming(*span) for span in zip(ids, parents, starts, ends, strict=True)])
    resource, events, links = _cached(_resource), _cached(_events), _cached(_links)
    spans = [
        {
            "span_id": span_id,
            "parent_span_id": parent,
            "service": service,
            "name": name,
            "kind": kind,
            "start_ns": start,
            "end_ns": end,
            "duration_ms": duration / 1e6,
            "status": status,
            "status_message": message,
            "attributes": attributes if isinstance(attributes, dict) else {},
            "resource": resource(process_properties),
            "events": events(span_events),
            "links": links(span_links),
            "process_id": process_id,
            "critical": span_id in critical,
        }
        for (
            span_id,
            parent,
            service,
            name,
            kind,
            start,
            end,
            duration,
            status,
            message,
            attributes,
            process_properties,
            span_events,
            span_links,
            process_id,
        ) in zip(
            ids,
            parents,
            columns["service_name"],
            columns["name"],
            columns["kind"],
            starts,
            ends,
            columns["duration"],
            columns["status"],
            columns["status_message"],
            columns["properties"],
            columns["process_properties"],
            columns["events"],
            columns["links"],
            columns["process_id"],
            strict=True,
        )
    ]
    start, end = min(starts), max(ends)
    return {
        "trace_id": trace_id,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6,
        "services": sorted(set(columns["service_name"])),
        "spans": spans,
        "logs": logs,
    }


def metric_series(
    window: TimeWindow, bucket_s: int, kind: str, rows: Sequence[Row], quantile_rows: Sequence[Row]
) -> dict[str, Any]:
    """``/explore/api/metrics/series`` data: one point per bucket of each group (None where empty)."""
    starts = bucket_starts(window, bucket_s)
    index = {t: i for i, t in enumerate(starts)}
    groups: dict[str, list[float | None]] = {}
    unit = ""
    is_rate = False
    for row in rows:
        values = groups.setdefault(str(row["grp"]), [None] * len(starts))
        i = index.get(row["t"])
        if i is not None:
            values[i] = None if row["v"] is None else float(row["v"])
        unit = row.get("unit") or unit
        is_rate = is_rate or bool(row.get("is_rate"))
    times = [rfc3339(t) for t in starts]
    data: dict[str, Any] = {
        "bucket_seconds": bucket_s,
        "unit": f"{unit}/s" if is_rate and unit else ("1/s" if is_rate else unit),
        "kind": kind,
        "rate": is_rate,
        "series": [
            {"group": group, "points": [[t, v] for t, v in zip(times, values, strict=True)]}
            for group, values in sorted(groups.items())
        ],
    }
    if kind == "histogram":
        quantiles: dict[str, list[float | None]] = {q: [None] * len(starts) for q in ("p50", "p95", "p99")}
        for row in quantile_rows:
            i = index.get(row["t"])
            if i is not None:
                for q, values in quantiles.items():
                    values[i] = None if row[q] is None else float(row[q])
        data["quantiles"] = {q: [[t, v] for t, v in zip(times, values, strict=True)] for q, values in quantiles.items()}
    return data
