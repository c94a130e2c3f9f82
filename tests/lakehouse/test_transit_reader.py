"""Writer → reader round trips for every event type, hand-crafted legacy layouts, corrupt blocks."""

from __future__ import annotations

import doctest
import logging
import struct
import uuid

import cbor2
import lz4.frame
import numpy as np
import pyarrow as pa
import pytest

from sirius.lakehouse._exceptions import CorruptBlockError
from sirius.lakehouse._tick_converter import TickConverter
from sirius.lakehouse._transit_reader import POSITION, decode_block, decode_queues
from sirius.tracing.transit._layouts import (
    CPU,
    LOG,
    METRICS,
    STATIC_STRING_REF,
    STRING_ID,
    StringCodec,
    c_struct,
    dynamic,
)
from sirius.tracing.transit._udt import Member, UserDefinedType
from sirius.tracing.transit._wire_format import BlockPayload, ProcessInfo, block_from_cbor, block_to_cbor
from sirius.tracing.transit._writer import LogMetadata, MetricMetadata, SpanLocation, SpanMetadata, TransitWriter

START_NS = 1_700_000_000_000_000_000
FREQ = 1_000_000_000  # 1 tick = 1 ns keeps expected times readable
PROCESS = ProcessInfo(uuid.UUID(int=1), "app", "me", "Me", "host", "linux", "cpu", FREQ, START_NS, 1_000)


def _decode(writer: TransitWriter):
    block = writer.seal()
    info = writer.stream_info()
    return decode_block(info.dependencies_metadata, info.objects_metadata, block.payload)


def _rec(index: int, body: bytes, *, dynamic_size: bool = False) -> bytes:
    return bytes([index]) + (struct.pack("<I", len(body)) if dynamic_size else b"") + body


def _static_string(ident: int, text: bytes) -> bytes:
    return _rec(0, struct.pack("<Q", ident) + text, dynamic_size=True)


def _payload(deps: bytes, objs: bytes) -> BlockPayload:
    return BlockPayload(lz4.frame.compress(deps), lz4.frame.compress(objs))


def _times(events):
    conv = TickConverter.for_process(PROCESS)
    return conv.ticks_to_ns(np.array([e["time"] for e in events])).tolist()


# ------------------------------------------------------------------------------------ round trips


def test_log_round_trip_every_type():
    writer = TransitWriter(PROCESS, "log")
    info = LogMetadata("static {}", "app::db", 4, "app::db::mod", "db.rs", 42)
    warn = LogMetadata("dyn", "app::net", 3, "app::net", "net.rs", 7)
    writer.log_static(info, ticks=1_010)
    writer.log_string(warn, "connection lost: é", ticks=1_020)
    writer.log_static_interop(2, "interop.target", "interop message", ticks=1_030)
    writer.log_string_interop(5, "v3.target", "v3 message", ticks=1_040)
    writer.log_tagged(info, {"target": "override", "level": "warn"}, "tagged ✓", ticks=1_050)
    decoded = _decode(writer)
    events = decoded.to_events()
    assert [e["type"] for e in events] == [
        "LogStaticStrEvent",
        "LogStringEventV2",
        "LogStaticStrInteropEvent",
        "LogStringInteropEventV3",
        "TaggedLogString",
    ]
    assert [e[POSITION] for e in events] == [0, 1, 2, 3, 4]
    desc = events[0]["desc"]
    assert {k: desc[k] for k in ("fmt_str", "target", "module_path", "file", "line", "level")} == {
        "fmt_str": "static {}",
        "target": "app::db",
        "module_path": "app::db::mod",
        "file": "db.rs",
        "line": 42,
        "level": 4,
    }
    assert events[1]["desc"]["target"] == "app::net"
    assert events[1]["desc"]["level"] == 3
    assert events[1]["msg"] == "connection lost: é"
    assert (events[2]["level"], events[2]["target"], events[2]["msg"]) == (2, "interop.target", "interop message")
    assert (events[3]["level"], events[3]["target"], events[3]["msg"]) == (5, "v3.target", "v3 message")
    assert events[4]["properties"] == {"target": "override", "level": "warn"}
    assert events[4]["msg"] == "tagged ✓"
    assert events[4]["desc"]["fmt_str"] == "static {}"
    assert _times(events) == [START_NS + 10, START_NS + 20, START_NS + 30, START_NS + 40, START_NS + 50]
    assert decoded.nb_objects == 5
    assert decoded.reference_columns["LogStaticStrInteropEvent"] == ("target", "msg")


def test_metrics_round_trip_every_type():
    writer = TransitWriter(PROCESS, "metrics")
    mem = MetricMetadata("mem", "bytes", "app", "m.rs", 3, 1)
    lat = MetricMetadata("latency", "ticks", "app", "l.rs", 4, 2)
    writer.metric_int(mem, 2**64 - 1, ticks=1_001)
    writer.metric_float(lat, 0.25, ticks=1_002)
    writer.metric_tagged_float(lat, {"route": "/a"}, -1.5, ticks=1_003)
    writer.metric_tagged_int(mem, {"pool": "x", "route": "/a"}, 7, ticks=1_004)
    events = _decode(writer).to_events()
    assert [(e["type"], e["value"]) for e in events] == [
        ("IntegerMetricEvent", 2**64 - 1),
        ("FloatMetricEvent", 0.25),
        ("TaggedFloatMetricEvent", -1.5),
        ("TaggedIntegerMetricEvent", 7),
    ]
    assert events[0]["desc"]["name"] == "mem"
    assert events[0]["desc"]["unit"] == "bytes"
    assert (events[1]["desc"]["unit"], events[1]["desc"]["lod"], events[1]["desc"]["line"]) == ("ticks", 2, 4)
    assert events[2]["properties"] == {"route": "/a"}
    assert events[3]["properties"] == {"pool": "x", "route": "/a"}
    assert events[3]["desc"]["target"] == "app"
    assert _times(events) == [START_NS + 1, START_NS + 2, START_NS + 3, START_NS + 4]


def test_cpu_round_trip_every_type_and_nesting_order():
    writer = TransitWriter(PROCESS, "cpu")
    outer, inner = SpanMetadata("outer", "t", "m", "o.rs", 1, 0), SpanMetadata("inner", "t", "m", "i.rs", 2, 1)
    loc = SpanLocation("loc.t", "loc.m", "loc.rs", 9, 3)
    writer.begin_thread_span(outer, ticks=1_100)
    writer.begin_thread_named_span(loc, "dyn-name", ticks=1_110)
    writer.begin_thread_span(inner, ticks=1_120)
    writer.end_thread_span(inner, ticks=1_130)
    writer.end_thread_named_span(loc, "dyn-name", ticks=1_140)
    writer.begin_async_span(inner, 11, 10, depth=1, ticks=1_150)
    writer.begin_async_named_span(loc, "task", 12, 11, depth=2, ticks=1_160)
    writer.end_async_named_span(loc, "task", 12, 11, depth=2, ticks=1_170)
    writer.end_async_span(inner, 11, 10, depth=1, ticks=1_180)
    writer.end_thread_span(outer, ticks=1_190)
    decoded = _decode(writer)
    events = decoded.to_events()
    assert [e["type"] for e in events] == [
        "BeginThreadSpanEvent",
        "BeginThreadNamedSpanEvent",
        "BeginThreadSpanEvent",
        "EndThreadSpanEvent",
        "EndThreadNamedSpanEvent",
        "BeginAsyncSpanEvent",
        "BeginAsyncNamedSpanEvent",
        "EndAsyncNamedSpanEvent",
        "EndAsyncSpanEvent",
        "EndThreadSpanEvent",
    ]
    names = [e.get("thread_span_desc", e.get("span_desc", {})).get("name", e.get("name")) for e in events]
    assert names == ["outer", "dyn-name", "inner", "inner", "dyn-name", "inner", "task", "task", "inner", "outer"]
    assert events[1]["thread_span_location"]["file"] == "loc.rs"
    assert events[1]["thread_span_location"]["lod"] == 3
    assert [(e["span_id"], e["parent_span_id"], e["depth"]) for e in events[5:9]] == [
        (11, 10, 1),
        (12, 11, 2),
        (12, 11, 2),
        (11, 10, 1),
    ]
    assert events[6]["span_location"]["target"] == "loc.t"
    assert _times(events) == [START_NS + 100 + 10 * i for i in range(10)]
    begin = decoded.tables["BeginThreadSpanEvent"]
    assert begin[POSITION].to_pylist() == [0, 2]
    assert begin.schema.field("time").type == pa.int64()


def test_columnar_resolution_is_vectorised():
    writer = TransitWriter(PROCESS, "log")
    descs = [LogMetadata(f"fmt {i}", f"t{i % 3}", 1 + i % 6) for i in range(20)]
    for i, desc in enumerate(descs):
        writer.log_static(desc, ticks=2_000 + i)
        writer.log_tagged(desc, {"i": str(i % 2)}, f"m{i}", ticks=3_000 + i)
    writer.log_static_interop(4, "tt", "mm", ticks=4_000)
    decoded = _decode(writer)
    table = decoded.tables["LogStaticStrEvent"]
    deps = decoded.dependencies
    assert deps.resolve_field(table["desc"], "fmt_str").to_pylist() == [d.fmt_str for d in descs]
    assert deps.resolve_field(table["desc"], "level").to_pylist() == [d.level for d in descs]
    tagged = decoded.tables["TaggedLogString"]
    props = deps.resolve_property_sets(tagged["properties"].to_numpy())
    assert props.to_pylist()[:2] == [[("i", "0")], [("i", "1")]]
    interop = decoded.tables["LogStaticStrInteropEvent"]
    assert deps.resolve_strings(interop["msg"]).to_pylist() == ["mm"]
    with pytest.raises(CorruptBlockError, match="no field"):
        deps.resolve_field(table["desc"], "unit")
    with pytest.raises(CorruptBlockError, match="not found"):
        deps.resolve_strings(table["desc"])  # a descriptor id is no string


def test_dyn_string_codecs_in_one_block():
    writer = TransitWriter(PROCESS, "log")
    desc = LogMetadata("f", "t")
    writer.log_string(desc, "ascii", ticks=1, codec=StringCodec.ANSI)
    writer.log_string(desc, "wide ✓ 𝄞", ticks=2, codec=StringCodec.UTF16)
    writer.log_string(desc, "utf8 ✓", ticks=3, codec=StringCodec.UTF8)
    writer.log_string(desc, "", ticks=4, codec=StringCodec.UTF16)
    assert [e["msg"] for e in _decode(writer).to_events()] == ["ascii", "wide ✓ 𝄞", "utf8 ✓", ""]


@pytest.mark.parametrize("codec", [StringCodec.ANSI, StringCodec.UTF16, StringCodec.UTF8])
def test_static_string_dependency_written_with_each_codec(codec):
    writer = TransitWriter(PROCESS, "metrics", string_codec=codec)
    writer.metric_float(MetricMetadata("name", "unit", "target"), 1.0, ticks=5)
    events = _decode(writer).to_events()
    assert (events[0]["desc"]["name"], events[0]["desc"]["unit"]) == ("name", "unit")


def test_static_string_dependency_by_hand():
    def ssd(ident: int, codec: int, data: bytes) -> bytes:
        return _rec(1, struct.pack("<QBI", ident, codec, len(data)) + data, dynamic_size=True)

    deps = ssd(1, 0, b"ansi \xff") + ssd(2, 1, "wide ✓".encode("utf-16-le")) + ssd(3, 2, b"utf8 \xe2\x9c\x93")
    objs = b"".join(_rec(2, struct.pack("<qIxxxxQ8xQ8x", 7, 4, a, b)) for a, b in ((1, 2), (3, 1)))
    decoded = decode_block(LOG.dependencies_metadata, LOG.objects_metadata, _payload(deps, objs))
    assert decoded.dependencies.strings == {1: "ansi \ufffd", 2: "wide ✓", 3: "utf8 ✓"}
    assert [(e["target"], e["msg"]) for e in decoded.to_events()] == [
        ("ansi \ufffd", "wide ✓"),
        ("utf8 ✓", "ansi \ufffd"),
    ]


def test_invalid_utf8_in_dyn_string_is_repaired_like_rust():
    deps = _static_string(1, b"x") + _rec(2, struct.pack("<QQQQQII", 9, 1, 1, 1, 1, 0, 4))
    msg = b"ok \xff\xfe end"
    objs = _rec(1, struct.pack("<QqBI", 9, 5, 2, len(msg)) + msg, dynamic_size=True)
    objs += _rec(1, struct.pack("<QqBI", 9, 6, 0, 2) + b"ok", dynamic_size=True)
    events = decode_block(LOG.dependencies_metadata, LOG.objects_metadata, _payload(deps, objs)).to_events()
    assert [e["msg"] for e in events] == ["ok \ufffd\ufffd end", "ok"]


LEGACY_OBJECTS = (
    dynamic("LogStringEvent"),
    dynamic("LogStringInteropEventV2"),
    dynamic("TaggedLogInteropEvent"),
    dynamic("ImageEvent"),
    STRING_ID,
    STATIC_STRING_REF,
)


def test_legacy_dynamic_log_types():
    deps = _static_string(1, b"fmt") + _static_string(2, b"legacy.target") + _static_string(3, b"k")
    deps += _rec(2, struct.pack("<QQQQQII", 100, 1, 2, 2, 2, 10, 3))  # LogMetadataRecord
    deps += _rec(3, struct.pack("<QI", 200, 1) + struct.pack("<Q8xQ8x", 3, 1), dynamic_size=True)  # {k: fmt}
    objs = _rec(0, struct.pack("<Qq", 100, 1_001) + "raw é".encode(), dynamic_size=True)
    objs += _rec(1, struct.pack("<qI", 1_002, 5) + struct.pack("<Q8x", 2) + b"interop v2", dynamic_size=True)
    dyn = struct.pack("<BI", 2, 6) + b"tagged"
    objs += _rec(
        2, struct.pack("<qB", 1_003, 2) + struct.pack("<Q8x", 2) + struct.pack("<Q", 200) + dyn, dynamic_size=True
    )
    decoded = decode_block(LOG.dependencies_metadata, LEGACY_OBJECTS, _payload(deps, objs))
    events = decoded.to_events()
    assert events[0]["msg"] == "raw é"
    assert events[0]["desc"]["fmt_str"] == "fmt"
    assert (events[1]["level"], events[1]["target"], events[1]["msg"], events[1]["time"]) == (
        5,
        "legacy.target",
        "interop v2",
        1_002,
    )
    assert (events[2]["level"], events[2]["target"], events[2]["msg"]) == (2, "legacy.target", "tagged")
    assert events[2]["properties"] == {"k": "fmt"}
    assert decoded.tables["LogStringInteropEventV2"].schema.field("level").type == pa.uint32()
    assert decoded.tables["TaggedLogInteropEvent"].schema.field("level").type == pa.uint8()


def test_legacy_raw_message_must_be_utf8():
    deps = _static_string(1, b"x") + _rec(2, struct.pack("<QQQQQII", 100, 1, 1, 1, 1, 0, 3))
    objs = _rec(0, struct.pack("<Qq", 100, 1) + b"\xff", dynamic_size=True)
    with pytest.raises(CorruptBlockError, match="UTF-8"):
        decode_block(LOG.dependencies_metadata, LEGACY_OBJECTS, _payload(deps, objs))


def test_unknown_dynamic_type_is_skipped_with_a_warning(caplog):
    deps = _static_string(1, b"x") + _rec(2, struct.pack("<QQQQQII", 100, 1, 1, 1, 1, 0, 3))
    objs = _rec(3, b"\x00" * 30, dynamic_size=True) + _rec(0, struct.pack("<Qq", 100, 1) + b"hi", dynamic_size=True)
    with caplog.at_level(logging.WARNING):
        decoded = decode_block(LOG.dependencies_metadata, LEGACY_OBJECTS, _payload(deps, objs))
    assert "ImageEvent" in caplog.text
    assert decoded.skipped["ImageEvent"].tolist() == [0]
    assert [e["type"] for e in decoded.to_events()] == ["ImageEvent", "LogStringEvent"]
    assert decoded.nb_objects == 2


def test_async_spans_without_depth_member():
    old_async = c_struct(
        "BeginAsyncSpanEvent",
        [
            ("span_desc", "&", "ref"),
            ("span_id", "u64", "u64"),
            ("parent_span_id", "u64", "u64"),
            ("time", "i64", "i64"),
        ],
    )
    old_named = c_struct(
        "EndAsyncNamedSpanEvent",
        [
            ("span_location", "&", "ref"),
            ("name", "StringId", "StringId"),
            ("span_id", "u64", "u64"),
            ("parent_span_id", "u64", "u64"),
            ("time", "i64", "i64"),
        ],
    )
    assert (old_async.size, old_named.size) == (32, 48)
    deps = _rec(2, struct.pack("<Q", 1) + b"s", dynamic_size=True)
    deps += _rec(0, struct.pack("<QQQQQII", 10, 1, 1, 1, 1, 0, 0)) + _rec(1, struct.pack("<QQQQII", 11, 1, 1, 1, 0, 0))
    objs = _rec(0, struct.pack("<QQQq", 10, 5, 4, 77)) + _rec(1, struct.pack("<QQ8xQQq", 11, 1, 5, 4, 78))
    decoded = decode_block(CPU.dependencies_metadata, (old_async, old_named, STRING_ID), _payload(deps, objs))
    events = decoded.to_events()
    assert "depth" not in events[0]
    assert (events[0]["span_id"], events[0]["parent_span_id"], events[0]["time"]) == (5, 4, 77)
    assert (events[1]["name"], events[1]["time"]) == ("s", 78)


def test_tagged_metrics_without_desc_member():
    old = c_struct(
        "TaggedFloatMetricEvent", [("properties", "&", "ref"), ("value", "f64", "f64"), ("time", "i64", "i64")]
    )
    deps = _static_string(1, b"name") + _static_string(2, b"cpu")
    deps += _rec(3, struct.pack("<QI", 50, 1) + struct.pack("<Q8xQ8x", 1, 2), dynamic_size=True)
    objs = _rec(0, struct.pack("<Qdq", 50, 0.5, 9))
    events = decode_block(METRICS.dependencies_metadata, (old,), _payload(deps, objs)).to_events()
    assert events == [
        {"type": "TaggedFloatMetricEvent", POSITION: 0, "properties": {"name": "cpu"}, "value": 0.5, "time": 9}
    ]


def test_legacy_integer_array_payload_decodes_the_same():
    writer = TransitWriter(PROCESS, "cpu")
    writer.begin_thread_span(SpanMetadata("a"), ticks=1_001)
    writer.end_thread_span(SpanMetadata("a"), ticks=1_002)
    block = writer.seal()
    body = cbor2.loads(block_to_cbor(block))
    body["payload"] = {k: list(v) for k, v in body["payload"].items()}
    legacy = block_from_cbor(cbor2.dumps(body))
    assert legacy.payload == block.payload
    info = writer.stream_info()
    new = decode_block(info.dependencies_metadata, info.objects_metadata, block.payload).to_events()
    old = decode_block(info.dependencies_metadata, info.objects_metadata, legacy.payload).to_events()
    assert old == new


def test_duplicate_type_names_merge_in_queue_order():
    udt = c_struct("Pulse", [("time", "i64", "i64")])
    objs = _rec(0, struct.pack("<q", 1)) + _rec(1, struct.pack("<q", 2)) + _rec(0, struct.pack("<q", 3))
    decoded = decode_queues((), (udt, udt), b"", objs)
    assert decoded.tables["Pulse"]["time"].to_pylist() == [1, 2, 3]


def test_nested_plain_udts_are_flattened():
    inner = UserDefinedType("Inner", 24, (Member("a", "u32", 0, 4), Member("s", "StringId", 8, 16)))
    outer = UserDefinedType("Outer", 32, (Member("time", "i64", 0, 8), Member("inner", "Inner", 8, 24)))
    deps = _rec(0, struct.pack("<Q", 5) + b"five", dynamic_size=True)
    objs = _rec(0, struct.pack("<qI4xQ8x", 3, 9, 5))
    decoded = decode_block(CPU.dependencies_metadata[2:], (outer, inner, STRING_ID), _payload(deps, objs))
    assert decoded.tables["Outer"].column_names == [POSITION, "time", "inner.a", "inner.s"]
    assert decoded.reference_columns["Outer"] == ("inner.s",)
    assert decoded.to_events() == [{"type": "Outer", POSITION: 0, "time": 3, "inner.a": 9, "inner.s": "five"}]


def test_empty_block():
    decoded = decode_block(CPU.dependencies_metadata, CPU.objects_metadata, BlockPayload(b"", b""))
    assert (decoded.nb_objects, decoded.tables, decoded.to_events()) == (0, {}, [])


# ------------------------------------------------------------------------------------ corrupt blocks

_DESC_DEPS = _static_string(1, b"x") + _rec(2, struct.pack("<QQQQQII", 100, 1, 1, 1, 1, 0, 3))
_BAD_UDT = UserDefinedType("LogStaticStrEvent", 16, (Member("time", "i64", 12, 8),))


def _nested_cycle() -> tuple[UserDefinedType, ...]:
    a = UserDefinedType("A", 8, (Member("b", "B", 0, 8),))
    b = UserDefinedType("B", 8, (Member("a", "A", 0, 8),))
    return (a, b)


CORRUPT = {
    "unknown type index": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, bytes([9]) + b"\x00" * 16),
    "body past the end": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, _rec(0, b"\x00" * 10)),
    "truncated dynamic size": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, b"\x01\x00\x00"),
    "missing reference": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, _rec(0, struct.pack("<Qq", 101, 1))),
    "forward reference": (LOG.dependencies_metadata, (), _rec(2, struct.pack("<QQQQQII", 100, 1, 1, 1, 1, 0, 3)) + _static_string(1, b"x"), b""),
    "duplicate id": (LOG.dependencies_metadata, (), _static_string(1, b"x") + _static_string(1, b"y"), b""),
    "duplicate id across kinds": (LOG.dependencies_metadata, (), _static_string(1, b"x") + _rec(2, struct.pack("<QQQQQII", 1, 1, 1, 1, 1, 0, 3)), b""),
    "bad UTF-8 in StaticString": (LOG.dependencies_metadata, (), _static_string(1, b"\xc3"), b""),
    "short StaticString": (LOG.dependencies_metadata, (), _rec(0, b"\x01\x02", dynamic_size=True), b""),
    "member window past the body": (LOG.dependencies_metadata, (_BAD_UDT,), _DESC_DEPS, _rec(0, b"\x00" * 16)),
    "unknown member type": (LOG.dependencies_metadata, (UserDefinedType("E", 8, (Member("x", "Mystery", 0, 8),)),), b"", _rec(0, b"\x00" * 8)),
    "intrinsic size mismatch": (LOG.dependencies_metadata, (UserDefinedType("E", 8, (Member("x", "u32", 0, 8),)),), b"", _rec(0, b"\x00" * 8)),
    "short reference member": (LOG.dependencies_metadata, (UserDefinedType("E", 8, (Member("x", "&", 0, 4, True),)),), b"", _rec(0, b"\x00" * 8)),
    "cyclic nested metadata": ((), (UserDefinedType("E", 8, (Member("x", "A", 0, 8),)), *_nested_cycle()), b"", _rec(0, b"\x00" * 8)),
    "DynString past the body": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, _rec(1, struct.pack("<QqBI", 100, 1, 2, 9) + b"abc", dynamic_size=True)),
    "invalid string codec": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, _rec(1, struct.pack("<QqBI", 100, 1, 7, 0), dynamic_size=True)),
    "odd UTF-16 length": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, _rec(1, struct.pack("<QqBI", 100, 1, 1, 3) + b"abc", dynamic_size=True)),
    "dynamic body shorter than its prefix": (LOG.dependencies_metadata, LOG.objects_metadata, _DESC_DEPS, _rec(4, b"\x00" * 10, dynamic_size=True)),
    "interop without StaticStringRef": (LOG.dependencies_metadata, (dynamic("LogStringInteropEventV3"),), b"", _rec(0, b"\x00" * 40, dynamic_size=True)),
    "property count past the record": (LOG.dependencies_metadata, (), _rec(3, struct.pack("<QI", 5, 1000), dynamic_size=True), b""),
    "property set without Property layout": (LOG.dependencies_metadata[:4], (), _rec(3, struct.pack("<QI", 5, 0), dynamic_size=True), b""),
    "property value not a string": (LOG.dependencies_metadata, (), _DESC_DEPS + _rec(3, struct.pack("<QI", 5, 1) + struct.pack("<Q8xQ8x", 1, 100), dynamic_size=True), b""),
    "unknown dynamic dependency": ((dynamic("Blob"),), (), _rec(0, b"abc", dynamic_size=True), b""),
    "POD dependency without id": ((c_struct("Rec", [("x", "u64", "u64")]),), (), _rec(0, b"\x00" * 8), b""),
    "too many types": (tuple(dynamic(f"T{i}") for i in range(257)), (), b"", b""),
    "metadata of the wrong type": (("StaticString",), (), b"", b""),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_blocks_raise_corrupt_block_error(case):
    deps_meta, objs_meta, deps, objs = CORRUPT[case]
    with pytest.raises(CorruptBlockError):
        decode_block(deps_meta, objs_meta, _payload(deps, objs))


def test_bad_lz4_is_a_corrupt_block():
    with pytest.raises(CorruptBlockError, match="LZ4"):
        decode_block(LOG.dependencies_metadata, LOG.objects_metadata, BlockPayload(b"\x04\x22\x4d\x18junk", b""))
    good = lz4.frame.compress(b"\x00" * 100)
    with pytest.raises(CorruptBlockError):
        decode_block(LOG.dependencies_metadata, LOG.objects_metadata, BlockPayload(b"", good[:-6]))


def test_doctests():
    from sirius.lakehouse import _tick_converter, _transit_dependencies, _transit_reader

    for module in (_transit_reader, _transit_dependencies, _tick_converter):
        assert doctest.testmod(module).failed == 0
