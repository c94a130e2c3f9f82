"""``async_events``: begin/end events of async spans from all ``cpu`` streams of one process (JIT).

One row per event (spans are not paired: async spans migrate between threads and may outlive
any block), partitioned by 1 h insert-time slices like ``log_entries``. Without a query range
JIT covers the process from its start to its last block's end.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from .._block_source import SourceBatch
from .._time_range import NS_PER_HOUR
from .._view_set import DICT_STR, TIMESTAMP, BlockViewSet, InstanceKind
from ._columns import BlockRows, timestamps
from ._span_events import SpanDescriptors, span_events

__all__ = ["ASYNC_EVENTS_SCHEMA", "AsyncEventsView"]

ASYNC_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("stream_id", DICT_STR, nullable=False),
        pa.field("block_id", DICT_STR, nullable=False),
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("event_type", DICT_STR, nullable=False),
        pa.field("span_id", pa.int64(), nullable=False),
        pa.field("parent_span_id", pa.int64(), nullable=False),
        pa.field("depth", pa.uint32(), nullable=False),
        pa.field("hash", pa.uint32(), nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("filename", DICT_STR, nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("line", pa.uint32(), nullable=False),
    ]
)

_EVENT_TYPES = pa.array(["end", "begin"], pa.string())


class AsyncEventsView(BlockViewSet):
    """Async span events of a process (JIT only)."""

    name: ClassVar[str] = "async_events"
    schema: ClassVar[pa.Schema] = ASYNC_EVENTS_SCHEMA
    file_schema_hash: ClassVar[bytes] = bytes([3])
    jit_instance: ClassVar[InstanceKind | None] = InstanceKind.PROCESS
    max_partition_delta_ns: ClassVar[int] = NS_PER_HOUR
    sort_order: ClassVar[tuple[str, ...]] = ("time",)
    tag: ClassVar[str | None] = "cpu"

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Rows of the async span events of ``batch``."""
        descriptors = SpanDescriptors()
        events = [span_events(batch.decode(i), "async", descriptors) for i in range(len(batch.blocks))]
        rows = BlockRows(batch, [len(e) for e in events])
        times = [
            batch.processes[b.process_id].converter().ticks_to_ns(e.ticks)
            for b, e in zip(batch.blocks, events, strict=True)
        ]
        is_begin = np.concatenate([e.is_begin for e in events]).astype(np.int32)
        codes = np.concatenate([e.code for e in events])
        return pa.table(
            [
                rows.stream_id(),
                rows.block_id(),
                timestamps(np.concatenate(times)),
                pa.DictionaryArray.from_arrays(pa.array(is_begin, pa.int32()), _EVENT_TYPES),
                pa.array(np.concatenate([e.span_id for e in events]), pa.int64()),
                pa.array(np.concatenate([e.parent_span_id for e in events]), pa.int64()),
                pa.array(np.concatenate([e.depth for e in events]), pa.uint32()),
                pa.array(descriptors.hashes(codes), pa.uint32()),
                descriptors.text("name", codes),
                descriptors.text("filename", codes),
                descriptors.text("target", codes),
                pa.array(descriptors.lines(codes), pa.uint32()),
            ],
            schema=ASYNC_EVENTS_SCHEMA,
        )
