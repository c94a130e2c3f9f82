"""The receivers' wire-scanner path stores exactly what the upb path stores, and refuses what upb refuses.

A canonical request (what SDK encoders write) is split by the C scanner; the same request with
one non-canonical byte sequence (an explicit default value) takes the upb path. Both must land
on one block (same id, same object); a request upb refuses is refused with upb's reason.
"""

from __future__ import annotations

import http.client
import struct

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from sirius.collector import OtlpLimits, OtlpService, block_object_key
from sirius.otel_bridge import TRACES, encode_resource, encode_varint, split_request_bytes
from sirius.tracing import BlockPayload, payload_to_cbor

GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
T0 = 1_750_000_000_000_000_000


class Receivers:
    def __init__(self, stack) -> None:
        self.stack = stack
        self.service = OtlpService(stack.stack.lake, stack.stack.store, grpc_port=0, http_port=0, limits=OtlpLimits())
        self.ports = stack.call(self.service.start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.ports.grpc}")

    def grpc(self, body: bytes) -> bytes:
        return self.channel.unary_unary(GRPC_TRACES)(body, timeout=30)

    def http(self, body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports.http, timeout=30)
        try:
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def rows(self) -> list:
        return self.stack.call(self.stack.stack.lake.pool.fetch("SELECT * FROM blocks"))

    def object(self, row) -> bytes:
        key = block_object_key(row["process_id"], row["stream_id"], row["block_id"])
        return self.stack.call(self.stack.stack.store.get(key))

    def close(self) -> None:
        self.channel.close()
        self.stack.call(self.service.stop())


@pytest.fixture
def receivers(stack_factory):
    made = Receivers(stack_factory())
    yield made
    made.close()


def _request() -> ExportTraceServiceRequest:
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="wire"))])
    spans = [
        Span(trace_id=b"t" * 16, span_id=b"s" * 8, name="ok", start_time_unix_nano=T0, end_time_unix_nano=T0 + 9),
        Span(trace_id=b"t" * 15, span_id=b"s" * 8, name="bad id", start_time_unix_nano=T0 + 1, end_time_unix_nano=T0),
    ]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def _with_explicit_default(request: ExportTraceServiceRequest) -> bytes:
    # The same request with `schema_url = ""` written out at the end of its ResourceSpans: upb
    # reads it as the canonical request, the scanner leaves it to upb.
    resource = request.resource_spans[0].SerializeToString() + b"\x1a\x00"
    return b"\x0a" + encode_varint(len(resource)) + resource


def _len(data: bytes) -> bytes:
    assert len(data) < 128
    return bytes([len(data)])


def test_scanner_and_upb_paths_store_one_identical_block(receivers) -> None:
    request = _request()
    canonical = request.SerializeToString()
    twin = _with_explicit_default(request)
    assert canonical != twin
    assert ExportTraceServiceRequest.FromString(twin) == request
    assert split_request_bytes(TRACES, canonical) is not None  # the scanner's path
    assert split_request_bytes(TRACES, twin) is None  # the upb path

    status, body = receivers.http(canonical)
    assert status == 200, body
    from_grpc = ExportTraceServiceResponse.FromString(receivers.grpc(twin))
    assert ExportTraceServiceResponse.FromString(body) == from_grpc
    assert from_grpc.partial_success.rejected_spans == 1

    (row,) = receivers.rows()  # one block: same id from both paths
    expected = encode_resource(ExportTraceServiceRequest.FromString(canonical).resource_spans[0])
    assert receivers.object(row) == payload_to_cbor(BlockPayload(dependencies=b"", objects=expected))
    assert (row["begin_time"].timestamp(), row["nb_objects"]) == (pytest.approx((T0 + 1) / 1e9), 2)


def test_requests_upb_refuses_are_refused_with_its_reason_and_nothing_stored(receivers) -> None:
    span = b"\x2a\x02\xc3\x28"  # name = invalid UTF-8
    span += bytes([7 << 3 | 1]) + struct.pack("<Q", T0)
    scope = b"\x12" + _len(span) + span
    resource_spans = b"\x12" + _len(scope) + scope
    body = b"\x0a" + _len(resource_spans) + resource_spans
    status, reply = receivers.http(body)
    assert status == 400
    assert b"not a valid ExportTraceServiceRequest" in reply
    with pytest.raises(grpc.RpcError) as info:
        receivers.grpc(body)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ExportTraceServiceRequest" in (info.value.details() or "")
    assert receivers.rows() == []
    receivers.grpc(_request().SerializeToString())  # still serving
    assert len(receivers.rows()) == 1
