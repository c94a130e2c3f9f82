"""``thread_spans`` rows from transit blocks against a stack that pairs events one by one.

Random begin/end sequences (plain and named spans, a few descriptors, equal and decreasing
ticks, unbalanced edges) are written with the transit writer, cut into blocks given to the view
in shuffled order, and decoded by the view; the reference walks the same events with a stack.
Also checks the linear row ordering of ``_by_begin`` against ``np.lexsort`` and the
``SpanDescriptors`` codes against the descriptors.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse._block_source import SourceBatch, SourceBlock, SourceProcess, SourceStream
from sirius.lakehouse.views import ThreadSpansView
from sirius.lakehouse.views._span_events import SpanDescriptors, span_hash
from sirius.lakehouse.views._thread_spans import _by_begin, pair_spans
from sirius.tracing.transit import TRANSIT_FORMAT, ProcessInfo
from sirius.tracing.transit._udt import encode_udts
from sirius.tracing.transit._wire_format import Block, payload_to_cbor
from sirius.tracing.transit._writer import SpanLocation, SpanMetadata, TransitWriter

START_NS = 1_700_000_000_000_000_000
DESCS = [
    SpanMetadata("parse", "app::io", "app::io", "io.rs", 10),
    SpanMetadata("query", "app::db", "app::db", "db.rs", 2**32 - 1),
    SpanMetadata("parse", "app::db", "app::db", "io.rs", 10),
]
LOCATION = SpanLocation("app::named", "app::named", "named.rs", 7)
NAMES = ["alpha", "beta", ""]

# An event: (is_begin, descriptor: 0-2 plain, 3-5 named with NAMES[d - 3], tick step).
Event = tuple[bool, int, int]
events_strategy = st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(-2, 3)), max_size=120)


def _describe(d: int) -> tuple[str, str, str, int]:
    if d < 3:
        desc = DESCS[d]
        return desc.name, desc.target, desc.file, desc.line
    return NAMES[d - 3], LOCATION.target, LOCATION.file, LOCATION.line


def _write(events: list[Event], cuts: list[int]) -> tuple[ProcessInfo, TransitWriter, list[Block]]:
    process = ProcessInfo(uuid.uuid4(), "exe", "u", "r", "host", "linux", "cpu", 1_000_000_000, START_NS, 0, None, {})
    writer = TransitWriter(process, "cpu")
    blocks: list[Block] = []
    ticks = 1_000
    for index, (is_begin, d, step) in enumerate(events):
        ticks += step
        if d < 3:
            (writer.begin_thread_span if is_begin else writer.end_thread_span)(DESCS[d], ticks=ticks)
        else:
            named = writer.begin_thread_named_span if is_begin else writer.end_thread_named_span
            named(LOCATION, NAMES[d - 3], ticks=ticks)
        if index + 1 in cuts and writer.nb_objects:
            blocks.append(writer.seal())
    if writer.nb_objects:
        blocks.append(writer.seal())
    return process, writer, blocks


def _batch(process: ProcessInfo, writer: TransitWriter, blocks: list[Block]) -> SourceBatch:
    info = writer.stream_info()
    stream = SourceStream(
        info.stream_id,
        info.process_id,
        encode_udts(info.dependencies_metadata),
        encode_udts(info.objects_metadata),
        ("cpu",),
        {},
        0,
        TRANSIT_FORMAT,
    )
    source = SourceProcess(
        process.process_id, "exe", "u", "r", "host", "linux", "cpu", 1_000_000_000, START_NS, 0, 0, "", {}, 10**9
    )
    rows = [
        SourceBlock(
            b.block_id,
            b.stream_id,
            b.process_id,
            b.begin_time_ns,
            b.begin_ticks,
            b.end_time_ns,
            b.end_ticks,
            b.nb_objects,
            b.object_offset,
            0,
            0,
        )
        for b in blocks
    ]
    return SourceBatch(
        rows, {stream.stream_id: stream}, {source.process_id: source}, [payload_to_cbor(b.payload) for b in blocks]
    )


def _by_stack(events: list[Event], blocks: list[Block]) -> list[dict[str, Any]]:
    """The rows, pairing events with a stack (synthetic events at the blocks' edges)."""
    first_ns, last_ns = blocks[0].begin_time_ns, max(b.end_time_ns for b in blocks)
    times, ticks = [], 1_000
    for _, _, step in events:
        ticks += step
        times.append(START_NS + ticks)
    depth = missing = 0
    for is_begin, _, _ in events:
        depth += 1 if is_begin else -1
        missing = max(missing, -depth)
    stack: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    # Synthetic begins (outermost first) for the ends that close them; filled when matched.
    for _ in range(missing):
        span = {"begin": first_ns, "depth": len(stack), "parent_span": stack[-1] if stack else None, "synthetic": True}
        stack.append(span)
        spans.append(span)
    for ordinal, (is_begin, d, _) in enumerate(events):
        if is_begin:
            span = {"id": ordinal, "begin": times[ordinal], "depth": len(stack), "desc": d}
            span["parent_span"] = stack[-1] if stack else None
            stack.append(span)
            spans.append(span)
        else:
            span = stack.pop()
            span["end"] = times[ordinal]
            if span.get("synthetic"):
                span["id"], span["desc"] = ordinal, d
    for span in stack:
        span["end"] = last_ns
    rows = []
    for span in spans:
        name, target, filename, line = _describe(span["desc"])
        parent = span["parent_span"]
        rows.append(
            {
                "id": span["id"],
                "parent": -1 if parent is None else parent["id"],
                "depth": span["depth"],
                "hash": span_hash(name, filename, target, line),
                "begin": span["begin"],
                "end": span["end"],
                "duration": span["end"] - span["begin"],
                "name": name,
                "target": target,
                "filename": filename,
                "line": line,
            }
        )
    return sorted(rows, key=lambda r: (r["begin"], r["id"]))


@settings(max_examples=150, deadline=None)
@given(events_strategy, st.lists(st.integers(1, 120), max_size=4), st.randoms(use_true_random=False))
def test_rows_match_a_stack(events: list[Event], cuts: list[int], rng: Any) -> None:
    process, writer, blocks = _write(events, cuts)
    view = ThreadSpansView()
    shuffled = list(blocks)
    rng.shuffle(shuffled)  # the view orders blocks by object_offset
    # transform (blocks decoded on demand) and transform_chunks (decoded one thread ahead).
    direct = view.transform(_batch(process, writer, shuffled)).cast(view.schema)
    chunks = list(view.transform_chunks(_batch(process, writer, shuffled)))
    assert len(chunks) == 1
    assert chunks[0].equals(direct)
    if not events:
        assert direct.num_rows == 0
        return
    columns = {}
    for name in direct.column_names:
        column = direct.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        columns[name] = column.to_pylist()
    got = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    assert got == _by_stack(events, blocks)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.booleans(), max_size=80),
    st.lists(st.integers(-3, 3), min_size=80, max_size=80),
    st.lists(st.integers(0, 5), min_size=80, max_size=80),
)
def test_rows_by_begin_match_lexsort(is_begin: list[bool], steps: list[int], id_noise: list[int]) -> None:
    """The linear order (or its fallback) equals ``np.lexsort((ids, begin_ns))``, ties included."""
    begin_idx, end_idx, _, _ = pair_spans(np.array(is_begin, dtype=bool))
    times = np.cumsum(np.array(steps[: len(is_begin)], dtype=np.int64))
    begin_ns = np.where(begin_idx >= 0, times[np.clip(begin_idx, 0, None)] if times.size else 0, -5)
    source = np.where(begin_idx >= 0, begin_idx, end_idx)
    ids = np.clip(source, 0, None) + np.array(id_noise[: begin_idx.size], dtype=np.int64) // 4
    rows = _by_begin(begin_idx, begin_ns, ids, len(is_begin))
    assert rows.tolist() == np.lexsort((ids, begin_ns)).tolist()


def test_descriptors_code_each_distinct_descriptor_once() -> None:
    descriptors = SpanDescriptors()
    keys = [_describe(d) for d in (0, 1, 0, 2, 3, 4, 3)]
    codes = np.array([descriptors.intern(*k) for k in keys], dtype=np.int32)
    assert codes.tolist() == [0, 1, 0, 2, 3, 4, 3]
    assert len(descriptors) == 5
    assert descriptors.text("name", codes).to_pylist() == [k[0] for k in keys]
    assert descriptors.text("target", codes).to_pylist() == [k[1] for k in keys]
    assert descriptors.text("filename", codes).to_pylist() == [k[2] for k in keys]
    assert descriptors.lines(codes).tolist() == [k[3] & 0xFFFFFFFF for k in keys]
    assert descriptors.hashes(codes).tolist() == [span_hash(k[0], k[2], k[1], k[3]) for k in keys]
    # Texts are coded once however many descriptors share them.
    assert descriptors.text("name", codes).dictionary.to_pylist() == ["parse", "query", "alpha", "beta"]
