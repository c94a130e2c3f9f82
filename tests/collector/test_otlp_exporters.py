"""Real OTel Python SDK exporters (gRPC, HTTP/protobuf, spec JSON) → rows and objects in the lake.

Every span, log record and data point sent is found in the stored payloads with its values; the
stored block ids are the reference ids of the exporter's own request bytes, so a retry (the same
request again) changes nothing.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging

import pytest
from google.protobuf import json_format
from grpc import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sirius.collector import OtlpLimits, OtlpService, block_object_key
from sirius.otel_bridge import LOGS, TRACES, split_request
from sirius.tracing import payload_from_cbor

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

TRANSPORTS = ["grpc", "grpc+gzip", "http", "http+gzip", "http+deflate"]


class Service:
    def __init__(self, stack) -> None:
        self.stack = stack
        self.service = OtlpService(stack.stack.lake, stack.stack.store, grpc_port=0, http_port=0, limits=OtlpLimits())
        ports = stack.call(self.service.start())
        self.grpc, self.http = ports.grpc, ports.http

    def exporters(self, transport: str):
        kind, _, compression = transport.partition("+")
        if kind == "grpc":
            options = {"endpoint": f"localhost:{self.grpc}", "insecure": True}
            if compression:
                options["compression"] = GrpcCompression.Gzip
            return GrpcSpanExporter(**options), GrpcLogExporter(**options), GrpcMetricExporter(**options)
        base = f"http://127.0.0.1:{self.http}/v1"
        extra = {"compression": HttpCompression(compression)} if compression else {}
        return (
            HttpSpanExporter(endpoint=f"{base}/traces", **extra),
            HttpLogExporter(endpoint=f"{base}/logs", **extra),
            HttpMetricExporter(endpoint=f"{base}/metrics", **extra),
        )

    def blocks(self, tag: str) -> list:
        sql = "SELECT b.* FROM blocks b JOIN streams s USING (stream_id) WHERE $1 = ANY(s.tags) ORDER BY b.begin_time"
        return self.stack.call(self.stack.stack.lake.pool.fetch(sql, tag))

    def payload(self, row) -> bytes:
        key = block_object_key(row["process_id"], row["stream_id"], row["block_id"])
        return payload_from_cbor(self.stack.call(self.stack.stack.store.get(key))).objects

    def count(self, table: str) -> int:
        return self.stack.call(self.stack.stack.lake.pool.fetchval(f"SELECT count(*) FROM {table}"))


@pytest.fixture
def service(stack_factory):
    svc = Service(stack_factory())
    yield svc
    svc.stack.call(svc.service.stop())


RESOURCE = Resource.create({"service.name": "checkout", "service.instance.id": "pod-7", "host.name": "node-1"})


def emit_spans(exporter) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop.checkout", "2.0")
    with tracer.start_as_current_span("GET /checkout") as root:
        root.set_attribute("http.route", "/checkout")
        for step in ("load cart", "charge card"):
            with tracer.start_as_current_span(step) as span:
                span.set_attribute("step", step)
    spans = memory.get_finished_spans()
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    return list(spans)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spans_logs_and_metrics_arrive_whole(service, transport) -> None:
    span_exporter, log_exporter, metric_exporter = service.exporters(transport)

    spans = emit_spans(span_exporter)
    (row,) = service.blocks("trace")
    stored = ResourceSpans.FromString(service.payload(row))
    stored_spans = {s.span_id: s for scope in stored.scope_spans for s in scope.spans}
    assert len(stored_spans) == 3
    for span in spans:
        got = stored_spans[span.context.span_id.to_bytes(8, "big")]
        assert got.trace_id == span.context.trace_id.to_bytes(16, "big")
        assert (got.name, got.start_time_unix_nano, got.end_time_unix_nano) == (
            span.name,
            span.start_time,
            span.end_time,
        )
    expected = split_request(TRACES, encode_spans(spans)).blocks[0].block
    assert (row["block_id"], row["process_id"], row["nb_objects"]) == (expected.block_id, expected.process_id, 3)
    # a retry of the same batch: same request bytes, same ids, nothing new
    assert span_exporter.export(spans) is SpanExportResult.SUCCESS
    assert service.count("blocks") == 1

    provider = LoggerProvider(resource=RESOURCE)
    memory_logs = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory_logs))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(f"sirius.tests.otlp.{transport}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("payment declined for order %d", 42)
    logger.error("card expired")
    logger.removeHandler(handler)
    records = memory_logs.get_finished_logs()
    log_exporter.export(records)
    (log_row,) = service.blocks("log")
    stored_logs = [
        r for scope in ResourceLogs.FromString(service.payload(log_row)).scope_logs for r in scope.log_records
    ]
    assert [r.body.string_value for r in stored_logs] == ["payment declined for order 42", "card expired"]
    assert [r.severity_number for r in stored_logs] == [13, 17]
    assert log_row["block_id"] == split_request(LOGS, encode_logs(records)).blocks[0].block.block_id
    assert log_row["process_id"] == row["process_id"]  # one resource, one process

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meters = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = meters.get_meter("shop.metrics")
    meter.create_counter("orders", unit="{order}").add(5, {"region": "eu"})
    meter.create_histogram("latency", unit="ms").record(12.5)
    meter.create_observable_gauge("queue.depth", callbacks=[lambda _options: [_observation(7)]])
    meters.force_flush()
    meters.shutdown()
    metric_rows = service.blocks("metrics")
    metrics = {
        m.name: m
        for r in metric_rows
        for scope in ResourceMetrics.FromString(service.payload(r)).scope_metrics
        for m in scope.metrics
    }
    assert metrics["orders"].sum.data_points[0].as_int == 5
    assert metrics["latency"].histogram.data_points[0].sum == 12.5
    assert metrics["queue.depth"].gauge.data_points[0].as_int == 7
    assert {r["process_id"] for r in metric_rows} == {row["process_id"]}
    assert service.count("processes") == 1
    assert service.count("streams") == 3


def _observation(value):
    from opentelemetry.metrics import Observation

    return Observation(value)


def spec_json(message) -> bytes:
    """OTLP/JSON of a protobuf request as the spec wants it: hex ids, integer enums, int64 strings."""
    body = json_format.MessageToDict(message, use_integers_for_enums=True)

    def fix(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    fix(body)
    return json.dumps(body).encode()


def test_spec_json_of_sdk_spans_is_the_same_block_as_protobuf(service) -> None:
    memory = InMemorySpanExporter()
    spans = emit_spans(memory)
    request = encode_spans(spans)
    body = spec_json(request)
    assert b'"kind": 2' in body or b'"kind": 1' in body  # integer enums on the wire
    conn = http.client.HTTPConnection("127.0.0.1", service.http, timeout=30)
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"{}")
    conn.close()
    span_exporter = service.exporters("http")[0]
    assert span_exporter.export(spans) is SpanExportResult.SUCCESS  # protobuf, same content
    (row,) = service.blocks("trace")
    assert row["block_id"] == split_request(TRACES, request).blocks[0].block.block_id
