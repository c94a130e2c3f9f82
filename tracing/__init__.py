"""Sirius tracing: the Micromegas wire format, transit writer and telemetry sink.

This package imports nothing else of Sirius, so an instrumented application installs only it.
"""

from __future__ import annotations

from ._exceptions import TracingError, TransitScanError, WireFormatError
from ._process import current_process_info
from ._rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from ._sink import InMemoryBlockSink, SinkConfig, SinkStats, TelemetrySink
from ._transit_layouts import CPU, LOG, METRICS, STREAM_LAYOUTS, Level, StreamLayout, StringCodec, stream_layout
from ._transit_writer import LogMetadata, MetricMetadata, SpanLocation, SpanMetadata, TransitWriter
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
    "CPU",
    "LOG",
    "METRICS",
    "STREAM_LAYOUTS",
    "TRANSIT_FORMAT",
    "Block",
    "BlockPayload",
    "InMemoryBlockSink",
    "Level",
    "LogMetadata",
    "Member",
    "MetricMetadata",
    "ProcessInfo",
    "SinkConfig",
    "SinkStats",
    "SpanLocation",
    "SpanMetadata",
    "StreamInfo",
    "StreamLayout",
    "StringCodec",
    "TelemetrySink",
    "TracingError",
    "TransitScanError",
    "TransitWriter",
    "UserDefinedType",
    "WireFormatError",
    "block_from_cbor",
    "block_to_cbor",
    "compress_queue",
    "current_process_info",
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
    "stream_layout",
]
