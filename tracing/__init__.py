"""Sirius tracing: the native low-overhead tracer, the Micromegas wire format, transit writer and sink.

Instrumentation: ``init(...)``, ``@span`` / ``with span("name")``, ``async with async_span(name)``,
``info/warn/error/debug/trace``, ``metric(name, value, unit=...)``, ``auto_spans(include=[...])``,
``TracingHandler`` for ``logging``, ``flush``, ``shutdown``, ``stats``, ``process_info``; ``flush_spool`` delivers what
sinks spooled to disk when the ingestion service was unreachable. The C API is
``tracing/native/include/sirius_tracing.h``.

This package imports nothing else of Sirius, so an instrumented application installs only it.
"""

from __future__ import annotations

from ._api import (
    AsyncSpan,
    Descriptor,
    async_span,
    begin_span,
    debug,
    end_span,
    error,
    fatal,
    info,
    log,
    log_desc,
    metric,
    metric_desc,
    span,
    span_desc,
    trace,
    warn,
)
from ._auto_spans import auto_spans, auto_spans_active, stop_auto_spans
from ._exceptions import SpoolEntryError, TracingError, TransitScanError, WireFormatError
from ._logging_handler import TracingHandler, level_from_python
from ._process import current_process_info
from ._rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from ._sink import HttpTransport, InMemoryBlockSink, SinkConfig, SinkStats, TelemetrySink
from ._spool import SpoolConfig, SpoolEntry, decode_spool_entry, encode_spool_entry
from ._spool_delivery import SpoolDeliveryStats
from ._spool_flush import flush_spool
from ._tracer import (
    EncodedSink,
    TracerConfig,
    TracerStats,
    current_process,
    flush,
    init,
    is_running,
    process_id,
    process_info,
    shutdown,
    stats,
)
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
    "AsyncSpan",
    "Block",
    "BlockPayload",
    "Descriptor",
    "EncodedSink",
    "HttpTransport",
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
    "SpoolConfig",
    "SpoolDeliveryStats",
    "SpoolEntry",
    "SpoolEntryError",
    "StreamInfo",
    "StreamLayout",
    "StringCodec",
    "TelemetrySink",
    "TracerConfig",
    "TracerStats",
    "TracingError",
    "TracingHandler",
    "TransitScanError",
    "TransitWriter",
    "UserDefinedType",
    "WireFormatError",
    "async_span",
    "auto_spans",
    "auto_spans_active",
    "begin_span",
    "block_from_cbor",
    "block_to_cbor",
    "compress_queue",
    "current_process",
    "current_process_info",
    "debug",
    "decode_spool_entry",
    "decode_udts",
    "decompress_queue",
    "encode_spool_entry",
    "encode_udts",
    "end_span",
    "error",
    "fatal",
    "flush",
    "flush_spool",
    "format_rfc3339_ns",
    "info",
    "init",
    "is_running",
    "level_from_python",
    "log",
    "log_desc",
    "metric",
    "metric_desc",
    "parse_rfc3339_ns",
    "payload_from_cbor",
    "payload_to_cbor",
    "process_id",
    "process_info",
    "process_info_from_cbor",
    "process_info_to_cbor",
    "shutdown",
    "span",
    "span_desc",
    "stats",
    "stop_auto_spans",
    "stream_info_from_cbor",
    "stream_info_to_cbor",
    "stream_layout",
    "trace",
    "warn",
]
