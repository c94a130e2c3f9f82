"""The three OTLP signals and how each maps onto Micromegas streams (``micromegas-wire.md`` §10).

Also the one convention Sirius adds to the native ingestion routes: ``insert_stream``'s CBOR body
has no ``format`` field (the Rust service always stores ``micromegas-transit``), so a producer that
sends OTLP-format blocks through ``/ingestion/insert_*`` — the in-process OTel exporters — names
the format in the stream property ``sirius.format``; the Sirius ingestion service stores it in
``streams.format``. The property stays on the row, so a view can still tell the format of such a
stream written through a Rust ingester (which would have stored ``micromegas-transit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

__all__ = [
    "LOGS",
    "METRICS",
    "OTLP_FORMATS",
    "SIGNALS",
    "STREAM_FORMAT_PROPERTY",
    "TRACES",
    "Signal",
    "stream_format",
]

STREAM_FORMAT_PROPERTY = "sirius.format"
"""Stream property naming ``streams.format`` for streams registered through ``insert_stream``."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One OTLP signal.

    Attributes:
        name: ``logs``, ``metrics`` or ``traces`` (the stream-id key and the URL path's last part).
        format: ``streams.format`` of its blocks (``otlp/v1/<name>``).
        tag: the stream tag views select on (``log``, ``metrics``, ``trace``).
        request_type: ``Export*ServiceRequest`` class.
        response_type: ``Export*ServiceResponse`` class.
        resource_type: the per-resource message stored as one block.
        resources_field: the request's repeated resource field.
        rejected_field: the ``partial_success`` counter.
        items: what the counter counts, for messages (``spans``, ``log records``, ``data points``).
        grpc_service: fully qualified gRPC service name.
    """

    name: str
    format: str
    tag: str
    request_type: type[Message]
    response_type: type[Message]
    resource_type: type[Message]
    resources_field: str
    rejected_field: str
    items: str
    grpc_service: str


LOGS = Signal(
    "logs",
    "otlp/v1/logs",
    "log",
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    ResourceLogs,
    "resource_logs",
    "rejected_log_records",
    "log records",
    "opentelemetry.proto.collector.logs.v1.LogsService",
)
METRICS = Signal(
    "metrics",
    "otlp/v1/metrics",
    "metrics",
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    ResourceMetrics,
    "resource_metrics",
    "rejected_data_points",
    "data points",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)
TRACES = Signal(
    "traces",
    "otlp/v1/traces",
    "trace",
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    ResourceSpans,
    "resource_spans",
    "rejected_spans",
    "spans",
    "opentelemetry.proto.collector.trace.v1.TraceService",
)
SIGNALS: Mapping[str, Signal] = {s.name: s for s in (LOGS, METRICS, TRACES)}
"""Signals by name."""
OTLP_FORMATS: Mapping[str, Signal] = {s.format: s for s in (LOGS, METRICS, TRACES)}
"""Signals by ``streams.format``."""


def stream_format(properties: Mapping[str, str], default: str) -> str:
    """The ``streams.format`` a registered stream asks for: its ``sirius.format`` property, else ``default``.

    Raises:
        ValueError: the property names a format Sirius does not store.
    """
    requested = properties.get(STREAM_FORMAT_PROPERTY)
    if requested is None:
        return default
    if requested not in OTLP_FORMATS:
        msg = f"stream property {STREAM_FORMAT_PROPERTY}={requested!r} is not one of {sorted(OTLP_FORMATS)}"
        raise ValueError(msg)
    return requested
