"""OTLP/gRPC receiver status codes and trailers (otlp.md §4.3, checklist §12)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest, RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from sirius.collector import ApiKeys, InflightBudget, OtlpLimits, OtlpOverloadedError, OtlpService

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
T0 = 1_750_000_000_000_000_000


class Grpc:
    def __init__(self, stack, **kwargs) -> None:
        kwargs.setdefault("limits", OtlpLimits())
        self.stack = stack
        self.service = OtlpService(stack.stack.lake, stack.stack.store, grpc_port=0, http_port=None, **kwargs)
        self.port = stack.call(self.service.start()).grpc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def call(self, method: str, body: bytes, **kwargs) -> bytes:
        return self.channel.unary_unary(method)(body, timeout=30, **kwargs)

    def fail(self, method: str, body: bytes, **kwargs) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            self.call(method, body, **kwargs)
        return info.value

    def blocks(self) -> int:
        return self.stack.call(self.stack.stack.lake.pool.fetchval("SELECT count(*) FROM blocks"))

    def close(self) -> None:
        self.channel.close()
        self.stack.call(self.service.stop())


@pytest.fixture
def grpc_factory(stack_factory):
    made: list[Grpc] = []

    def make(**kwargs) -> Grpc:
        made.append(Grpc(stack_factory(), **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()


def request(*spans: Span) -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"string_value": "grpc-test"}}]}
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=list(spans))])]
    ).SerializeToString()


def good_span(i: int = 1) -> Span:
    return Span(
        trace_id=b"t" * 16,
        span_id=i.to_bytes(8, "big"),
        name=f"s{i}",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 5,
    )


def details(error: grpc.RpcError) -> tuple[Status, dict]:
    trailers = dict(error.trailing_metadata() or ())
    return Status.FromString(trailers["grpc-status-details-bin"]), trailers


def test_three_services_accept_and_answer_empty_requests(grpc_factory) -> None:
    server = grpc_factory()
    assert ExportTraceServiceResponse.FromString(server.call(TRACES, b"")) == ExportTraceServiceResponse()
    assert ExportLogsServiceResponse.FromString(server.call(LOGS, b"")) == ExportLogsServiceResponse()
    assert ExportMetricsServiceResponse.FromString(server.call(METRICS, b"")) == ExportMetricsServiceResponse()
    assert ExportTraceServiceResponse.FromString(server.call(TRACES, request(good_span()))).ByteSize() == 0
    assert server.blocks() == 1


def test_undecodable_request_is_invalid_argument_with_bad_request(grpc_factory) -> None:
    error = grpc_factory().fail(TRACES, b"\x0a\xff\xff\xff")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ExportTraceServiceRequest" in error.details()
    status, _ = details(error)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad_request = BadRequest()
    assert status.details[0].Unpack(bad_request)


def test_partial_success(grpc_factory) -> None:
    server = grpc_factory()
    broken = Span(trace_id=b"short", span_id=b"x" * 8, name="bad", start_time_unix_nano=T0, end_time_unix_nano=T0)
    response = ExportTraceServiceResponse.FromString(server.call(TRACES, request(good_span(), broken)))
    assert response.partial_success.rejected_spans == 1
    assert "1 of 2 items" in response.partial_success.error_message


def test_bearer_auth_in_metadata(grpc_factory) -> None:
    server = grpc_factory(keys=ApiKeys((("ci", "k1"),)))
    error = server.fail(TRACES, request(good_span()))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    error = server.fail(TRACES, request(good_span()), metadata=(("authorization", "Bearer nope"),))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    server.call(TRACES, request(good_span()), metadata=(("authorization", "Bearer k1"),))
    assert server.blocks() == 1


def test_over_the_limit_is_resource_exhausted_even_when_compressed(grpc_factory) -> None:
    server = grpc_factory(limits=OtlpLimits(max_request_bytes=64 * 1024))
    big = request(Span(name="x" * (100 * 1024)))
    assert server.fail(TRACES, big).code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # ~200 bytes on the wire with gzip, 100 KiB once decompressed
    error = server.fail(TRACES, big, compression=grpc.Compression.Gzip)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.blocks() == 0
    server.call(TRACES, request(good_span()), compression=grpc.Compression.Gzip)
    assert server.blocks() == 1


def test_overload_is_unavailable_with_retry_info_in_both_trailers(grpc_factory) -> None:
    server = grpc_factory(limits=OtlpLimits(max_inflight_requests=0, retry_after_seconds=1.5))
    error = server.fail(TRACES, request(good_span()))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    status, trailers = details(error)
    standard = RetryInfo()
    assert status.details[0].Unpack(standard)
    assert standard.retry_delay.ToTimedelta().total_seconds() == 1.5
    bare = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])  # what the Python exporter reads
    assert bare == standard


class RefuseFirst(InflightBudget):
    """Refuses the first request with a short retry delay, then admits everything."""

    refusals = 0

    def admit(self):
        if self.refusals == 0:
            self.refusals += 1
            msg = "busy"
            raise OtlpOverloadedError(msg, retry_after=0.01)
        return super().admit()


def test_python_exporter_retries_after_unavailable_and_stores_once(grpc_factory) -> None:
    server = grpc_factory()
    server.service.budget = budget = RefuseFirst()
    server.stack.call(server.service.stop())
    server.port = server.stack.call(server.service.start()).grpc  # restart with the new budget
    provider = TracerProvider(resource=Resource.create({"service.name": "retry"}))
    span = provider.get_tracer("t").start_span("once")
    span.end()
    exporter = OTLPSpanExporter(endpoint=f"localhost:{server.port}", insecure=True)
    assert exporter.export([span]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert budget.refusals == 1
    assert server.blocks() == 1
