"""Sirius tracing: the Micromegas wire format, transit writer and telemetry sink.

This package imports nothing else of Sirius, so an instrumented application installs only it.
"""

from __future__ import annotations

from ._exceptions import TracingError, WireFormatError
from ._rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from ._udt import Member, UserDefinedType, decode_udts, encode_udts
from ._wire_format import (
    TRANSIT_FORMAT,
    Block,
    BlockPayload,
    ProcessInfo,
    StreamInfo,
    block_from_cbor,
    block_to_cbor,
    compress_queue,
    decompress_queue,
    payload_from_cbor,
    payload_to_cbor,
    process_info_from_cbor,
    process_info_to_cbor,
    stream_info_from_cbor,
    stream_info_to_cbor,
)

__all__ = [
    "TRANSIT_FORMAT",
    "Block",
    "BlockPayload",
    "Member",
    "ProcessInfo",
    "StreamInfo",
    "TracingError",
    "UserDefinedType",
    "WireFormatError",
    "block_from_cbor",
    "block_to_cbor",
    "compress_queue",
    "decode_udts",
    "decompress_queue",
    "encode_udts",
    "format_rfc3339_ns",
    "parse_rfc3339_ns",
    "payload_from_cbor",
    "payload_to_cbor",
    "process_info_from_cbor",
    "process_info_to_cbor",
    "stream_info_from_cbor",
    "stream_info_to_cbor",
]
