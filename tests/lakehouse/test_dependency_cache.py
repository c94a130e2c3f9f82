"""Decoding with a shared dependency cache gives what decoding each block alone gives.

Blocks of one stream usually repeat their dependency queue byte for byte, and
``SourceBatch`` decodes it once (``decode_queues(..., dependency_cache)``). Sequences of
blocks drawn from a few valid and mutated queues must decode to the same events, or fail with
the same error, with and without the cache, whatever the order.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transit_batches import batch_parts

from sirius.lakehouse._block_source import SourceBatch
from sirius.lakehouse._exceptions import CorruptBlockError
from sirius.lakehouse._transit_dependencies import Dependencies
from sirius.lakehouse._transit_reader import decode_queues
from sirius.tracing.transit import decompress_queue
from sirius.tracing.transit._layouts import STREAM_LAYOUTS
from sirius.tracing.transit._wire_format import ProcessInfo
from sirius.tracing.transit._writer import SpanMetadata, TransitWriter

PROCESS = ProcessInfo(uuid.UUID(int=7), "app", "u", "u", "h", "linux", "cpu", 1_000_000_000, 10**18, 0)
LAYOUT = STREAM_LAYOUTS["cpu"]
SPANS = [SpanMetadata(f"span{i}", "t", "m", "f.rs", i) for i in range(4)]


def _queues(descs: list[int]) -> tuple[bytes, bytes]:
    """Dependency and object queues of one block opening and closing the given spans."""
    writer = TransitWriter(PROCESS, "cpu")
    for tick, d in enumerate(descs):
        writer.begin_thread_span(SPANS[d], ticks=tick)
        writer.end_thread_span(SPANS[d], ticks=tick)
    return writer.dependency_queue(), writer.object_queue()


def _mutate(data: bytes, at: int, value: int) -> bytes:
    if not data:
        return bytes([value])
    buf = bytearray(data)
    buf[at % len(buf)] ^= value or 1
    return bytes(buf)


def _outcome(deps: bytes, objs: bytes, cache: dict[bytes, Dependencies] | None) -> Any:
    try:
        return decode_queues(LAYOUT.dependencies_metadata, LAYOUT.objects_metadata, deps, objs, cache).to_events()
    except CorruptBlockError as exc:
        return ("corrupt", str(exc))


BLOCK = st.tuples(
    st.lists(st.integers(0, 3), min_size=1, max_size=4),
    st.none() | st.tuples(st.sampled_from(["deps", "objs"]), st.integers(0, 2**16), st.integers(0, 255)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(BLOCK, min_size=1, max_size=8))
def test_a_shared_cache_decodes_like_no_cache(blocks: list[tuple[list[int], Any]]) -> None:
    cache: dict[bytes, Dependencies] = {}
    for descs, mutation in blocks:
        deps, objs = _queues(descs)
        if mutation is not None:
            which, at, value = mutation
            deps, objs = (_mutate(deps, at, value), objs) if which == "deps" else (deps, _mutate(objs, at, value))
        assert _outcome(deps, objs, cache) == _outcome(deps, objs, None)
    # Only queues that decoded are kept, each under its own bytes.
    assert all(isinstance(v, Dependencies) for v in cache.values())


def test_a_batch_decodes_a_repeated_dependency_queue_once() -> None:
    writer = TransitWriter(PROCESS, "cpu")
    blocks = []
    for d in (0, 1, 0, 2):
        writer.begin_thread_span(SPANS[0], ticks=d)
        writer.end_thread_span(SPANS[d], ticks=d)
        blocks.append(writer.seal())
    batch = SourceBatch(*batch_parts(writer, blocks))
    decoded = [batch.decode(i) for i in range(len(blocks))]
    # Blocks 0 and 2 (span0 twice) share a queue; 1 and 3 each have their own.
    assert decoded[0].dependencies is decoded[2].dependencies
    assert len({id(d.dependencies) for d in decoded}) == 3
    for block, got in zip(blocks, decoded, strict=True):
        alone = decode_queues(LAYOUT.dependencies_metadata, LAYOUT.objects_metadata, *_block_queues(block)).to_events()
        assert got.to_events() == alone


def _block_queues(block: Any) -> tuple[bytes, bytes]:
    return decompress_queue(bytes(block.payload.dependencies)), decompress_queue(bytes(block.payload.objects))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 40), max_size=10, unique=True),
    st.lists(st.integers(0, 50), max_size=20),
    st.integers(1, 20),
)
def test_check_ids_reports_the_first_missing_id(known: list[int], distinct: list[int], repeat: int) -> None:
    """Checking distinct ids (above a few dozen events) finds what checking every id finds."""
    ids = distinct * repeat
    deps = Dependencies()
    for ident in known:
        deps._add(ident, "StaticString")
        deps.strings[ident] = f"s{ident}"
    missing = next((i for i in ids if i not in known), None)
    if missing is None:
        deps.check_ids(np.array(ids, dtype=np.uint64), "ref")
        return
    with pytest.raises(CorruptBlockError, match=f"id {missing} not found"):
        deps.check_ids(np.array(ids, dtype=np.uint64), "ref")


RECORD_FIELD = st.one_of(st.none(), st.sampled_from(["a", "b", "target::x", ""]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 2**40), RECORD_FIELD), min_size=1, max_size=8, unique_by=lambda r: r[0]),
    st.lists(st.integers(0, 7), max_size=30),
    st.booleans(),
)
def test_field_of_records_gives_each_events_record_field_on_every_call(
    records: list[tuple[int, str | None]], picks: list[int], numeric: bool
) -> None:
    deps = Dependencies()
    for ident, value in records:
        record: dict[str, Any] = {"id": ident}
        if value is not None:
            record["field"] = len(value) if numeric else value
        deps.records[ident] = record
        deps.kinds[ident] = "Record"
    ids = np.array([records[p % len(records)][0] for p in picks], dtype=np.uint64)
    wanted = [deps.records[int(i)].get("field") for i in ids.tolist()]
    index = deps.record_indices(ids, "test")
    for _ in range(2):  # the second call reads the per-field column computed by the first
        if any(w is None for w in wanted):
            with pytest.raises(CorruptBlockError, match="no field 'field'"):
                deps.field_of_records(index, "field")
            continue
        got = deps.field_of_records(index, "field")
        assert got.to_pylist() == wanted
