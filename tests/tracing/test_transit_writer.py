"""Transit layouts and the Python transit writer."""

from __future__ import annotations

import doctest
import struct
import uuid

import numpy as np
import pytest

from sirius.tracing._exceptions import WireFormatError
from sirius.tracing.transit._layouts import CPU, LOG, METRICS, STREAM_LAYOUTS, c_struct, stream_layout
from sirius.tracing.transit._wire_format import ProcessInfo, StreamInfo, stream_info_from_cbor, stream_info_to_cbor
from sirius.tracing.transit._writer import LogMetadata, MetricMetadata, SpanLocation, SpanMetadata, TransitWriter

START_NS = 1_700_000_000_000_000_000
PROCESS = ProcessInfo(uuid.UUID(int=7), "app", "me", "Me", "host", "linux", "cpu", 1_000_000, START_NS, 5_000)


def _ids():
    counter = iter(range(1, 10_000))
    return lambda: uuid.UUID(int=next(counter))


# ------------------------------------------------------------------------------------ layouts

# micromegas-wire.md §5.3-5.5: (type name, size, [(member, offset, size, is_reference)])
EXPECTED = {
    "LogStaticStrEvent": (16, [("desc", 0, 8, True), ("time", 8, 8, False)]),
    "LogStaticStrInteropEvent": (48, [("time", 0, 8, False), ("level", 8, 4, False), ("target", 16, 16, False), ("msg", 32, 16, False)]),
    "IntegerMetricEvent": (24, [("desc", 0, 8, True), ("value", 8, 8, False), ("time", 16, 8, False)]),
    "FloatMetricEvent": (24, [("desc", 0, 8, True), ("value", 8, 8, False), ("time", 16, 8, False)]),
    "TaggedFloatMetricEvent": (32, [("desc", 0, 8, True), ("properties", 8, 8, True), ("value", 16, 8, False), ("time", 24, 8, False)]),
    "TaggedIntegerMetricEvent": (32, [("desc", 0, 8, True), ("properties", 8, 8, True), ("value", 16, 8, False), ("time", 24, 8, False)]),
    "BeginThreadSpanEvent": (16, [("thread_span_desc", 0, 8, True), ("time", 8, 8, False)]),
    "EndThreadSpanEvent": (16, [("thread_span_desc", 0, 8, True), ("time", 8, 8, False)]),
    "BeginThreadNamedSpanEvent": (32, [("thread_span_location", 0, 8, True), ("name", 8, 16, False), ("time", 24, 8, False)]),
    "EndThreadNamedSpanEvent": (32, [("thread_span_location", 0, 8, True), ("name", 8, 16, False), ("time", 24, 8, False)]),
    "BeginAsyncSpanEvent": (40, [("span_desc", 0, 8, True), ("span_id", 8, 8, False), ("parent_span_id", 16, 8, False), ("depth", 24, 4, False), ("time", 32, 8, False)]),
    "EndAsyncSpanEvent": (40, [("span_desc", 0, 8, True), ("span_id", 8, 8, False), ("parent_span_id", 16, 8, False), ("depth", 24, 4, False), ("time", 32, 8, False)]),
    "BeginAsyncNamedSpanEvent": (56, [("span_location", 0, 8, True), ("name", 8, 16, False), ("span_id", 24, 8, False), ("parent_span_id", 32, 8, False), ("depth", 40, 4, False), ("time", 48, 8, False)]),
    "EndAsyncNamedSpanEvent": (56, [("span_location", 0, 8, True), ("name", 8, 16, False), ("span_id", 24, 8, False), ("parent_span_id", 32, 8, False), ("depth", 40, 4, False), ("time", 48, 8, False)]),
    "LogMetadataRecord": (48, [("id", 0, 8, False), ("fmt_str", 8, 8, True), ("target", 16, 8, True), ("module_path", 24, 8, True), ("file", 32, 8, True), ("line", 40, 4, False), ("level", 44, 4, False)]),
    "SpanRecord": (48, [("id", 0, 8, False), ("name", 8, 8, True), ("target", 16, 8, True), ("module_path", 24, 8, True), ("file", 32, 8, True), ("line", 40, 4, False), ("lod", 44, 4, False)]),
    "SpanLocationRecord": (40, [("id", 0, 8, False), ("target", 8, 8, True), ("module_path", 16, 8, True), ("file", 24, 8, True), ("line", 32, 4, False), ("lod", 36, 4, False)]),
    "MetricMetadataDependency": (48, [("id", 0, 8, False), ("name", 8, 8, True), ("unit", 16, 8, True), ("target", 24, 8, True), ("file", 32, 8, True), ("line", 40, 4, False), ("lod", 44, 4, False)]),
    "StringId": (16, [("id", 0, 8, True)]),
    "StaticStringRef": (16, [("id", 0, 8, True)]),
    "Property": (32, [("name", 0, 16, False), ("value", 16, 16, False)]),
}  # fmt: skip


def test_type_indexes_match_the_reference():
    assert [u.name for u in LOG.objects_metadata] == [
        "LogStaticStrEvent",
        "LogStringEventV2",
        "LogStaticStrInteropEvent",
        "LogStringInteropEventV3",
        "TaggedLogString",
        "StringId",
        "StaticStringRef",
    ]
    assert [u.name for u in LOG.dependencies_metadata][:4] == [
        "StaticString",
        "StaticStringDependency",
        "LogMetadataRecord",
        "PropertySetDependency",
    ]
    assert [u.name for u in METRICS.objects_metadata] == [
        "IntegerMetricEvent",
        "FloatMetricEvent",
        "TaggedFloatMetricEvent",
        "TaggedIntegerMetricEvent",
    ]
    assert [u.name for u in METRICS.dependencies_metadata][:4] == [
        "StaticString",
        "StaticStringDependency",
        "MetricMetadataDependency",
        "PropertySetDependency",
    ]
    assert [u.name for u in CPU.objects_metadata][:8] == [
        "BeginThreadSpanEvent",
        "EndThreadSpanEvent",
        "BeginThreadNamedSpanEvent",
        "EndThreadNamedSpanEvent",
        "BeginAsyncSpanEvent",
        "EndAsyncSpanEvent",
        "BeginAsyncNamedSpanEvent",
        "EndAsyncNamedSpanEvent",
    ]
    assert [u.name for u in CPU.dependencies_metadata] == ["SpanRecord", "SpanLocationRecord", "StaticString"]
    assert {k: v.tags for k, v in STREAM_LAYOUTS.items()} == {"log": ("log",), "metrics": ("metrics",), "cpu": ("cpu",)}


def test_layouts_match_the_reference_offsets():
    seen = set()
    for layout in STREAM_LAYOUTS.values():
        for udt in (*layout.objects_metadata, *layout.dependencies_metadata):
            if udt.size == 0:
                assert udt.members == ()
                continue
            size, members = EXPECTED[udt.name]
            assert udt.size == size, udt.name
            assert [(m.name, m.offset, m.size, m.is_reference) for m in udt.members] == members, udt.name
            seen.add(udt.name)
    assert seen == set(EXPECTED)
    assert LOG.object_udt("LogStringEventV2").is_dynamic
    assert next(u for u in CPU.objects_metadata if u.name == "StringId").is_reference


def test_layout_lookup_errors():
    with pytest.raises(ValueError, match="unknown transit stream kind"):
        stream_layout("image")
    with pytest.raises(KeyError):
        CPU.object_index("LogStaticStrEvent")


def test_c_struct_pads_like_c():
    udt = c_struct("T", [("a", "u8", "u8"), ("b", "u32", "u32"), ("c", "u8", "u8")])
    assert [(m.offset, m.size) for m in udt.members] == [(0, 1), (4, 4), (8, 1)]
    assert udt.size == 12


# ------------------------------------------------------------------------------------ writer


def test_stream_info_round_trips_through_cbor():
    writer = TransitWriter(PROCESS, "cpu", stream_id=uuid.UUID(int=9), properties={"thread-id": "12"})
    info = writer.stream_info()
    assert info == StreamInfo(
        PROCESS.process_id,
        uuid.UUID(int=9),
        CPU.dependencies_metadata,
        CPU.objects_metadata,
        ("cpu",),
        {"thread-id": "12"},
    )
    assert stream_info_from_cbor(stream_info_to_cbor(info)) == info


def test_blocks_chain_ticks_times_and_offsets():
    writer = TransitWriter(PROCESS, "metrics", begin_ticks=6_000, begin_time_ns=START_NS + 1_000, new_block_id=_ids())
    desc = MetricMetadata("mem", "bytes", "tgt", "f.rs", 3, 1)
    writer.metric_int(desc, 10, ticks=6_100)
    writer.metric_int(desc, 11, ticks=6_200)
    first = writer.finish_block(end_ticks=7_000, end_time_ns=START_NS + 2_000)
    writer.metric_float(desc, 1.5, ticks=7_100)
    second = writer.finish_block(end_ticks=8_000, end_time_ns=START_NS + 3_000)
    assert (first.block_id, second.block_id) == (uuid.UUID(int=1), uuid.UUID(int=2))
    assert (first.begin_ticks, first.end_ticks, first.begin_time_ns, first.end_time_ns) == (
        1_000,
        2_000,
        START_NS + 1_000,
        START_NS + 2_000,
    )
    assert (second.begin_ticks, second.end_ticks, second.begin_time_ns) == (2_000, 3_000, START_NS + 2_000)
    assert (first.object_offset, first.nb_objects, second.object_offset, second.nb_objects) == (0, 2, 2, 1)
    assert first.stream_id == second.stream_id == writer.stream_id
    assert first.payload.objects.startswith(b"\x04\x22\x4d\x18")  # LZ4 frame magic


def test_seal_defaults_to_last_event_and_frequency():
    writer = TransitWriter(PROCESS, "cpu")
    writer.begin_thread_span(SpanMetadata("a"), ticks=5_500)
    writer.end_thread_span(SpanMetadata("a"), ticks=6_000)
    block = writer.seal()
    assert block.end_ticks == 1_000
    assert block.end_time_ns == START_NS + 1_000_000  # 1000 ticks at 1 MHz = 1 ms
    empty = writer.seal()
    assert (empty.nb_objects, empty.begin_ticks, empty.end_ticks) == (0, 1_000, 1_000)


def test_dependencies_strings_first_ids_disjoint_and_per_block():
    writer = TransitWriter(PROCESS, "log")
    desc = LogMetadata("fmt", "target", 4, "mod", "file.rs", 9)
    writer.log_static(desc, ticks=5_001)
    writer.log_tagged(desc, {"k": "v"}, "m", ticks=5_002)
    deps = writer.dependency_queue()
    kinds = []
    pos = 0
    while pos < len(deps):
        index = deps[pos]
        udt = LOG.dependencies_metadata[index]
        size = udt.size or struct.unpack_from("<I", deps, pos + 1)[0]
        body_at = pos + 1 + (0 if udt.size else 4)
        kinds.append((udt.name, struct.unpack_from("<Q", deps, body_at)[0]))
        pos = body_at + size
    names = [k for k, _ in kinds]
    assert names == ["StaticString"] * 6 + ["LogMetadataRecord", "PropertySetDependency"]
    ids = [i for _, i in kinds]
    assert len(set(ids)) == len(ids)
    assert len({i >> 56 for i in ids}) == 3  # strings, descriptors and property sets use disjoint tags
    writer.seal()
    writer.log_static(desc, ticks=5_003)
    assert writer.dependency_queue().count(b"fmt") == 1  # re-emitted in the next block


def test_extend_writes_the_same_bytes_as_single_events():
    one = TransitWriter(PROCESS, "cpu")
    many = TransitWriter(PROCESS, "cpu")
    desc = SpanMetadata("s", "t")
    for tick in (1, 2, 3):
        one.begin_async_span(desc, tick * 10, 7, depth=tick, ticks=tick)
    many.extend(
        "BeginAsyncSpanEvent",
        [1, 2, 3],
        span_desc=desc,
        span_id=np.array([10, 20, 30]),
        parent_span_id=7,
        depth=[1, 2, 3],
    )
    assert one.object_queue() == many.object_queue()
    assert one.dependency_queue() == many.dependency_queue()
    assert many.nb_objects == 3
    per_event = TransitWriter(PROCESS, "cpu")
    per_event.extend("BeginThreadSpanEvent", [1, 2], thread_span_desc=[SpanMetadata("a"), SpanMetadata("b")])
    assert per_event.dependency_queue().count(b"\x01\x00") >= 1
    assert per_event.nb_objects == 2


def test_writer_rejects_bad_input():
    cpu = TransitWriter(PROCESS, "cpu")
    with pytest.raises(WireFormatError, match="no IntegerMetricEvent"):
        cpu.metric_int(MetricMetadata("x"), 1, ticks=1)
    with pytest.raises(WireFormatError, match="StaticStringDependency"):
        TransitWriter(PROCESS, "cpu", string_codec=1)
    metrics = TransitWriter(PROCESS, "metrics")
    with pytest.raises(WireFormatError, match="out of range"):
        metrics.metric_int(MetricMetadata("x"), -1, ticks=1)
    log = TransitWriter(PROCESS, "log")
    with pytest.raises(WireFormatError, match="cannot be encoded"):
        log.log_string(LogMetadata("f", "t"), "✓", ticks=1, codec=0)
    with pytest.raises(WireFormatError, match="not a descriptor"):
        log.descriptor("nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown transit stream kind"):
        TransitWriter(PROCESS, "net")


def test_span_location_descriptor_is_interned_once():
    writer = TransitWriter(PROCESS, "cpu")
    loc = SpanLocation("t", "m", "f", 1, 0)
    writer.begin_thread_named_span(loc, "a", ticks=1)
    writer.end_thread_named_span(loc, "a", ticks=2)
    assert writer.descriptor(loc) == writer.descriptor(SpanLocation("t", "m", "f", 1, 0))
    assert writer.dependency_queue().count(b"\x01") >= 1


def test_doctests():
    from sirius.tracing.transit import _layouts, _writer

    for module in (_layouts, _writer):
        assert doctest.testmod(module).failed == 0
