"""Micromegas ingestion bodies: ``ProcessInfo``, ``StreamInfo``, ``Block`` and the block payload.

Each is one CBOR map keyed by the Rust field names (``micromegas-wire.md`` §2). UUIDs travel as
hyphenated text and times as RFC 3339 text; here times are integer Unix nanoseconds so nothing
is lost to ``datetime``'s microseconds. Decoders validate every field and raise
``WireFormatError`` with a reason; unknown keys are ignored as serde does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
import lz4.frame

from ._exceptions import WireFormatError
from ._rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from ._udt import UserDefinedType, udts_from_value, udts_to_value

TRANSIT_FORMAT = "micromegas-transit"
"""``streams.format`` of native transit streams."""

_I64 = (-(2**63), 2**63 - 1)
_I32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A process as registered by ``POST /ingestion/insert_process``."""

    process_id: uuid.UUID
    exe: str
    username: str
    realname: str
    computer: str
    distro: str
    cpu_brand: str
    tsc_frequency: int
    start_time_ns: int
    start_ticks: int
    parent_process_id: uuid.UUID | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as registered by ``POST /ingestion/insert_stream``."""

    process_id: uuid.UUID
    stream_id: uuid.UUID
    dependencies_metadata: tuple[UserDefinedType, ...]
    objects_metadata: tuple[UserDefinedType, ...]
    tags: tuple[str, ...]
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BlockPayload:
    """The two queues of a block: LZ4-frame transit buffers (or raw bytes for OTLP streams).

    Usually ``bytes``; the collector's ``insert_block`` path holds read-only ``memoryview`` slices
    of the request body instead, so a block is held in memory once.
    """

    dependencies: bytes | memoryview
    objects: bytes | memoryview


@dataclass(frozen=True, slots=True)
class Block:
    """A block as sent by ``POST /ingestion/insert_block``; ticks are relative to ``start_ticks``."""

    block_id: uuid.UUID
    stream_id: uuid.UUID
    process_id: uuid.UUID
    begin_time_ns: int
    begin_ticks: int
    end_time_ns: int
    end_ticks: int
    payload: BlockPayload
    object_offset: int
    nb_objects: int


# ---------------------------------------------------------------------------------------------
# encoding


def process_info_to_cbor(info: ProcessInfo) -> bytes:
    """Encode a ``ProcessInfo`` body (keys in Rust declaration order)."""
    return cbor2.dumps(
        {
            "process_id": str(info.process_id),
            "exe": info.exe,
            "username": info.username,
            "realname": info.realname,
            "computer": info.computer,
            "distro": info.distro,
            "cpu_brand": info.cpu_brand,
            "tsc_frequency": info.tsc_frequency,
            "start_time": format_rfc3339_ns(info.start_time_ns),
            "start_ticks": info.start_ticks,
            "parent_process_id": str(info.parent_process_id) if info.parent_process_id else None,
            "properties": dict(info.properties),
        }
    )


def stream_info_to_cbor(info: StreamInfo) -> bytes:
    """Encode a ``StreamInfo`` body."""
    return cbor2.dumps(
        {
            "process_id": str(info.process_id),
            "stream_id": str(info.stream_id),
            "dependencies_metadata": udts_to_value(info.dependencies_metadata),
            "objects_metadata": udts_to_value(info.objects_metadata),
            "tags": list(info.tags),
            "properties": dict(info.properties),
        }
    )


def payload_to_cbor(payload: BlockPayload) -> bytes:
    """Encode a ``BlockPayload``: the exact bytes stored at ``blobs/{p}/{s}/{b}``."""
    return cbor2.dumps({"dependencies": bytes(payload.dependencies), "objects": bytes(payload.objects)})


def block_to_cbor(block: Block) -> bytes:
    """Encode a ``Block`` body (payload as byte strings, the current form)."""
    return cbor2.dumps(
        {
            "block_id": str(block.block_id),
            "stream_id": str(block.stream_id),
            "process_id": str(block.process_id),
            "begin_time": format_rfc3339_ns(block.begin_time_ns),
            "begin_ticks": block.begin_ticks,
            "end_time": format_rfc3339_ns(block.end_time_ns),
            "end_ticks": block.end_ticks,
            "payload": {"dependencies": bytes(block.payload.dependencies), "objects": bytes(block.payload.objects)},
            "object_offset": block.object_offset,
            "nb_objects": block.nb_objects,
        }
    )


def compress_queue(buffer: bytes) -> bytes:
    """LZ4-frame-compress a transit queue at the fast default level (environment.md §9)."""
    return lz4.frame.compress(buffer)


MAX_DECOMPRESSED_QUEUE_BYTES = 256 * 1024 * 1024
"""Largest decompressed queue accepted: LZ4 expands up to ~255x, so a 100 MiB body could
otherwise claim tens of GiB (a decompression bomb). Real blocks are 1-10 MiB."""


def decompress_queue(data: bytes | memoryview, max_size: int = MAX_DECOMPRESSED_QUEUE_BYTES) -> bytes:
    """Decompress one LZ4-frame queue, refusing output larger than ``max_size``.

    Raises:
        WireFormatError: on a truncated or corrupt frame, trailing bytes, or too much output.
    """
    if not data:
        return b""
    parts: list[bytes] = []
    size = 0
    remaining = memoryview(data)  # the decompressor reads any buffer: no copy of the input
    # Concatenated frames are valid LZ4 (the reference decoder reads them in sequence).
    while remaining:
        bound, declared = _frame_output_bound(remaining), _declares_size(remaining)
        if declared and bound is not None and len(remaining) * _LZ4_MAX_RATIO <= max_size - size:
            # The frame declares its size and even a lying header could not expand this input
            # past the limit: decompressed straight into a bytes object of that size (the
            # streaming decompressor below decodes into a buffer of its own, then copies it).
            try:
                out, used = lz4.frame.decompress(remaining, return_bytes_read=True)
            except Exception as exc:  # lz4 raises RuntimeError for corrupt or truncated frames
                msg = f"payload is not a valid LZ4 frame: {exc}"
                raise WireFormatError(msg) from exc
            size += len(out)
            parts.append(out)
            remaining = remaining[used:]
            continue
        decompressor = lz4.frame.LZ4FrameDecompressor()
        # python-lz4 allocates ``max_length`` bytes up front: the limit itself (256 MiB) would
        # be a fresh mapping per queue whose every written page faults in anew (5x the
        # decompression of a 1 MiB queue). A valid frame's output is at most its bound.
        limit = min(max_size - size + 1, bound or max_size)
        try:
            out = decompressor.decompress(remaining, max_length=limit)
        except Exception as exc:  # lz4 raises RuntimeError for corrupt frames
            msg = f"payload is not a valid LZ4 frame: {exc}"
            raise WireFormatError(msg) from exc
        size += len(out)
        if size > max_size:
            msg = f"payload decompresses to more than {max_size} bytes"
            raise WireFormatError(msg)
        if not decompressor.eof:
            msg = "payload is not a valid LZ4 frame: truncated"
            raise WireFormatError(msg)
        parts.append(out)
        remaining = memoryview(decompressor.unused_data or b"")
    return parts[0] if len(parts) == 1 else b"".join(parts)


_LZ4_MAGIC = 0x184D2204
_LZ4_MAX_RATIO = 256
"""LZ4 never expands input more than ~255x (a run's length bytes add at most 255 bytes each)."""
_LZ4_BLOCK_MAX = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}


def _declares_size(frame: memoryview) -> bool:
    """Whether the LZ4 frame header at the start of ``frame`` has its content-size field."""
    return len(frame) > 4 and bool(frame[4] & 0x08)


def _frame_output_bound(frame: memoryview) -> int | None:
    """Most bytes the LZ4 frame at the start of ``frame`` decompresses to, if it is well formed.

    The declared content size when the header has one; else its block count times the block
    maximum (a block never decodes past it; Sirius's C tracer writes no content size). None when
    the header or the block walk does not parse: the decompressor then reports what is wrong.

    >>> _frame_output_bound(memoryview(lz4.frame.compress(b"x" * 100_000)))
    100000
    >>> _frame_output_bound(memoryview(lz4.frame.compress(b"x" * 100_000, store_size=False)))
    131072
    """
    if len(frame) < 7 or int.from_bytes(frame[:4], "little") != _LZ4_MAGIC:
        return None
    flags, block_max = frame[4], _LZ4_BLOCK_MAX.get((frame[5] >> 4) & 0x7)
    if block_max is None:
        return None
    if flags & 0x08:  # content size present
        return int.from_bytes(frame[6:14], "little") if len(frame) >= 15 else None
    at = 7 + (4 if flags & 0x01 else 0)  # past the header (and its dictionary id)
    checksum = 4 if flags & 0x10 else 0
    blocks = 0
    while at + 4 <= len(frame):
        word = int.from_bytes(frame[at : at + 4], "little")
        if word == 0:  # end mark
            return max(blocks * block_max, 1)
        at += 4 + (word & 0x7FFFFFFF) + checksum
        blocks += 1
    return None


# ---------------------------------------------------------------------------------------------
# decoding


def _loads_map(data: bytes, what: str) -> dict[Any, Any]:
    if not data:
        msg = f"{what}: empty body"
        raise WireFormatError(msg)
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # CBORDecodeError, ValueError, OverflowError, RecursionError …
        msg = f"{what}: malformed CBOR ({exc})"
        raise WireFormatError(msg) from exc
    if not isinstance(value, dict):
        msg = f"{what}: body must be a CBOR map, got {type(value).__name__}"
        raise WireFormatError(msg)
    return value


def _get(obj: dict[Any, Any], key: str, what: str) -> Any:
    if key not in obj:
        msg = f"{what}: missing field {key!r}"
        raise WireFormatError(msg)
    return obj[key]


def _text(obj: dict[Any, Any], key: str, what: str) -> str:
    value = _get(obj, key, what)
    if not isinstance(value, str):
        msg = f"{what}: {key!r} must be text, got {type(value).__name__}"
        raise WireFormatError(msg)
    return value


def _int(obj: dict[Any, Any], key: str, what: str, bounds: tuple[int, int] = _I64) -> int:
    value = _get(obj, key, what)
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"{what}: {key!r} must be an integer, got {type(value).__name__}"
        raise WireFormatError(msg)
    if not bounds[0] <= value <= bounds[1]:
        msg = f"{what}: {key!r} out of range: {value}"
        raise WireFormatError(msg)
    return value


def _uuid(obj: dict[Any, Any], key: str, what: str) -> uuid.UUID:
    text = _text(obj, key, what)
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        msg = f"{what}: {key!r} is not a UUID: {text!r}"
        raise WireFormatError(msg) from exc


def _time_ns(obj: dict[Any, Any], key: str, what: str) -> int:
    text = _text(obj, key, what)
    try:
        return parse_rfc3339_ns(text)
    except ValueError as exc:
        msg = f"{what}: {key!r}: {exc}"
        raise WireFormatError(msg) from exc


def _properties(obj: dict[Any, Any], key: str, what: str) -> dict[str, str]:
    value = obj.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        msg = f"{what}: {key!r} must be a map of text to text"
        raise WireFormatError(msg)
    return value


def _bytes_field(obj: dict[Any, Any], key: str, what: str) -> bytes:
    value = _get(obj, key, what)
    if isinstance(value, bytes):
        return value
    # Legacy producers sent Vec<u8> as an array of integers, one per byte (serde default).
    if isinstance(value, list):
        try:
            return bytes(value)
        except (TypeError, ValueError) as exc:
            msg = f"{what}: {key!r} integer array holds a non-byte value"
            raise WireFormatError(msg) from exc
    msg = f"{what}: {key!r} must be a byte string or an array of bytes, got {type(value).__name__}"
    raise WireFormatError(msg)


def process_info_from_cbor(data: bytes) -> ProcessInfo:
    """Decode and validate a ``ProcessInfo`` body.

    Raises:
        WireFormatError: with the reason, for any malformed or missing field.
    """
    what = "insert_process"
    obj = _loads_map(data, what)
    parent = obj.get("parent_process_id")
    parent_id = None if parent in (None, "") else _uuid(obj, "parent_process_id", what)
    return ProcessInfo(
        process_id=_uuid(obj, "process_id", what),
        exe=_text(obj, "exe", what),
        username=_text(obj, "username", what),
        realname=_text(obj, "realname", what),
        computer=_text(obj, "computer", what),
        distro=_text(obj, "distro", what),
        cpu_brand=_text(obj, "cpu_brand", what),
        tsc_frequency=_int(obj, "tsc_frequency", what),
        start_time_ns=_time_ns(obj, "start_time", what),
        start_ticks=_int(obj, "start_ticks", what),
        parent_process_id=parent_id,
        properties=_properties(obj, "properties", what),
    )


def stream_info_from_cbor(data: bytes) -> StreamInfo:
    """Decode and validate a ``StreamInfo`` body.

    Raises:
        WireFormatError: with the reason, for any malformed or missing field.
    """
    what = "insert_stream"
    obj = _loads_map(data, what)
    tags = obj.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        msg = f"{what}: 'tags' must be an array of text"
        raise WireFormatError(msg)
    try:
        deps = udts_from_value(_get(obj, "dependencies_metadata", what))
        objs = udts_from_value(_get(obj, "objects_metadata", what))
    except WireFormatError as exc:
        msg = f"{what}: {exc}"
        raise WireFormatError(msg) from exc
    return StreamInfo(
        process_id=_uuid(obj, "process_id", what),
        stream_id=_uuid(obj, "stream_id", what),
        dependencies_metadata=deps,
        objects_metadata=objs,
        tags=tuple(tags),
        properties=_properties(obj, "properties", what),
    )


def payload_from_value(value: Any, what: str = "payload") -> BlockPayload:
    """Build a ``BlockPayload`` from its decoded CBOR map (byte strings or legacy int arrays)."""
    if not isinstance(value, dict):
        msg = f"{what}: must be a map with 'dependencies' and 'objects'"
        raise WireFormatError(msg)
    return BlockPayload(
        dependencies=_bytes_field(value, "dependencies", what),
        objects=_bytes_field(value, "objects", what),
    )


def payload_from_cbor(data: bytes) -> BlockPayload:
    """Decode a stored payload object (``blobs/{p}/{s}/{b}``)."""
    return payload_from_value(_loads_map(data, "payload"))


def block_from_cbor(data: bytes) -> Block:
    """Decode and validate a ``Block`` body.

    Raises:
        WireFormatError: with the reason, for any malformed, missing or inconsistent field.
    """
    what = "insert_block"
    obj = _loads_map(data, what)
    return block_from_fields(obj, payload_from_value(_get(obj, "payload", what), f"{what}: payload"))


def block_from_fields(obj: dict[Any, Any], payload: BlockPayload) -> Block:
    """Validate the fields of a decoded ``Block`` map other than its payload; build the block around ``payload``.

    For decoders that find the payload themselves (the collector keeps it as views of the request
    body instead of copies).

    Raises:
        WireFormatError: with the reason, for any malformed, missing or inconsistent field.
    """
    what = "insert_block"
    block = Block(
        block_id=_uuid(obj, "block_id", what),
        stream_id=_uuid(obj, "stream_id", what),
        process_id=_uuid(obj, "process_id", what),
        begin_time_ns=_time_ns(obj, "begin_time", what),
        begin_ticks=_int(obj, "begin_ticks", what),
        end_time_ns=_time_ns(obj, "end_time", what),
        end_ticks=_int(obj, "end_ticks", what),
        payload=payload,
        object_offset=_int(obj, "object_offset", what),
        nb_objects=_int(obj, "nb_objects", what, _I32),
    )
    if block.nb_objects < 0 or block.object_offset < 0:
        msg = f"{what}: negative nb_objects or object_offset"
        raise WireFormatError(msg)
    if block.end_time_ns < block.begin_time_ns:
        msg = f"{what}: end_time is before begin_time"
        raise WireFormatError(msg)
    return block
