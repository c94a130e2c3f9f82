"""CBOR bodies of the ingestion routes: round trips and validation (micromegas-wire.md §2)."""

from __future__ import annotations

import uuid

import cbor2
import pytest

from sirius.tracing._exceptions import WireFormatError
from sirius.tracing.transit._layouts import LOG
from sirius.tracing.transit._rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from sirius.tracing.transit._udt import decode_udts, encode_udts, udts_to_value
from sirius.tracing.transit._wire_format import (
    Block,
    BlockPayload,
    ProcessInfo,
    StreamInfo,
    block_from_cbor,
    block_to_cbor,
    payload_from_cbor,
    payload_to_cbor,
    process_info_from_cbor,
    process_info_to_cbor,
    stream_info_from_cbor,
    stream_info_to_cbor,
)

NS = 1_714_564_800_123_456_789  # 2024-05-01T12:00:00.123456789Z
PROCESS = ProcessInfo(
    uuid.UUID(int=1), "/bin/app", "u", "U", "host", "linux", "amd", 0, NS, -5, uuid.UUID(int=2), {"k": "v"}
)
STREAM = StreamInfo(
    uuid.UUID(int=1), uuid.UUID(int=3), LOG.dependencies_metadata, LOG.objects_metadata, ("log",), {"p": "q"}
)
PAYLOAD = BlockPayload(b"\x04\x22\x4d\x18deps", b"objs")
BLOCK = Block(uuid.UUID(int=4), uuid.UUID(int=3), uuid.UUID(int=1), NS, 10, NS + 5, 20, PAYLOAD, 100, 7)


def _body(encode, value) -> dict:
    return cbor2.loads(encode(value))


def test_round_trips():
    assert process_info_from_cbor(process_info_to_cbor(PROCESS)) == PROCESS
    assert stream_info_from_cbor(stream_info_to_cbor(STREAM)) == STREAM
    assert block_from_cbor(block_to_cbor(BLOCK)) == BLOCK
    assert payload_from_cbor(payload_to_cbor(PAYLOAD)) == PAYLOAD
    assert decode_udts(encode_udts(LOG.objects_metadata)) == LOG.objects_metadata


def test_rust_key_order_and_text_forms():
    body = _body(process_info_to_cbor, PROCESS)
    assert list(body) == [
        "process_id",
        "exe",
        "username",
        "realname",
        "computer",
        "distro",
        "cpu_brand",
        "tsc_frequency",
        "start_time",
        "start_ticks",
        "parent_process_id",
        "properties",
    ]
    assert body["process_id"] == "00000000-0000-0000-0000-000000000001"
    assert body["start_time"] == "2024-05-01T12:00:00.123456789Z"
    block = _body(block_to_cbor, BLOCK)
    assert isinstance(block["payload"]["objects"], bytes)


@pytest.mark.parametrize(
    ("encode", "decode", "value"),
    [
        (process_info_to_cbor, process_info_from_cbor, PROCESS),
        (block_to_cbor, block_from_cbor, BLOCK),
        (stream_info_to_cbor, stream_info_from_cbor, STREAM),
    ],
)
def test_every_required_field_is_checked(encode, decode, value):
    body = _body(encode, value)
    optional = {"parent_process_id", "properties", "tags"}
    for key in body:
        if key in optional:
            continue
        broken = {k: v for k, v in body.items() if k != key}
        with pytest.raises(WireFormatError, match=key):
            decode(cbor2.dumps(broken))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("exe", 5),
        ("tsc_frequency", "100"),
        ("tsc_frequency", True),  # CBOR true is no integer, though Python's bool is an int
        ("start_ticks", 2**63),
        ("start_time", "yesterday"),
        ("start_time", 1714564800),
        ("process_id", "not-a-uuid"),
        ("parent_process_id", 7),
        ("properties", {"k": 1}),
        ("properties", {1: "v"}),
    ],
)
def test_process_info_rejects_wrong_types(key, value):
    body = _body(process_info_to_cbor, PROCESS)
    body[key] = value
    with pytest.raises(WireFormatError, match=key):
        process_info_from_cbor(cbor2.dumps(body))


@pytest.mark.parametrize("parent", [None, ""])
def test_parent_process_id_null_or_empty(parent):
    body = _body(process_info_to_cbor, PROCESS)
    body["parent_process_id"] = parent
    assert process_info_from_cbor(cbor2.dumps(body)).parent_process_id is None


def test_unknown_keys_are_ignored_and_optional_maps_default():
    body = _body(process_info_to_cbor, PROCESS)
    body["future_field"] = [1, 2]
    del body["properties"]
    assert process_info_from_cbor(cbor2.dumps(body)).properties == {}
    stream = _body(stream_info_to_cbor, STREAM)
    del stream["tags"]
    assert stream_info_from_cbor(cbor2.dumps(stream)).tags == ()


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("nb_objects", 2**31, "nb_objects"),
        ("nb_objects", -1, "negative"),
        ("object_offset", -1, "negative"),
        ("nb_objects", False, "nb_objects"),
        ("end_time", "2024-05-01T11:00:00Z", "before"),
        ("payload", b"raw", "payload"),
        ("payload", {"dependencies": b""}, "objects"),
        ("payload", {"dependencies": "text", "objects": b""}, "dependencies"),
        ("payload", {"dependencies": [1, 256], "objects": b""}, "non-byte"),
        ("payload", {"dependencies": [1, -1], "objects": b""}, "non-byte"),
        ("payload", {"dependencies": [1, "x"], "objects": b""}, "non-byte"),
    ],
)
def test_block_validation(key, value, match):
    body = _body(block_to_cbor, BLOCK)
    body[key] = value
    with pytest.raises(WireFormatError, match=match):
        block_from_cbor(cbor2.dumps(body))


def test_legacy_integer_array_payloads():
    body = _body(block_to_cbor, BLOCK)
    body["payload"] = {"dependencies": list(PAYLOAD.dependencies), "objects": list(PAYLOAD.objects)}
    assert block_from_cbor(cbor2.dumps(body)).payload == PAYLOAD
    stored = cbor2.dumps({"dependencies": [], "objects": [1, 2, 255]})
    assert payload_from_cbor(stored) == BlockPayload(b"", b"\x01\x02\xff")


@pytest.mark.parametrize("data", [b"", b"\xff\xff", cbor2.dumps([1, 2]), cbor2.dumps("text"), b"\xa1"])
def test_malformed_bodies(data):
    for decode in (process_info_from_cbor, stream_info_from_cbor, block_from_cbor, payload_from_cbor):
        with pytest.raises(WireFormatError):
            decode(data)


def test_stream_metadata_validation():
    body = _body(stream_info_to_cbor, STREAM)
    body["objects_metadata"] = [{"name": "X", "size": True, "members": []}]
    with pytest.raises(WireFormatError, match="size"):
        stream_info_from_cbor(cbor2.dumps(body))
    body["objects_metadata"] = [
        {"name": "X", "size": 8, "members": [{"name": "a", "type_name": "u64", "offset": 4, "size": 8}]}
    ]
    with pytest.raises(WireFormatError, match="exceeds"):
        stream_info_from_cbor(cbor2.dumps(body))
    body["objects_metadata"] = [{"name": "X", "size": 0, "members": []}] * 257
    with pytest.raises(WireFormatError, match="256"):
        stream_info_from_cbor(cbor2.dumps(body))
    body["tags"] = ["log", 3]
    with pytest.raises(WireFormatError, match="tags"):
        stream_info_from_cbor(cbor2.dumps(body))


def test_udt_defaults_and_bool_checks():
    raw = udts_to_value(LOG.objects_metadata)
    for udt in raw:
        del udt["is_reference"]
        for member in udt["members"]:
            member.pop("is_reference")
    decoded = decode_udts(cbor2.dumps(raw))
    assert not any(u.is_reference for u in decoded)
    raw[0]["members"][0]["is_reference"] = 1  # an integer is not a CBOR bool
    with pytest.raises(WireFormatError, match="is_reference"):
        decode_udts(cbor2.dumps(raw))
    with pytest.raises(WireFormatError, match="not valid CBOR"):
        decode_udts(b"\x9f")


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-05-01T12:00:00Z", 1_714_564_800_000_000_000),
        ("2024-05-01T12:00:00+00:00", 1_714_564_800_000_000_000),
        ("2024-05-01T14:00:00+02:00", 1_714_564_800_000_000_000),
        ("2024-05-01T06:30:00-05:30", 1_714_564_800_000_000_000),
        ("2024-05-01T12:00:00.123456789Z", NS),
        ("2024-05-01T12:00:00.123456789+00:00", NS),
        ("2024-05-01T12:00:00.1234567891234Z", NS),  # digits past the ninth are truncated
        ("2024-05-01t12:00:00.5z", 1_714_564_800_500_000_000),
        ("1969-12-31T23:59:59.999999999Z", -1),
    ],
)
def test_rfc3339_forms(text, ns):
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01",
        "2024-05-01T12:00:00",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-05-01T12:00:00+24:00",
        "٢٠٢٤-05-01T12:00:00Z",
        "",
    ],
)
def test_rfc3339_rejects(text):
    with pytest.raises(ValueError, match=r"RFC 3339|offset"):
        parse_rfc3339_ns(text)


def test_rfc3339_format_is_nanosecond_z():
    assert format_rfc3339_ns(NS) == "2024-05-01T12:00:00.123456789Z"
    assert parse_rfc3339_ns(format_rfc3339_ns(-1)) == -1
