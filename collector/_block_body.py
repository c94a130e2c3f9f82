"""Zero-copy decoding of ``insert_block`` bodies: the payload stays a view of the request body.

A generic CBOR decoder copies every byte string it returns, and the stored object
(``CBOR(BlockPayload)``) would then be encoded afresh: three copies of a block per request.
Here the body is walked with a minimal CBOR head reader instead. The small fields (ids, times,
ticks, counts) are decoded with ``cbor2`` from their own slices and validated by
``sirius.tracing``; the two payload queues become ``memoryview`` slices of the body; and when the
body's ``payload`` map is already in the canonical form the server stores (a two-entry map,
``dependencies`` then ``objects``, byte strings with shortest-form lengths: what every producer
writes, and byte for byte what ``payload_to_cbor`` would encode), the object to store is that
slice too. A request then holds its body once, from the read to the object-store put.

Other encodings stay accepted and take the copying path (``payload_from_value`` and
``payload_to_cbor``, as before): another key order in the payload map, and, through the generic
``cbor2`` decoder, anything whose walk would be a long Python loop (legacy integer-array
payloads, more than 256 items in all, indefinite lengths), so a body is never walked item by
item in Python.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import cbor2

from ..tracing import (
    Block,
    BlockPayload,
    WireFormatError,
    block_from_cbor,
    block_from_fields,
    payload_from_value,
    payload_to_cbor,
)

__all__ = ["DecodedBlock", "decode_block_body"]

_WHAT = "insert_block"
_MAX_DEPTH = 64
_MAX_WALKED_ITEMS = 256  # a block body has ~30 items; more go to the generic (C) decoder, not a Python loop
_BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = 2, 3, 4, 5, 6, 7
_DEPENDENCIES_KEY = b"\x6cdependencies"  # text(12) "dependencies"
_OBJECTS_KEY = b"\x67objects"  # text(7) "objects"
_MAX_KEY_BYTES = 64  # longer text keys are not Block fields: skipped without decoding
_FIELDS = frozenset(
    (
        "block_id",
        "stream_id",
        "process_id",
        "begin_time",
        "begin_ticks",
        "end_time",
        "end_ticks",
        "object_offset",
        "nb_objects",
    )
)
"""The ``Block`` fields other than ``payload``; other keys are skipped undecoded (serde ignores them)."""
_KEYS = {cbor2.dumps(name): name for name in (*_FIELDS, "payload")}
"""Each field's key as ``cbor2`` and serde write it (shortest-form text), matched without decoding."""


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """A decoded ``insert_block`` body.

    Attributes:
        block: the block; its payload queues may be views of the body.
        stored_payload: the exact bytes to store at ``blobs/{p}/{s}/{b}`` (a view of the body
            when it already holds them, else a fresh encoding).
    """

    block: Block
    stored_payload: bytes | memoryview

    def release(self) -> None:
        """Release the views of the body (idempotent): whatever still holds one no longer keeps the body alive.

        A view still being read (exported) is left as is.
        """
        for view in (self.stored_payload, self.block.payload.dependencies, self.block.payload.objects):
            if isinstance(view, memoryview):
                with contextlib.suppress(BufferError):
                    view.release()


class _TooComplexError(Exception):
    """The body is left to the generic decoder (see the module docstring); never leaves this module."""


def _fail(reason: str) -> WireFormatError:
    return WireFormatError(f"{_WHAT}: malformed CBOR ({reason})")


def _head(buf: memoryview, pos: int) -> tuple[int, int | None, int]:
    """Read the head of the item at ``pos``: (major type, argument or None if indefinite, next position)."""
    if pos >= len(buf):
        raise _fail("truncated")
    initial = buf[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info <= 27:
        end = pos + (1 << (info - 24))
        if end > len(buf):
            raise _fail("truncated")
        return major, int.from_bytes(buf[pos:end], "big"), end
    if info == 31 and major in (_BYTES, _TEXT, _ARRAY, _MAP, _SIMPLE):
        return major, None, pos
    raise _fail(f"reserved additional information {info}")


class _Walker:
    """Finds where items end in a body, walking at most ``_MAX_WALKED_ITEMS`` items in all."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.items_left = _MAX_WALKED_ITEMS

    def skip(self, pos: int, depth: int = 0) -> int:
        """Position just past the data item that starts at ``pos`` (its end is checked, its content is not)."""
        self.items_left -= 1
        if self.items_left < 0:
            raise _TooComplexError
        if depth > _MAX_DEPTH:
            raise _fail("nested too deeply")
        major, arg, pos = _head(self.buf, pos)
        if arg is None:
            if major == _SIMPLE:
                raise _fail("unexpected break")
            raise _TooComplexError  # indefinite lengths: never written by serde
        if major in (_BYTES, _TEXT):
            if pos + arg > len(self.buf):
                raise _fail("truncated")
            return pos + arg
        if major in (_ARRAY, _MAP):
            for _ in range(arg * (2 if major == _MAP else 1)):
                pos = self.skip(pos, depth + 1)
            return pos
        if major == _TAG:
            return self.skip(pos, depth + 1)
        return pos  # integers, simple values and floats: the head was the whole item

    def entries(self) -> list[tuple[int, int, int]]:
        """The (key start, value start, value end) of each entry of the map the body starts with.

        Raises:
            WireFormatError: the body is not a map, or is malformed.
        """
        major, count, pos = _head(self.buf, 0)
        if major != _MAP:
            msg = f"{_WHAT}: body must be a CBOR map"
            raise WireFormatError(msg)
        if count is None or count > _MAX_WALKED_ITEMS:
            raise _TooComplexError
        entries: list[tuple[int, int, int]] = []
        for _ in range(count):
            value = self._skip_entry_item(pos)
            end = self._skip_entry_item(value)
            entries.append((pos, value, end))
            pos = end
        return entries

    def _skip_entry_item(self, pos: int) -> int:
        """``skip(pos, 1)``, with the scalars a block's keys and values are (text, integers) read inline.

        The walk is the cost of decoding a small block: one call per item instead of two.
        """
        self.items_left -= 1
        if self.items_left < 0:
            raise _TooComplexError
        buf = self.buf
        size = len(buf)
        if pos >= size:
            raise _fail("truncated")
        initial = buf[pos]
        major, info = initial >> 5, initial & 0x1F
        if major in (_ARRAY, _MAP, _TAG) or info > 27:  # containers, indefinite or reserved: the general walk
            self.items_left += 1
            return self.skip(pos, 1)
        if info < 24:
            argument, pos = info, pos + 1
        else:
            end = pos + 1 + (1 << (info - 24))
            if end > size:
                raise _fail("truncated")
            argument, pos = int.from_bytes(buf[pos + 1 : end], "big"), end
        if major in (_BYTES, _TEXT):
            pos += argument
            if pos > size:
                raise _fail("truncated")
        return pos  # integers, simple values and floats: the head was the whole item


def _loads(buf: memoryview) -> Any:
    try:
        return cbor2.loads(buf)
    except Exception as exc:  # CBORDecodeError, ValueError, OverflowError …
        raise _fail(str(exc)) from exc


def _text_key(buf: memoryview, start: int, end: int) -> str | None:
    if buf[start] >> 5 != _TEXT or end - start > _MAX_KEY_BYTES:
        return None
    key = _loads(buf[start:end])
    return key if isinstance(key, str) else None


def _array_head(count: int) -> bytes:
    """The head of an array of ``count`` items (fewer than 2**16: the walk stops at ``_MAX_WALKED_ITEMS``)."""
    return bytes([0x80 | count]) if count < 24 else bytes([0x99]) + count.to_bytes(2, "big")


def _bytes_head(size: int) -> bytes:
    """The shortest-form head of a byte string of ``size`` bytes (what ``cbor2`` writes)."""
    if size < 24:
        return bytes([0x40 | size])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if size < 1 << (8 * width):
            return bytes([0x40 | info]) + size.to_bytes(width, "big")
    msg = f"byte string of {size} bytes"
    raise OverflowError(msg)


def _canonical_payload(buf: memoryview, start: int, end: int) -> tuple[BlockPayload, memoryview] | None:
    """The payload as views, and the stored object as a view, when the payload map is canonical."""
    pos = start
    if buf[pos] != 0xA2:  # map of two entries
        return None
    pos += 1
    queues: list[memoryview] = []
    for key in (_DEPENDENCIES_KEY, _OBJECTS_KEY):
        if buf[pos : pos + len(key)] != key:
            return None
        pos += len(key)
        major, size, data = _head(buf, pos)
        if major != _BYTES or size is None or buf[pos:data] != _bytes_head(size) or data + size > end:
            return None
        queues.append(buf[data : data + size])
        pos = data + size
    if pos != end:
        return None
    return BlockPayload(dependencies=queues[0], objects=queues[1]), buf[start:end]


def decode_block_body(body: bytes | bytearray | memoryview) -> DecodedBlock:
    """Decode and validate an ``insert_block`` body, keeping the payload as views of ``body``.

    ``body`` must stay unchanged while the result is in use (the views read it).

    Raises:
        WireFormatError: with the reason, for any malformed, missing or inconsistent field.
    """
    buf = memoryview(body).cast("B").toreadonly()
    if not buf:
        msg = f"{_WHAT}: empty body"
        raise WireFormatError(msg)
    try:
        return _decode_walked(buf)
    except _TooComplexError:
        block = block_from_cbor(buf)  # type: ignore[arg-type]  # cbor2 reads any buffer
        return DecodedBlock(block, payload_to_cbor(block.payload))


def _decode_walked(buf: memoryview) -> DecodedBlock:
    entries = _Walker(buf).entries()  # bytes after the map are ignored, as by cbor2 and ciborium
    names: list[str] = []
    values: list[memoryview] = []
    payload_span: tuple[int, int] | None = None
    for key_start, value_start, value_end in entries:
        # Keys as every producer writes them are matched as raw bytes; any other key is decoded.
        key = _KEYS.get(bytes(buf[key_start:value_start])) if value_start - key_start <= _MAX_KEY_BYTES else None
        if key is None:
            key = _text_key(buf, key_start, value_start)
        if key == "payload":
            payload_span = (value_start, value_end)
        elif key in _FIELDS:
            names.append(key)
            values.append(buf[value_start:value_end])
    if payload_span is None:
        msg = f"{_WHAT}: missing field 'payload'"
        raise WireFormatError(msg)
    # The small values in one decoder call: an array of the walked items (each one whole item).
    decoded = _loads(memoryview(_array_head(len(values)) + b"".join(values)))
    fields: dict[Any, Any] = dict(zip(names, decoded, strict=True))  # a repeated key: the last one wins
    views = _canonical_payload(buf, *payload_span)
    if views is not None:
        payload, stored = views
        return DecodedBlock(block_from_fields(fields, payload), stored)
    # Legacy integer arrays, indefinite lengths, other key orders: decode and re-encode (copies).
    payload = payload_from_value(_loads(buf[payload_span[0] : payload_span[1]]), f"{_WHAT}: payload")
    block = block_from_fields(fields, payload)
    return DecodedBlock(block, payload_to_cbor(payload))
