"""Fuzzing the CBOR body decoders and ``decode_udts``: bad input raises WireFormatError only."""

from __future__ import annotations

import contextlib
import uuid

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sirius.tracing._exceptions import WireFormatError
from sirius.tracing.transit._layouts import CPU
from sirius.tracing.transit._udt import decode_udts, encode_udts
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

# No deadline: a loaded 2-core CI box must not turn a slow example into a failure.
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NS = 1_714_564_800_123_456_789
VALID = {
    "process": process_info_to_cbor(ProcessInfo(uuid.UUID(int=1), "a", "u", "U", "h", "d", "c", 1000, NS, 5)),
    "stream": stream_info_to_cbor(StreamInfo(uuid.UUID(int=1), uuid.UUID(int=2), CPU.dependencies_metadata, CPU.objects_metadata, ("cpu",))),
    "block": block_to_cbor(Block(uuid.UUID(int=3), uuid.UUID(int=2), uuid.UUID(int=1), NS, 0, NS + 1, 9, BlockPayload(b"d", b"o"), 0, 1)),
    "payload": payload_to_cbor(BlockPayload(b"deps", b"objs")),
    "udts": encode_udts(CPU.objects_metadata),
}  # fmt: skip
DECODERS = {
    "process": process_info_from_cbor,
    "stream": stream_info_from_cbor,
    "block": block_from_cbor,
    "payload": payload_from_cbor,
    "udts": decode_udts,
}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.sampled_from(["", "2024-05-01T12:00:00Z", str(uuid.UUID(int=9)), "u64", "StringId", "id"])
)
CBOR_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(0, 3), inner, max_size=5)
    ),
    max_leaves=20,
)


def _only_wire_format_errors(decode, data: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        decode(data)


@FUZZ
@given(which=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=200))
def test_random_bytes(which, data):
    _only_wire_format_errors(DECODERS[which], data)


@FUZZ
@given(which=st.sampled_from(sorted(DECODERS)), value=CBOR_VALUES)
def test_random_cbor_values(which, value):
    _only_wire_format_errors(DECODERS[which], cbor2.dumps(value))


@FUZZ
@given(
    which=st.sampled_from(sorted(DECODERS)),
    flips=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 7)), max_size=4),
    cut=st.integers(0, 2**16),
    insert=st.binary(max_size=8),
)
def test_mutated_valid_bodies(which, flips, cut, insert):
    data = bytearray(VALID[which])
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    at = cut % (len(data) + 1)
    data[at:at] = insert
    _only_wire_format_errors(DECODERS[which], bytes(data))
    _only_wire_format_errors(DECODERS[which], bytes(data[:at]))


def _replace_in(value, path: list[int], new):
    """Replace one node of a decoded body (chosen by ``path``) with ``new``."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return new
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = _replace_in(value[key], path[1:], new)
    return copy


@FUZZ
@given(which=st.sampled_from(sorted(DECODERS)), path=st.lists(st.integers(0, 50), max_size=4), new=CBOR_VALUES)
def test_structurally_mutated_bodies(which, path, new):
    """Valid bodies with one field (at any depth) replaced by an arbitrary CBOR value."""
    body = _replace_in(cbor2.loads(VALID[which]), path, new)
    _only_wire_format_errors(DECODERS[which], cbor2.dumps(body))
