"""Zero-copy ``insert_block`` decoding, LZ4 decompression into one buffer, and reading a declared body."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from unittest import mock

import cbor2
import lz4.frame
import pytest
from aiohttp import StreamReader
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.collector import IncompleteBodyError, IngestionLimits, LengthRequiredError
from sirius.collector._admission import declared_body_size, read_declared_body
from sirius.collector._block_body import decode_block_body
from sirius.collector._lz4_into import decompress_queue_into
from sirius.tracing import (
    Block,
    BlockPayload,
    WireFormatError,
    block_from_cbor,
    block_to_cbor,
    compress_queue,
    decompress_queue,
    payload_to_cbor,
)


def _block(objects_size: int) -> Block:
    return Block(
        block_id=uuid.uuid4(),
        stream_id=uuid.uuid4(),
        process_id=uuid.uuid4(),
        begin_time_ns=1_750_000_000_000_000_001,
        begin_ticks=10,
        end_time_ns=1_750_000_000_000_000_900,
        end_ticks=20,
        payload=BlockPayload(compress_queue(b"deps"), os.urandom(objects_size)),
        object_offset=7,
        nb_objects=3,
    )


# Byte-string lengths on each side of every CBOR length-encoding boundary.
@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65_535, 65_536, 1 << 20])
def test_canonical_payload_is_stored_as_a_view_of_the_body(size: int) -> None:
    block = _block(size)
    body = bytearray(block_to_cbor(block))
    decoded = decode_block_body(body)
    assert decoded.block == block_from_cbor(bytes(body))  # same fields as the generic decoder
    stored = decoded.stored_payload
    assert isinstance(stored, memoryview)
    assert stored.obj is body  # no copy: a slice of the request body
    assert stored.readonly
    assert bytes(stored) == payload_to_cbor(block.payload)  # byte for byte what would be encoded
    assert isinstance(decoded.block.payload.objects, memoryview)
    with pytest.raises(BufferError):
        body.append(0)  # the views pin the body...
    decoded.release()
    decoded.release()
    body.append(0)  # ...until released, even while the DecodedBlock is still referenced


def _variant(block: Block, **changes: object) -> bytes:
    value = cbor2.loads(block_to_cbor(block))
    value.update(changes)
    return cbor2.dumps(value)


def test_other_payload_encodings_are_reencoded() -> None:
    block = _block(1000)
    payload = cbor2.loads(block_to_cbor(block))["payload"]
    variants = {
        "legacy integer arrays": {k: list(v) for k, v in payload.items()},
        "objects first": {"objects": payload["objects"], "dependencies": payload["dependencies"]},
    }
    for name, value in variants.items():
        decoded = decode_block_body(_variant(block, payload=value))
        assert isinstance(decoded.stored_payload, bytes), name
        assert decoded.stored_payload == payload_to_cbor(block.payload), name
        assert decoded.block == block, name


def test_unknown_keys_are_skipped_and_trailing_bytes_ignored() -> None:
    block = _block(100)
    body = _variant(block, zz_extension=[1, {"x": b"\x00" * 300}, cbor2.CBORTag(1, 5)]) + b"\x00"
    assert decode_block_body(body).block == block


def test_bodies_with_many_items_or_indefinite_lengths_take_the_generic_decoder() -> None:
    block = _block(100)
    value = cbor2.loads(block_to_cbor(block))
    indefinite_map = b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in value.items()) + b"\xff"
    bodies = [_variant(block, zz_extension=list(range(10_000))), indefinite_map]
    for body in bodies:
        decoded = decode_block_body(body)
        assert decoded.block == block
        assert decoded.stored_payload == payload_to_cbor(block.payload)


def test_malformed_bodies_raise_with_a_reason() -> None:
    good = block_to_cbor(_block(100))
    bad = {
        "empty": b"",
        "not a map": cbor2.dumps([1, 2]),
        "truncated": good[:-10],
        "reserved head": b"\xa1\x67payload\x1c",
        "missing payload": _without(good, "payload"),
        "missing block_id": _without(good, "block_id"),
        "wrong type": _variant(_block(10), nb_objects="3"),
        "payload not a map": _variant(_block(10), payload=[1]),
    }
    for body in bad.values():  # on failure, pytest's traceback shows which name
        with pytest.raises(WireFormatError, match="insert_block"):
            decode_block_body(body)
        with pytest.raises(WireFormatError):  # the generic decoder refuses the same bodies
            block_from_cbor(body)


def _without(body: bytes, key: str) -> bytes:
    value = cbor2.loads(body)
    del value[key]
    return cbor2.dumps(value)


@pytest.mark.parametrize(
    "options",
    [{}, {"store_size": False}, {"block_linked": False, "content_checksum": True}, {"block_checksum": True}],
)
def test_lz4_into_matches_python_lz4(options: dict[str, object]) -> None:
    raw = os.urandom(70_000) + b"abc" * 1_000_000
    frame = lz4.frame.compress(raw, **options)
    assert bytes(decompress_queue_into(frame)) == raw
    assert bytes(decompress_queue_into(memoryview(frame))) == raw
    assert bytes(decompress_queue_into(frame + frame)) == raw + raw  # concatenated frames
    corrupt = bytearray(frame)
    corrupt[len(corrupt) // 2] ^= 0xFF
    for payload in (frame[:-5], frame + b"junk!", b"\x00" * 10):
        with pytest.raises(WireFormatError, match="LZ4"):
            decompress_queue_into(payload)
    with pytest.raises(WireFormatError, match="more than 1000 bytes"):
        decompress_queue_into(frame, 1000)
    try:
        expected = decompress_queue(bytes(corrupt))
    except WireFormatError:
        with pytest.raises(WireFormatError):
            decompress_queue_into(bytes(corrupt))
    else:  # without checksums a flipped literal is still a valid frame, for both decoders
        assert bytes(decompress_queue_into(bytes(corrupt))) == expected
    assert bytes(decompress_queue_into(b"")) == b""


def test_declared_body_size_needs_a_length_under_the_limit() -> None:
    assert declared_body_size(10, 10) == 10
    with pytest.raises(LengthRequiredError):
        declared_body_size(None, 10)
    with pytest.raises(Exception, match="larger than 10 bytes") as info:
        declared_body_size(11, 10)
    assert info.value.http_status == 413


def _reader(*chunks: bytes) -> StreamReader:
    loop = asyncio.get_running_loop()
    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


def test_read_declared_body_fills_one_buffer_or_refuses_a_short_body() -> None:
    async def scenario() -> None:
        body = await read_declared_body(_reader(b"abc", b"defg", b"hij"), 10)
        assert body == bytearray(b"abcdefghij")
        with pytest.raises(IncompleteBodyError, match="3 of the 10 bytes"):
            await read_declared_body(_reader(b"abc"), 10)

    asyncio.run(scenario())


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    declared_extra=st.integers(min_value=-5, max_value=5),
    http_chunked=st.booleans(),
)
def test_read_declared_body_is_the_first_bytes_whatever_the_chunking(
    body: bytes, cuts: list[int], declared_extra: int, http_chunked: bool
) -> None:
    """Any split of the stream into chunks (HTTP chunk ends or not) reads the same body, or refuses a short one."""
    size = max(0, len(body) + declared_extra)
    bounds = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    chunks = [body[a:b] for a, b in itertools.pairwise(bounds)]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
        if http_chunked:
            reader.begin_http_chunk_receiving()
        for chunk in chunks:
            reader.feed_data(chunk)
            if http_chunked:
                reader.end_http_chunk_receiving()
        reader.feed_eof()
        if size <= len(body):
            assert await read_declared_body(reader, size) == bytearray(body[:size])
        else:
            with pytest.raises(IncompleteBodyError, match=f"{len(body)} of the {size} bytes"):
                await read_declared_body(reader, size)

    asyncio.run(scenario())


def test_read_declared_body_goes_on_past_an_empty_http_chunk_end() -> None:
    """A chunk end reported after its data was read (``readchunk`` gives ``(b"", True)``) is not the body's end."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
        reader.begin_http_chunk_receiving()
        reading = asyncio.create_task(read_declared_body(reader, 6))
        reader.feed_data(b"abc")
        while reader._waiter is None and not reading.done():  # the reader took "abc" and waits for more
            await asyncio.sleep(0)
        reader.end_http_chunk_receiving()  # the end of a chunk already consumed: (b"", True)
        while reader._waiter is None and not reading.done():
            await asyncio.sleep(0)
        reader.feed_data(b"def")
        reader.end_http_chunk_receiving()
        reader.feed_eof()
        assert await reading == bytearray(b"abcdef")

    asyncio.run(scenario())


def test_ingestion_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestionLimits.resolve() == IngestionLimits()
    assert IngestionLimits().max_body_bytes == 100 * 1024 * 1024
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_INFLIGHT_REQUESTS", "3")
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_INFLIGHT_BYTES", " 5000 ")
    limits = IngestionLimits.resolve()
    assert (limits.max_body_bytes, limits.max_inflight_requests, limits.max_inflight_bytes) == (1000, 3, 5000)
    budget = limits.budget()
    assert (budget.max_requests, budget.max_bytes) == (3, 5000)
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_INFLIGHT_BYTES", "0")
    with pytest.raises(ValueError, match="positive"):
        IngestionLimits.resolve()
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_INFLIGHT_BYTES", "lots")
    with pytest.raises(ValueError, match="SIRIUS_INGESTION_MAX_INFLIGHT_BYTES"):
        IngestionLimits.resolve()
