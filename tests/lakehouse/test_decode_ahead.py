"""``SourceBatch.decoded_chunks``: the chunks of a batch, decoded ahead on threads within a bound.

Whatever the chunk size, the number of decode threads and how far ahead they may run, the
chunks hold the batch's blocks in order, each decoded as ``decode`` alone decodes it, and no
block more than ``ahead_objects`` objects past the chunk in use has started decoding.
"""

from __future__ import annotations

import threading
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st
from transit_batches import batch_parts

from sirius.lakehouse._block_source import SourceBatch, SourceBlock, SourceProcess, SourceStream
from sirius.lakehouse._transit_reader import DecodedBlock
from sirius.tracing.transit._wire_format import ProcessInfo
from sirius.tracing.transit._writer import SpanMetadata, TransitWriter

PROCESS = ProcessInfo(uuid.UUID(int=9), "app", "u", "u", "h", "linux", "cpu", 1_000_000_000, 10**18, 0)
SPANS = [SpanMetadata(f"span{i}", "t", "m", "f.rs", i) for i in range(3)]


def _batch(
    spans_per_block: list[int],
) -> tuple[list[SourceBlock], dict[uuid.UUID, SourceStream], dict[uuid.UUID, SourceProcess], list[bytes]]:
    writer = TransitWriter(PROCESS, "cpu")
    sealed = []
    for count in spans_per_block:
        for i in range(count):
            writer.begin_thread_span(SPANS[i % 3], ticks=i)
            writer.end_thread_span(SPANS[i % 3], ticks=i)
        sealed.append(writer.seal())
    return batch_parts(writer, sealed)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=12),
    st.integers(1, 20),
    st.integers(1, 3),
    st.integers(0, 30),
)
def test_chunks_hold_the_blocks_in_order_decoded_as_alone(
    spans_per_block: list[int], max_objects: int, workers: int, ahead_objects: int
) -> None:
    rows, streams, processes, payloads = _batch(spans_per_block)
    alone = SourceBatch(rows, streams, processes, payloads)
    expected = [alone.decode(i).to_events() for i in range(len(rows))]
    batch = SourceBatch(rows, streams, processes, payloads)
    seen: list[list[dict[str, object]]] = []
    used = 0
    for part in batch.decoded_chunks(max_objects, workers=workers, ahead_objects=ahead_objects):
        assert part.nb_objects <= max_objects or len(part.blocks) == 1
        seen.extend(part.decode(i).to_events() for i in range(len(part.blocks)))
        used += part.nb_objects
    assert seen == expected
    assert used == batch.nb_objects


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=12), st.integers(1, 20), st.integers(0, 30))
def test_decoding_starts_no_further_than_the_bound(spans_per_block: list[int], max_objects: int, ahead: int) -> None:
    rows, streams, processes, payloads = _batch(spans_per_block)
    ends = [sum(b.nb_objects for b in rows[: i + 1]) for i in range(len(rows))]
    parts = list(SourceBatch(rows, streams, processes, payloads).chunks(max_objects))
    starts = [sum(p.nb_objects for p in parts[:k]) for k in range(len(parts))]
    started: list[int] = []
    lock = threading.Lock()
    original = SourceBatch._decode_uncached

    def recording(self: SourceBatch, index: int) -> DecodedBlock:
        with lock:
            started.append(rows.index(self.blocks[index]))
        return original(self, index)

    batch = SourceBatch(rows, streams, processes, payloads)
    SourceBatch._decode_uncached = recording  # type: ignore[method-assign]
    try:
        for k, part in enumerate(batch.decoded_chunks(max_objects, workers=1, ahead_objects=ahead)):
            # Queued: the parts up to the first whose objects reach past this one's end + ahead.
            limit = starts[k] + part.nb_objects + ahead
            with lock:
                furthest = max(started)
            queued_end = next((e for e in _part_ends(parts) if e >= limit), ends[-1])
            assert ends[furthest] <= queued_end
    finally:
        SourceBatch._decode_uncached = original  # type: ignore[method-assign]


def _part_ends(parts: list[SourceBatch]) -> list[int]:
    total, out = 0, []
    for p in parts:
        total += p.nb_objects
        out.append(total)
    return out
