"""Plain-text views for the terminal companions: a trace's waterfall and the services' RED table.

Pure functions over the API's data shapes (:mod:`._shaping`), so ``sirius trace`` and
``sirius services`` print what the pages show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_log_line", "format_services", "format_waterfall", "tree_order"]

Row = dict[str, Any]


def tree_order(spans: Sequence[Row]) -> list[tuple[Row, int]]:
    """Spans depth first (children by start time) with their depth; orphans are roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[Row]] = {}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s["start_ns"], s["span_id"]))
    out: list[tuple[Row, int]] = []
    seen: set[str] = set()
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:
            continue
        seen.add(span["span_id"])
        out.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span["span_id"], [])))
    out.extend((span, 0) for span in spans if span["span_id"] not in seen)  # cycles: shown flat
    return out


def _bar(span: Row, trace_start: int, trace_ns: int, width: int, fill: str) -> str:
    start, end = span["start_ns"], span["end_ns"]
    left = int((start - trace_start) / trace_ns * width) if trace_ns else 0
    right = round((end - trace_start) / trace_ns * width) if trace_ns else width
    left = min(max(left, 0), width - 1)
    right = min(max(right, left + 1), width)
    return " " * left + fill * (right - left) + " " * (width - right)


def format_waterfall(trace: Row, *, width: int = 40, unicode: bool = True) -> str:
    """A trace as an indented waterfall: offset, duration, a bar, the span, its service, errors.

    ``*`` marks the critical path and ``!`` an error.
    """
    spans = trace["spans"]
    start, end = trace["start_ns"], trace["end_ns"]
    total = max(end - start, 0)
    fill = "█" if unicode else "#"
    errors = sum(1 for s in spans if s["status"] == "ERROR")
    lines = [
        f"trace {trace['trace_id']}  {len(spans)} span{'s' if len(spans) != 1 else ''}, "
        f"{len(trace['services'])} service{'s' if len(trace['services']) != 1 else ''} "
        f"({', '.join(trace['services'])}), {trace['duration_ms']:.2f} ms"
        + (f", {errors} error{'s' if errors != 1 else ''}" if errors else ""),
        f"{'start ms':>10} {'duration ms':>12}  {'timeline':<{width + 2}}  span",
    ]
    for span, depth in tree_order(spans):
        mark = ("!" if span["status"] == "ERROR" else " ") + ("*" if span.get("critical") else " ")
        bar = _bar(span, start, total, width, fill)
        text = f"{'  ' * depth}{span['name']}  [{span['service']}]"
        if span["status"] == "ERROR":
            text += f"  ERROR: {span['status_message'] or ''}".rstrip()
        offset = (span["start_ns"] - start) / 1e6
        lines.append(f"{offset:>10.2f} {span['duration_ms']:>12.2f}  |{bar}| {mark} {text}")
    lines.append("(! error, * critical path)")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_services(services: Sequence[Row]) -> str:
    """The RED table: one line per service."""
    header = ("service", "kind", "requests", "req/s", "errors", "err %", "p50 ms", "p95 ms", "p99 ms", "procs")
    rows = [
        (
            str(s["service"]),
            s["kind"],
            str(s["requests"]),
            _num(s["rate_per_s"], 3),
            str(s["errors"]),
            _num(s["error_rate"] * 100, 1) if s["requests"] else "-",
            _num(s["p50_ms"]),
            _num(s["p95_ms"]),
            _num(s["p99_ms"]),
            str(s["processes"]),
        )
        for s in services
    ]
    if not rows:
        return "no services in this range"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_log_line(row: Row) -> str:
    """One log row: time, level, service, target, message (and the trace id when there is one)."""
    trace = f"  trace={row['trace_id']}" if row.get("trace_id") else ""
    return f"{row['time']}  {row['level_name'].upper():<5}  {row['service']}  {row['target']}  {row['msg']}{trace}"
