"""``thread_spans``: the spans of one thread (``cpu`` stream), paired from begin/end events (JIT).

A partition holds every block of the stream inserted in its insert range, read in
``object_offset`` order. Begin and end events are paired without a Python loop: an event's
*level* is the depth it opens (begin) or closes (end); within a level, events sorted by
position alternate begin, end, begin, end. Spans cut by the partition's edges are completed with
synthetic events: ends whose begin lies earlier start at the first block's ``begin_time``,
begins never closed end at the last block's ``end_time``. ``id`` is the begin event's ordinal
(``object_offset + index``; the end's ordinal for a synthetic begin), ``parent`` the id of the
enclosing span (-1 at depth 0), rows are sorted by ``begin``.

JIT needs a query range (as in Micromegas). The insert range of the partition is that of the
stream's blocks overlapping the query, widened to cover any overlapping thread_spans partition,
so partitions of one stream only grow and the rebuilt one replaces those it covers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ...tracing.transit import TRANSIT_FORMAT
from .._block_source import BlockFilter, SourceBatch, SourceBlock, fetch_source
from .._exceptions import ViewError
from .._partitions import find_overlapping
from .._time_range import TimeRange
from .._view_set import DICT_STR, TIMESTAMP, BlockViewSet, InstanceKind
from ._columns import timestamps
from ._span_events import SpanDescriptors, SpanEvents, span_events

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["THREAD_SPANS_SCHEMA", "ThreadSpansView", "pair_spans"]

THREAD_SPANS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("parent", pa.int64(), nullable=False),
        pa.field("depth", pa.uint32(), nullable=False),
        pa.field("hash", pa.uint32(), nullable=False),
        pa.field("begin", TIMESTAMP, nullable=False),
        pa.field("end", TIMESTAMP, nullable=False),
        pa.field("duration", pa.int64(), nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("filename", DICT_STR, nullable=False),
        pa.field("line", pa.uint32(), nullable=False),
    ]
)

_US = 1_000


def pair_spans(is_begin: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], ...]:
    """Pair begin/end events given in time order.

    Args:
        is_begin: per event, True for a begin.

    Returns:
        ``(begin_index, end_index, depth, parent_slot)`` per span, where indices address the
        input events, or are -1 for a synthetic begin (before all events) / end (after all);
        ``parent_slot`` is the index of the parent span in the returned arrays, or -1.

    >>> [a.tolist() for a in pair_spans(np.array([True, True, False, False]))]
    [[0, 1], [3, 2], [0, 1], [-1, 0]]
    """
    is_begin = np.asarray(is_begin, dtype=bool)
    size = is_begin.size
    # Narrow types and in-place steps: each fresh 1 M-element int64 temporary is 8 MB of pages
    # to fault in, which cost more than the arithmetic (``bench/etl.py``, 2026-12-07).
    step = is_begin.view(np.int8) * np.int8(2)
    step -= np.int8(1)
    depth_after = np.cumsum(step, dtype=np.int64 if size >= 2**31 else np.int32)
    missing = int(max(0, -int(depth_after.min()))) if size else 0
    open_at_end = int(depth_after[-1]) + missing if size else 0
    # Synthetic begins (outermost first) before the events, synthetic ends closing what is open
    # after. An event's level is the depth after it, less one for a begin.
    total = missing + size + open_at_end
    events = np.zeros(total, bool)
    events[:missing] = True
    events[missing : missing + size] = is_begin
    level = np.empty(total, depth_after.dtype)
    level[:missing] = np.arange(missing)
    middle = level[missing : missing + size]
    np.add(depth_after, missing, out=middle)
    middle -= is_begin
    level[missing + size :] = np.arange(open_at_end - 1, -1, -1)
    del depth_after, middle
    # Events by level, then position: a stable sort (radix for 16-bit keys, as nesting is shallow).
    narrow = level.astype(np.uint16) if level.size and int(level.max()) < 2**16 else level
    order = np.argsort(narrow, kind="stable")
    del narrow
    begins, ends = order[0::2], order[1::2]
    span_level = level[begins]
    # Parent: the latest begin one level up, before this begin. Within a level, events alternate
    # begin, end: ``begins`` is already sorted by (level, position), and so are these keys.
    keys = span_level.astype(np.int64)
    keys *= total + 1
    keys += begins
    probe = keys - (total + 1)
    slot = np.searchsorted(keys, probe, side="left")
    del keys, probe
    slot -= 1
    valid = (span_level > 0) & (slot >= 0)
    parent = np.where(valid, slot, -1)
    return _original(begins, missing, size), _original(ends, missing, size), span_level, parent


def _original(indices: npt.NDArray[np.int64], missing: int, size: int) -> npt.NDArray[np.int64]:
    """Indices into the extended events → indices into the input, -1 for synthetic events."""
    original = indices - missing
    original[(original < 0) | (original >= size)] = -1
    return original


class ThreadSpansView(BlockViewSet):
    """Spans of one thread stream (JIT only, query range required)."""

    name: ClassVar[str] = "thread_spans"
    schema: ClassVar[pa.Schema] = THREAD_SPANS_SCHEMA
    file_schema_hash: ClassVar[bytes] = bytes([3])
    jit_instance: ClassVar[InstanceKind | None] = InstanceKind.STREAM
    event_time_columns: ClassVar[tuple[str, str]] = ("begin", "end")
    sort_order: ClassVar[tuple[str, ...]] = ("begin",)
    mergeable: ClassVar[bool] = False
    replaces_overlapping: ClassVar[bool] = True
    tag: ClassVar[str | None] = None
    delta_columns: ClassVar[tuple[str, ...]] = ("id", "parent", "begin", "end", "duration")

    def block_filter(self, instance: str) -> BlockFilter:
        """The blocks of the stream (whatever its tags)."""
        return BlockFilter(stream_id=self.check_instance(instance))

    async def jit_ranges(
        self, lake: Lakehouse, instance: str, query_range: TimeRange | None
    ) -> list[tuple[TimeRange, int | None]]:
        """One insert range: the blocks overlapping the query, widened over overlapping partitions.

        Raises:
            ViewError: no query range was given.
        """
        if query_range is None:
            msg = "thread_spans needs a query range (begin and end)"
            raise ViewError(msg)
        batch = await fetch_source(lake.pool, self.block_filter(instance), TimeRange(0, 2**62), limit_to=query_range)
        if not batch.blocks:
            return []
        inserts = [b.insert_time_ns for b in batch.blocks]
        wanted = TimeRange(min(inserts), max(inserts) + _US)
        while True:
            overlapping = await find_overlapping(lake.pool, self.name, instance, self.file_schema_hash, wanted)
            widened = wanted
            for partition in overlapping:
                widened = widened.union(partition.insert_range)
            if widened == wanted:
                return [(wanted, None)]
            wanted = widened

    def transform_chunks(self, batch: SourceBatch) -> Iterator[pa.Table]:
        """The spans, coding each block's events as soon as a decoding thread has it.

        One thread decodes ahead, block by block, while this one codes the events of the
        blocks already decoded: LZ4 and numpy release the GIL, so the two overlap (pairing
        needs every block, so the rows come out as one chunk).
        """
        formats = {batch.streams[b.stream_id].format for b in batch.blocks}
        if not batch.blocks or not formats <= {TRANSIT_FORMAT}:
            yield self.transform_batch(batch)
            return
        descriptors = SpanDescriptors()
        coded = [
            (block, span_events(part.decode(i), "thread", descriptors))
            for part in batch.decoded_chunks(1, workers=1)
            for i, block in enumerate(part.blocks)
        ]
        yield self._rows(batch, coded, descriptors).cast(self.schema)

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Spans of the stream's blocks in ``batch``."""
        descriptors = SpanDescriptors()
        coded = [(b, span_events(batch.decode(i), "thread", descriptors)) for i, b in enumerate(batch.blocks)]
        return self._rows(batch, coded, descriptors)

    def _rows(
        self, batch: SourceBatch, coded: list[tuple[SourceBlock, SpanEvents]], descriptors: SpanDescriptors
    ) -> pa.Table:
        """Pair the coded events of every block (in any order) into rows."""
        coded = sorted(coded, key=lambda item: item[0].object_offset)  # stable: ties keep batch order
        blocks, events = [b for b, _ in coded], [e for _, e in coded]
        if not blocks or not sum(len(e) for e in events):
            return self.schema.empty_table()
        converter = batch.processes[blocks[0].process_id].converter()
        times = converter.ticks_to_ns(np.concatenate([e.ticks for e in events]))
        ordinals = np.concatenate([e.position + b.object_offset for b, e in zip(blocks, events, strict=True)])
        codes = np.concatenate([e.code for e in events])
        begin_idx, end_idx, depth, parent_slot = pair_spans(np.concatenate([e.is_begin for e in events]))
        first_ns, last_ns = blocks[0].begin_time_ns, max(b.end_time_ns for b in blocks)
        real_begin, real_end = begin_idx >= 0, end_idx >= 0
        begin_ns = np.where(real_begin, times[np.clip(begin_idx, 0, None)], first_ns)
        end_ns = np.where(real_end, times[np.clip(end_idx, 0, None)], last_ns)
        # A synthetic begin takes its descriptor and id from its end event.
        source = np.where(real_begin, begin_idx, end_idx)
        ids = ordinals[np.clip(source, 0, None)]
        parent = np.where(parent_slot >= 0, ids[np.clip(parent_slot, 0, None)], -1)
        rows = _by_begin(begin_idx, begin_ns, ids, codes.size)
        pick = codes[source[rows]]
        return pa.table(
            [
                pa.array(ids[rows], pa.int64()),
                pa.array(parent[rows], pa.int64()),
                pa.array(depth[rows].astype(np.uint32), pa.uint32()),
                pa.array(descriptors.hashes(pick), pa.uint32()),
                timestamps(begin_ns[rows]),
                timestamps(end_ns[rows]),
                pa.array((end_ns - begin_ns)[rows], pa.int64()),
                descriptors.text("name", pick),
                descriptors.text("target", pick),
                descriptors.text("filename", pick),
                pa.array(descriptors.lines(pick), pa.uint32()),
            ],
            schema=THREAD_SPANS_SCHEMA,
        )


def _by_begin(
    begin_idx: npt.NDArray[np.int64], begin_ns: npt.NDArray[np.int64], ids: npt.NDArray[np.int64], events: int
) -> npt.NDArray[np.int64]:
    """Row order of spans by ``(begin_ns, id)`` (``np.lexsort((ids, begin_ns))``) among ``events`` events.

    Spans usually begin in event order with increasing ids. Their order by begin event is found
    in linear time: synthetic begins first (``pair_spans`` lists them first at each level, and
    the n-th one opens level n), then real begins scattered by event index. It is the answer
    when the keys strictly increase along it (no ties, so the sort could not order otherwise);
    else a sort decides.
    """
    real = begin_idx >= 0
    slot = np.full(events, -1, np.int64)
    slot[begin_idx[real]] = np.flatnonzero(real)
    rows = np.concatenate([np.flatnonzero(~real), slot[slot >= 0]])
    keys_b, keys_i = begin_ns[rows], ids[rows]
    later = keys_b[1:] > keys_b[:-1]
    if bool(np.all(later | ((keys_b[1:] == keys_b[:-1]) & (keys_i[1:] > keys_i[:-1])))):
        return rows
    return np.lexsort((ids, begin_ns))
