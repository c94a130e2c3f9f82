"""Fuzzing the transit reader: any input decodes or raises CorruptBlockError, and terminates."""

from __future__ import annotations

import contextlib
import struct
import uuid

import lz4.frame
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sirius.lakehouse._exceptions import CorruptBlockError
from sirius.lakehouse._transit_reader import decode_block, decode_queues
from sirius.tracing.transit._layouts import STREAM_LAYOUTS, StreamLayout, dynamic
from sirius.tracing.transit._udt import INTRINSIC_SIZES, Member, UserDefinedType
from sirius.tracing.transit._wire_format import BlockPayload, ProcessInfo, decompress_queue
from sirius.tracing.transit._writer import LogMetadata, MetricMetadata, SpanLocation, SpanMetadata, TransitWriter

# No deadline: a loaded 2-core CI box must not turn a slow example into a failure; the pytest
# timeout still catches a reader that would not terminate.
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROCESS = ProcessInfo(uuid.UUID(int=5), "app", "u", "u", "h", "linux", "cpu", 1_000_000_000, 10**18, 0)
KINDS = sorted(STREAM_LAYOUTS)


def _valid_queues(kind: str) -> tuple[bytes, bytes]:
    """Decompressed dependency and object queues holding every event type of ``kind``."""
    writer = TransitWriter(PROCESS, kind)
    desc = LogMetadata("fmt", "target", 3, "mod", "f.rs", 1)
    metric = MetricMetadata("m", "ticks", "t", "f.rs", 2, 1)
    span, loc = SpanMetadata("span", "t", "m", "f", 3, 0), SpanLocation("t", "m", "f", 4, 0)
    for i in range(3):
        if kind == "log":
            writer.log_static(desc, ticks=i)
            writer.log_string(desc, f"msg {i} é" if i % 3 else f"msg {i}", ticks=i, codec=i % 3)
            writer.log_static_interop(4, "it", "im", ticks=i)
            writer.log_string_interop(2, "t3", "✓", ticks=i, codec=1)
            writer.log_tagged(desc, {"level": "warn"}, "tag", ticks=i)
        elif kind == "metrics":
            writer.metric_int(metric, i, ticks=i)
            writer.metric_float(metric, i / 2, ticks=i)
            writer.metric_tagged_float(metric, {"a": "b"}, 1.0, ticks=i)
            writer.metric_tagged_int(metric, {"a": "c"}, 2, ticks=i)
        else:
            writer.begin_thread_span(span, ticks=i)
            writer.begin_thread_named_span(loc, "n", ticks=i)
            writer.begin_async_span(span, 1, 0, depth=1, ticks=i)
            writer.begin_async_named_span(loc, "a", 2, 1, depth=2, ticks=i)
            writer.end_async_named_span(loc, "a", 2, 1, depth=2, ticks=i)
            writer.end_async_span(span, 1, 0, depth=1, ticks=i)
            writer.end_thread_named_span(loc, "n", ticks=i)
            writer.end_thread_span(span, ticks=i)
    return writer.dependency_queue(), writer.object_queue()


VALID = {kind: _valid_queues(kind) for kind in KINDS}


def _decodes_or_corrupt(layout: StreamLayout, deps: bytes, objs: bytes) -> None:
    try:
        decoded = decode_queues(layout.dependencies_metadata, layout.objects_metadata, deps, objs)
    except CorruptBlockError as exc:
        event(f"corrupt: {str(exc).split(':')[0]}")
        return
    event("decoded")
    decoded.to_events()  # whatever decoded must also resolve


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        if not buf:
            buf.append(value)
            continue
        at = pos % len(buf)
        if op == 0:  # bit flip
            buf[at] ^= 1 << (value % 8)
        elif op == 1:  # truncation
            del buf[at:]
        elif op == 2:  # insertion
            buf[at:at] = bytes([value]) * (1 + value % 5)
        else:  # deletion
            del buf[at : at + 1 + value % 4]
    return bytes(buf)


MUTATIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6)


def test_valid_queues_decode():
    for kind in KINDS:
        layout = STREAM_LAYOUTS[kind]
        decoded = decode_queues(layout.dependencies_metadata, layout.objects_metadata, *VALID[kind])
        assert decoded.nb_objects == len(decoded.to_events()) > 0


@FUZZ
@given(kind=st.sampled_from(KINDS), deps=st.binary(max_size=300), objs=st.binary(max_size=300))
def test_random_queues(kind, deps, objs):
    _decodes_or_corrupt(STREAM_LAYOUTS[kind], deps, objs)


@FUZZ
@given(kind=st.sampled_from(KINDS), target=st.sampled_from(["deps", "objs", "both"]), ops=MUTATIONS, ops2=MUTATIONS)
def test_mutated_valid_queues(kind, target, ops, ops2):
    deps, objs = VALID[kind]
    if target in ("deps", "both"):
        deps = _mutate(deps, ops)
    if target in ("objs", "both"):
        objs = _mutate(objs, ops2)
    _decodes_or_corrupt(STREAM_LAYOUTS[kind], deps, objs)


@FUZZ
@given(
    kind=st.sampled_from(KINDS),
    which=st.sampled_from(["deps", "objs"]),
    flips=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 7)), min_size=1, max_size=4),
)
def test_bit_flips_keep_lengths(kind, which, flips):
    """Flips keep the buffer length, so framing mostly survives and the field decoders are hit."""
    deps, objs = VALID[kind]
    ops = [(0, pos, bit) for pos, bit in flips]
    if which == "deps":
        deps = _mutate(deps, ops)
    else:
        objs = _mutate(objs, ops)
    _decodes_or_corrupt(STREAM_LAYOUTS[kind], deps, objs)


@FUZZ
@given(
    kind=st.sampled_from(KINDS),
    records=st.lists(st.tuples(st.integers(0, 9), st.binary(max_size=80)), max_size=12),
)
def test_well_framed_random_records(kind, records):
    """Framing is right, bodies are garbage: exercises the per-type decoders, not just the scanner."""
    layout = STREAM_LAYOUTS[kind]
    deps, _ = VALID[kind]
    objs = bytearray()
    for index, body in records:
        udt = layout.objects_metadata[index % len(layout.objects_metadata)]
        objs.append(index % len(layout.objects_metadata))
        if udt.size == 0:
            objs += struct.pack("<I", len(body)) + body
        else:
            objs += (body * (1 + udt.size // max(1, len(body))))[: udt.size].ljust(udt.size, b"\x00")
    _decodes_or_corrupt(layout, deps, bytes(objs))


@FUZZ
@given(kind=st.sampled_from(KINDS), which=st.sampled_from(["deps", "objs"]), ops=MUTATIONS)
def test_mutated_compressed_payloads(kind, which, ops):
    deps, objs = (lz4.frame.compress(q) for q in VALID[kind])
    if which == "deps":
        deps = _mutate(deps, ops)
    else:
        objs = _mutate(objs, ops)
    layout = STREAM_LAYOUTS[kind]
    with contextlib.suppress(CorruptBlockError):
        decode_block(layout.dependencies_metadata, layout.objects_metadata, BlockPayload(deps, objs))


@FUZZ
@given(deps=st.binary(max_size=64), objs=st.binary(max_size=64))
def test_random_compressed_payloads(deps, objs):
    layout = STREAM_LAYOUTS["log"]
    with contextlib.suppress(CorruptBlockError):
        decode_block(layout.dependencies_metadata, layout.objects_metadata, BlockPayload(deps, objs))


TYPE_NAMES = [*INTRINSIC_SIZES, "StringId", "StaticStringRef", "Nested", "Nope", "usize"]
MEMBERS = st.builds(
    Member,
    name=st.sampled_from(["id", "time", "desc", "name", "x", "position"]),
    type_name=st.sampled_from(TYPE_NAMES),
    offset=st.integers(0, 40),
    size=st.sampled_from([0, 1, 4, 8, 16, 100]),
    is_reference=st.booleans(),
)
UDTS = st.builds(
    UserDefinedType,
    name=st.sampled_from(
        [
            "StringId",
            "StaticStringRef",
            "Nested",
            "Event",
            "LogStringEventV2",
            "TaggedLogString",
            "LogStringInteropEventV2",
        ]
    ),
    size=st.sampled_from([0, 8, 16, 24, 40]),
    members=st.lists(MEMBERS, max_size=4).map(tuple),
    is_reference=st.booleans(),
)


@FUZZ
@given(objects_metadata=st.lists(UDTS, min_size=1, max_size=5).map(tuple), ops=MUTATIONS)
def test_random_metadata(objects_metadata, ops):
    """Inconsistent metadata (windows past the type, cycles, unknown names) is a corrupt block too."""
    deps = VALID["log"][0]
    objs = _mutate(decompress_queue(lz4.frame.compress(VALID["log"][1])), ops)
    layout = StreamLayout(
        "x", (), (*objects_metadata, dynamic("StaticString")), STREAM_LAYOUTS["log"].dependencies_metadata
    )
    _decodes_or_corrupt(layout, deps, objs)
