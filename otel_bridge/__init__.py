"""Sirius otel_bridge: OpenTelemetry ⇄ Micromegas translation.

* OTLP identity (uuid5 process/stream/block ids of ``micromegas-wire.md`` §9) and the split of an
  OTLP export request into one block per resource — used by the collector's OTLP receivers;
* in-process OTel SDK exporters writing those blocks through the telemetry sink, registered as
  the ``sirius`` entry point of ``opentelemetry_{traces,logs,metrics}_exporter``;
* the process identity they share with the native tracer (``bridge_process_info``).
"""

from __future__ import annotations

from ._blocks import (
    OTLP_TICKS_PER_SECOND,
    OtlpBlock,
    SplitRequest,
    log_record_is_valid,
    process_info_for_resource,
    span_is_valid,
    split_request,
    validate_otlp_block,
)
from ._exporters import (
    DELTA_PREFERRED_TEMPORALITY,
    BlockSink,
    SiriusLogExporter,
    SiriusLogRecordExporter,
    SiriusMetricExporter,
    SiriusSpanExporter,
)
from ._identity import (
    NS_OTEL_BLOCK_V1,
    NS_OTEL_PROCESS_V1,
    NS_OTEL_STREAM_V1,
    attribute_map,
    attribute_text,
    block_id_for_payload,
    is_degenerate_resource,
    process_id_for_resource,
    process_key,
    stream_id_for,
)
from ._process_identity import bridge_process_info, set_process_info
from ._prost_encoding import encode_resource, encode_varint
from ._signals import LOGS, METRICS, OTLP_FORMATS, SIGNALS, STREAM_FORMAT_PROPERTY, TRACES, Signal, stream_format
from ._wire_split import split_request_bytes

__all__ = [
    "DELTA_PREFERRED_TEMPORALITY",
    "LOGS",
    "METRICS",
    "NS_OTEL_BLOCK_V1",
    "NS_OTEL_PROCESS_V1",
    "NS_OTEL_STREAM_V1",
    "OTLP_FORMATS",
    "OTLP_TICKS_PER_SECOND",
    "SIGNALS",
    "STREAM_FORMAT_PROPERTY",
    "TRACES",
    "BlockSink",
    "OtlpBlock",
    "Signal",
    "SiriusLogExporter",
    "SiriusLogRecordExporter",
    "SiriusMetricExporter",
    "SiriusSpanExporter",
    "SplitRequest",
    "attribute_map",
    "attribute_text",
    "block_id_for_payload",
    "bridge_process_info",
    "encode_resource",
    "encode_varint",
    "is_degenerate_resource",
    "log_record_is_valid",
    "process_id_for_resource",
    "process_info_for_resource",
    "process_key",
    "set_process_info",
    "span_is_valid",
    "split_request",
    "split_request_bytes",
    "stream_format",
    "stream_id_for",
    "validate_otlp_block",
]
