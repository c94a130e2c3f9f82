"""The critical path of a trace: the spans whose time the trace's end waits on.

From the root (the longest one when there are several; a span whose parent is not in the trace
counts as a root), walk back from the span's end: the child that ends last (no later than the
cursor, a child outliving its parent counting up to the parent's end) is on the path, the
cursor moves to that child's start, and the next child ending before it is on the path too,
until the span's start; each child on the path is walked the same way. The time between
those children (not covered by any) is the span's own work. An explicit stack keeps deep
traces off Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["SpanTiming", "critical_path"]


class SpanTiming(NamedTuple):
    """What the walk needs of a span (a tuple: traces have up to 100 000 spans)."""

    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int


def critical_path(spans: Sequence[SpanTiming]) -> set[str]:
    """The ids of the spans on the critical path.

    >>> spans = [SpanTiming("r", None, 0, 100), SpanTiming("a", "r", 10, 40), SpanTiming("b", "r", 30, 90),
    ...          SpanTiming("c", "r", 5, 20)]
    >>> sorted(critical_path(spans))
    ['b', 'c', 'r']
    """
    if not spans:
        return set()
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanTiming]] = {}
    roots = []
    for span in spans:
        if span.parent_span_id is None or span.parent_span_id not in ids or span.parent_span_id == span.span_id:
            roots.append(span)
        else:
            children.setdefault(span.parent_span_id, []).append(span)
    if not roots:
        return set()
    root = max(roots, key=lambda s: (s.end_ns - s.start_ns, -s.start_ns))
    critical: set[str] = set()
    stack = [(root, root.end_ns)]
    while stack:
        span, limit = stack.pop()
        if span.span_id in critical:
            continue
        critical.add(span.span_id)
        cursor = min(span.end_ns, limit)
        for child in sorted(children.get(span.span_id, ()), key=lambda s: s.end_ns, reverse=True):
            if cursor <= span.start_ns:
                break
            if min(child.end_ns, span.end_ns) > cursor:
                continue  # overlaps the path child found after it: not waited on
            stack.append((child, cursor))
            cursor = min(cursor, child.start_ns)
    return critical
