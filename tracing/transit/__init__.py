"""The Micromegas wire format, shared by whoever writes it and whoever reads it.

Ingestion bodies (``ProcessInfo``, ``StreamInfo``, ``Block`` and the block payload, each a CBOR
map), the UDT metadata a stream describes its events with (``UserDefinedType``), the transit
layouts a Sirius producer declares (``LOG``, ``METRICS``, ``CPU``), the Python ``TransitWriter``
that packs events into LZ4-framed queues, and RFC 3339 times as integer nanoseconds. The
producer (``sirius.tracing``) writes with it and the lakehouse reads with it; neither reaches
past this face. It imports nothing else of Sirius.
"""

from __future__ import annotations

from ._exceptions import TracingError, WireFormatError
from ._layouts import CPU, LOG, METRICS, STREAM_LAYOUTS, Level, StreamLayout, StringCodec, stream_layout
from ._rfc3339 import datetime_to_ns, format_rfc3339_ns, ns_to_datetime, parse_rfc3339_ns
from ._udt import INTRINSIC_SIZES, Member, UserDefinedType, decode_udts, encode_udts
from ._wire_format import (
    MAX_DECOMPRESSED_QUEUE_BYTES,
    TRANSIT_FORMAT,
    Block,
    BlockPayload,
    ProcessInfo,
    StreamInfo,
    block_from_cbor,
    block_from_fields,
    block_to_cbor,
    compress_queue,
    decompress_queue,
    payload_from_cbor,
    payload_from_value,
    payload_to_cbor,
    process_info_from_cbor,
    process_info_to_cbor,
    stream_info_from_cbor,
    stream_info_to_cbor,
)
from ._writer import LogMetadata, MetricMetadata, SpanLocation, SpanMetadata, TransitWriter

__all__ = [
    "CPU",
    "INTRINSIC_SIZES",
    "LOG",
    "MAX_DECOMPRESSED_QUEUE_BYTES",
    "METRICS",
    "STREAM_LAYOUTS",
    "TRANSIT_FORMAT",
    "Block",
    "BlockPayload",
    "Level",
    "LogMetadata",
    "Member",
    "MetricMetadata",
    "ProcessInfo",
    "SpanLocation",
    "SpanMetadata",
    "StreamInfo",
    "StreamLayout",
    "StringCodec",
    "TracingError",
    "TransitWriter",
    "UserDefinedType",
    "WireFormatError",
    "block_from_cbor",
    "block_from_fields",
    "block_to_cbor",
    "compress_queue",
    "datetime_to_ns",
    "decode_udts",
    "decompress_queue",
    "encode_udts",
    "format_rfc3339_ns",
    "ns_to_datetime",
    "parse_rfc3339_ns",
    "payload_from_cbor",
    "payload_from_value",
    "payload_to_cbor",
    "process_info_from_cbor",
    "process_info_to_cbor",
    "stream_info_from_cbor",
    "stream_info_to_cbor",
    "stream_layout",
]
