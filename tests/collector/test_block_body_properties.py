"""Property tests of ``decode_block_body``: it agrees with the generic decoder, and refuses bad bodies cleanly."""

from __future__ import annotations

import uuid

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.collector._block_body import decode_block_body
from sirius.tracing import Block, BlockPayload, WireFormatError, block_from_cbor, block_to_cbor, payload_to_cbor

_I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_NON_NEGATIVE_I64 = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def _blocks(draw: st.DrawFn) -> Block:
    begin = draw(st.integers(min_value=0, max_value=4_000_000_000_000_000_000))
    return Block(
        block_id=draw(st.uuids()),
        stream_id=draw(st.uuids()),
        process_id=draw(st.uuids()),
        begin_time_ns=begin,
        begin_ticks=draw(_I64),
        end_time_ns=begin + draw(st.integers(min_value=0, max_value=10**15)),
        end_ticks=draw(_I64),
        payload=BlockPayload(draw(st.binary(max_size=300)), draw(st.binary(max_size=70_000))),
        object_offset=draw(_NON_NEGATIVE_I64),
        nb_objects=draw(st.integers(min_value=0, max_value=2**31 - 1)),
    )


_BLOCKS = _blocks()
# Extra entries a producer might add: skipped, whatever their keys and values.
_EXTRAS = st.dictionaries(
    st.one_of(st.text(max_size=80), st.integers(), st.binary(max_size=8)),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    ),
    max_size=4,
)


def _outcome(decode: object, body: bytes) -> object:
    try:
        return decode(body)  # type: ignore[operator]
    except WireFormatError:
        return WireFormatError


@settings(max_examples=150, deadline=None)
@given(block=_BLOCKS, extras=_EXTRAS, order=st.randoms(use_true_random=False))
def test_any_key_order_and_extra_entries_decode_as_the_generic_decoder(
    block: Block, extras: dict[object, object], order: object
) -> None:
    value = cbor2.loads(block_to_cbor(block))
    items = [(k, v) for k, v in extras.items() if k not in value] + list(value.items())
    order.shuffle(items)  # type: ignore[attr-defined]
    body = cbor2.dumps(dict(items))
    decoded = decode_block_body(bytearray(body))
    assert decoded.block == block_from_cbor(body) == block
    assert bytes(decoded.stored_payload) == payload_to_cbor(block.payload)


@settings(max_examples=300, deadline=None)
@given(
    block=_BLOCKS,
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(min_value=0, max_value=40),
)
def test_corrupted_bodies_are_refused_or_agree_with_the_generic_decoder(
    block: Block, edits: list[tuple[int, int]], cut: int
) -> None:
    body = bytearray(block_to_cbor(block))
    for position, byte in edits:
        body[position % len(body)] = byte
    body = body[: len(body) - cut] if cut < len(body) else body
    walked = _outcome(decode_block_body, bytes(body))  # never anything but a block or WireFormatError
    generic = _outcome(block_from_cbor, bytes(body))
    if walked is not WireFormatError and generic is not WireFormatError:
        assert walked.block == generic  # type: ignore[union-attr]
        assert bytes(walked.stored_payload) == payload_to_cbor(generic.payload)  # type: ignore[union-attr]


def test_a_non_shortest_key_is_still_a_field() -> None:
    block = Block(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, 2, 3, 4, BlockPayload(b"d", b"o"), 5, 6)
    body = bytearray(block_to_cbor(block))
    long_key = b"\x78\x0anb_objects"  # text(10) with a one-byte length: valid CBOR, not what cbor2 writes
    body = body.replace(b"\x6anb_objects", long_key)
    assert decode_block_body(body).block == block
