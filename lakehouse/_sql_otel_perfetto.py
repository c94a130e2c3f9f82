"""OTel spans of a process as Perfetto tracks (for ``perfetto_trace_chunks``).

A process fed by OTel (OTLP receivers or the in-process ``sirius`` exporters) has no ``cpu``
streams: its spans are in ``view_instance('otel_spans', <process_id>)``. They become thread
tracks of the process in the trace:

* one track per service (``service_name``) and thread: spans whose attributes carry a
  ``thread.id`` go to that thread's track (named ``thread.name``, else ``thread <id>``), the
  others to a track named after the service;
* Perfetto draws the slices of one track as a stack, so they must nest. OTel spans of
  concurrent requests overlap without nesting: a track's spans are laid out on **lanes**
  (first lane where the span fits inside the open span on top, or starts after it ended;
  else a new lane), and lane ``k > 1`` is its own track named ``<track name> #k``;
* slice name = span name, category = instrumentation scope (``otel.scope.name``).

Lane assignment walks the spans of a track once in start order (a loop per span with a short
per-lane stack: Perfetto export is a per-request encoding, not ETL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import datafusion
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ._sql_perfetto import PerfettoTrack, stable_id

if TYPE_CHECKING:
    from ._sql_table_functions import SqlEnvironment

__all__ = ["assign_lanes", "otel_tracks"]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def assign_lanes(
    begin: npt.NDArray[np.int64], end: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lane and depth of each span so that every lane's spans nest (see the module docstring).

    >>> lanes, depth = assign_lanes(np.array([0, 1, 5, 6, 7]), np.array([10, 4, 20, 8, 9]))
    >>> lanes.tolist(), depth.tolist()
    ([0, 0, 1, 0, 1], [0, 1, 0, 1, 1])
    """
    order = np.lexsort((-end, begin))
    lanes = np.zeros(begin.size, np.int64)
    depth = np.zeros(begin.size, np.int64)
    stacks: list[list[int]] = []
    for index, start, stop in zip(order.tolist(), begin[order].tolist(), end[order].tolist(), strict=True):
        lane = _fitting_lane(stacks, start, stop)
        if lane == len(stacks):
            stacks.append([])
        lanes[index], depth[index] = lane, len(stacks[lane])
        stacks[lane].append(stop)
    return lanes, depth


def _fitting_lane(stacks: list[list[int]], start: int, stop: int) -> int:
    """The first lane whose open spans let ``[start, stop]`` nest (``len(stacks)`` for a new one)."""
    for lane, stack in enumerate(stacks):
        while stack and stack[-1] <= start:
            stack.pop()
        if not stack or stop <= stack[-1]:
            return lane
    return len(stacks)


@dataclass(frozen=True, slots=True)
class _Group:
    key: str
    label: str
    tid: int | None


def _groups(spans: pa.Table) -> tuple[npt.NDArray[np.int64], list[_Group]]:
    """Each span's track group (service, thread) and the groups, by first appearance."""
    service = pc.cast(spans["service_name"], pa.utf8())
    thread_id = pc.fill_null(pc.cast(spans["thread_id"], pa.utf8()), "")
    keys = pc.binary_join_element_wise(service, thread_id, "\x1f")
    encoded = pc.dictionary_encode(keys).combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
    _, first_rows = np.unique(codes, return_index=True)  # per dictionary code
    order = np.argsort(first_rows, kind="stable")
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    groups = []
    for row in first_rows[order].tolist():  # one step per group
        tid_text = thread_id[row].as_py()
        tid = int(tid_text) if tid_text.isdigit() else None
        label = (spans["thread_name"][row].as_py() or f"thread {tid_text}") if tid_text else service[row].as_py()
        groups.append(_Group(keys[row].as_py(), str(label), tid))
    return rank[codes], groups


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[npt.NDArray[np.int64], list[str]]:
    encoded = pc.dictionary_encode(pc.fill_null(pc.cast(column, pa.utf8()), "")).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False), [str(v) for v in encoded.dictionary.to_pylist()]


def otel_tracks(
    ctx: datafusion.SessionContext, env: SqlEnvironment, process_id: str, begin_ns: int, end_ns: int
) -> list[PerfettoTrack]:
    """The tracks of the process's OTel spans overlapping ``[begin_ns, end_ns]`` (none without ``trace`` streams)."""
    traced = env.collect(
        ctx,
        "SELECT count(*) AS n FROM streams "  # noqa: S608 - the id is a quoted literal
        f"WHERE process_id = {_quote(process_id)} AND array_has(tags, 'trace')",
    )
    if not traced.num_rows or not traced.column(0)[0].as_py():
        return []
    sql = (
        "SELECT service_name, start_time, end_time, name, "  # noqa: S608 - the id is a quoted literal
        "property_get(properties, 'otel.scope.name') AS scope, "
        "property_get(properties, 'thread.id') AS thread_id, "
        "property_get(properties, 'thread.name') AS thread_name "
        f"FROM view_instance('otel_spans', {_quote(process_id)})"
    )
    spans = env.collect(ctx, sql)
    if spans.num_rows == 0:
        return []
    begin = np.asarray(pc.cast(spans["start_time"], pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    end = np.asarray(pc.cast(spans["end_time"], pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    keep = (end >= begin_ns) & (begin <= end_ns)
    if not keep.all():
        spans, begin, end = spans.filter(pa.array(keep)), begin[keep], end[keep]
    if spans.num_rows == 0:
        return []
    group_of, groups = _groups(spans)
    name_codes, names = _codes(spans["name"])
    scope_codes, scopes = _codes(spans["scope"])
    tracks: list[PerfettoTrack] = []
    for index, group in enumerate(groups):
        rows = np.flatnonzero(group_of == index)
        lanes, depth = assign_lanes(begin[rows], end[rows])
        for lane in range(int(lanes.max()) + 1):
            picked = rows[lanes == lane]
            label = group.label if lane == 0 else f"{group.label} #{lane + 1}"
            uuid = stable_id(f"otel:{process_id}\x1f{group.key}\x1f{lane}")
            tid = group.tid if group.tid is not None and lane == 0 else uuid
            tracks.append(
                PerfettoTrack(
                    uuid=uuid,
                    thread_name=label,
                    tid=tid,
                    begin_ns=begin[picked],
                    end_ns=end[picked],
                    depth=depth[lanes == lane],
                    name_codes=name_codes[picked],
                    names=names,
                    target_codes=scope_codes[picked],
                    targets=scopes,
                )
            )
    return tracks
