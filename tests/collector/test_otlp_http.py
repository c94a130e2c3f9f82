"""OTLP/HTTP receiver conformance (otlp.md §12) over real sockets, PostgreSQL and a local object store."""

from __future__ import annotations

import base64
import copy
import gzip
import http.client
import json
import zlib
from types import SimpleNamespace

import lz4.frame
import pytest
import zstandard
from google.protobuf import json_format
from google.rpc.error_details_pb2 import BadRequest, RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from sirius.collector import OtlpLimits, OtlpService, block_object_key
from sirius.lakehouse import ObjectStoreError
from sirius.otel_bridge import TRACES, split_request
from sirius.tracing import payload_from_cbor

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "eee19b7ec3c1b173"
T0 = 1_750_000_000_000_000_000


def spec_json_traces(*, numbers: bool = False, extra: dict | None = None) -> dict:
    """A spec OTLP/JSON trace request (opentelemetry-proto examples/trace.json shape)."""
    start, end = (T0, T0 + 1_000) if numbers else (str(T0), str(T0 + 1_000))
    span = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "parentSpanId": PARENT_ID,
        "name": "I'm a server span",
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "kind": 2,
        "attributes": [
            {"key": "my.span.attr", "value": {"stringValue": "some value"}},
            {"key": "count", "value": {"intValue": 7 if numbers else "7"}},
        ],
        "links": [{"traceId": TRACE_ID.upper(), "spanId": PARENT_ID}],
        "status": {"code": 1},
    }
    span.update(extra or {})
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "my.service"}},
                        {"key": "service.instance.id", "value": {"stringValue": "i-42"}},
                    ]
                },
                "scopeSpans": [{"scope": {"name": "my.library", "version": "1.0.0"}, "spans": [span]}],
            }
        ]
    }


def proto_from_spec_json(body: dict) -> ExportTraceServiceRequest:
    """The protobuf request equal to a spec OTLP/JSON trace body (ids hex → bytes by hand)."""
    body = copy.deepcopy(body)
    for resource in body["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for item in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in item:
                            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()
    return json_format.ParseDict(body, ExportTraceServiceRequest())


class Otlp:
    """An OTLP service on the loop of a running stack (ports picked by the OS)."""

    def __init__(self, stack, service: OtlpService) -> None:
        self.stack = stack
        self.service = service
        ports = stack.call(service.start())
        self.http_port = ports.http
        self.grpc_port = ports.grpc

    def post(self, path: str, body: bytes, headers: dict[str, str], port: int | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http_port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return SimpleNamespace(
                status=response.status,
                headers={k.lower(): v for k, v in response.getheaders()},
                body=response.read(),
            )
        finally:
            conn.close()

    def rows(self, table: str) -> list:
        return self.stack.call(self.stack.stack.lake.pool.fetch(f"SELECT * FROM {table}"))

    def object(self, row) -> bytes:
        key = block_object_key(row["process_id"], row["stream_id"], row["block_id"])
        return self.stack.call(self.stack.stack.store.get(key))


@pytest.fixture
def otlp_factory(stack_factory):
    started: list[Otlp] = []

    def make(store=None, **kwargs) -> Otlp:
        stack = stack_factory()
        kwargs.setdefault("limits", OtlpLimits())
        service = OtlpService(stack.stack.lake, store or stack.stack.store, grpc_port=None, http_port=0, **kwargs)
        otlp = Otlp(stack, service)
        started.append(otlp)
        return otlp

    yield make
    for otlp in started:
        otlp.stack.call(otlp.service.stop())


@pytest.fixture
def otlp(otlp_factory) -> Otlp:
    return otlp_factory()


JSON_HEADERS = {"Content-Type": "application/json"}
PROTO_HEADERS = {"Content-Type": "application/x-protobuf"}


def json_status(body: bytes) -> Status:
    return json_format.Parse(body, Status())


def test_json_quirks_hex_ids_numbers_enums_and_unknown_fields(otlp) -> None:
    body = json.dumps(spec_json_traces(numbers=True, extra={"kind": "SPAN_KIND_SERVER", "someFutureField": {"x": 1}}))
    reply = otlp.post("/v1/traces", body.encode(), JSON_HEADERS)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert json.loads(reply.body) == {}
    (row,) = otlp.rows("blocks")
    resource = ResourceSpans.FromString(payload_from_cbor(otlp.object(row)).objects)
    span = resource.scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE_ID
    assert span.span_id.hex() == SPAN_ID
    assert span.parent_span_id.hex() == PARENT_ID
    assert span.links[0].trace_id.hex() == TRACE_ID  # hex is case-insensitive
    assert span.kind == 2
    assert span.start_time_unix_nano == T0
    assert span.attributes[1].value.int_value == 7
    assert row["begin_time"].timestamp() == pytest.approx(T0 / 1e9)


def test_json_and_protobuf_of_the_same_spans_are_one_block(otlp) -> None:
    as_json = json.dumps(spec_json_traces()).encode()
    as_numbers = json.dumps(spec_json_traces(numbers=True)).encode()
    as_proto = proto_from_spec_json(spec_json_traces()).SerializeToString()
    for payload, headers in ((as_json, JSON_HEADERS), (as_numbers, JSON_HEADERS), (as_proto, PROTO_HEADERS)):
        assert otlp.post("/v1/traces", payload, headers).status == 200
    assert len(otlp.rows("blocks")) == 1
    assert len(otlp.rows("processes")) == 1
    (stream,) = otlp.rows("streams")
    assert (list(stream["tags"]), stream["format"]) == (["trace"], "otlp/v1/traces")


def test_bad_hex_id_is_400_with_bad_request_in_json(otlp) -> None:
    body = json.dumps(spec_json_traces(extra={"traceId": "not-hex"})).encode()
    reply = otlp.post("/v1/traces", body, JSON_HEADERS)
    assert reply.status == 400
    status = json_status(reply.body)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "traceId must be a hex string" in status.message
    bad_request = BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].description == status.message
    assert otlp.rows("blocks") == []


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"\x0a\xff\xff", PROTO_HEADERS, "not a valid ExportTraceServiceRequest"),
        (b"{not json", JSON_HEADERS, "not valid JSON"),
        (b"[]", JSON_HEADERS, "must be a JSON object"),
        (b'{"resourceSpans": {}}', JSON_HEADERS, "not a valid OTLP/JSON"),
    ],
)
def test_undecodable_bodies_are_400_in_the_request_encoding(otlp, body, headers, reason) -> None:
    reply = otlp.post("/v1/traces", body, headers)
    assert reply.status == 400
    assert reply.headers["content-type"].startswith(headers["Content-Type"])
    status = json_status(reply.body) if headers is JSON_HEADERS else Status.FromString(reply.body)
    assert reason in status.message


def test_content_type_dispatch_and_echo(otlp) -> None:
    reply = otlp.post("/v1/logs", b"", {"Content-Type": "application/json; charset=utf-8"})
    assert (reply.status, reply.headers["content-type"].split(";")[0], reply.body) == (200, "application/json", b"{}")
    reply = otlp.post("/v1/metrics", b"", PROTO_HEADERS)
    assert (reply.status, reply.headers["content-type"].split(";")[0]) == (200, "application/x-protobuf")
    assert ExportMetricsServiceResponse.FromString(reply.body) == ExportMetricsServiceResponse()
    for content_type in ("text/plain", "application/grpc"):
        reply = otlp.post("/v1/logs", b"{}", {"Content-Type": content_type})
        assert (reply.status, reply.headers["content-type"].split(";")[0]) == (415, "application/x-protobuf")
        refusal = Status.FromString(reply.body)
        assert refusal.code == 3  # INVALID_ARGUMENT
        assert content_type in refusal.message
        assert "application/x-protobuf or application/json" in refusal.message
    conn = http.client.HTTPConnection("127.0.0.1", otlp.http_port, timeout=10)
    conn.request("GET", "/v1/traces")
    assert conn.getresponse().status == 405
    conn.close()
    assert otlp.post("/v1/profiles", b"", PROTO_HEADERS).status == 404


def test_empty_requests_succeed_and_store_nothing(otlp) -> None:
    empty_resource = ExportLogsServiceRequest(resource_logs=[{"resource": {}, "scope_logs": [{}]}])
    for body, headers in (
        (b"", PROTO_HEADERS),
        (b"{}", JSON_HEADERS),
        (empty_resource.SerializeToString(), PROTO_HEADERS),
    ):
        reply = otlp.post("/v1/logs", body, headers)
        assert reply.status == 200
    assert ExportLogsServiceResponse.FromString(reply.body) == ExportLogsServiceResponse()
    assert otlp.rows("blocks") == []
    assert otlp.rows("processes") == []


def test_partial_success_reports_spans_views_will_drop(otlp) -> None:
    body = spec_json_traces()
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(copy.deepcopy(spans[0]), spanId="abcd", name="short id"))
    spans.append(dict(copy.deepcopy(spans[0]), startTimeUnixNano="0", name="no start"))
    reply = otlp.post("/v1/traces", json.dumps(body).encode(), JSON_HEADERS)
    assert reply.status == 200
    partial = json.loads(reply.body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "2 of 3 items" in partial["errorMessage"]
    proto_reply = otlp.post("/v1/traces", proto_from_spec_json(body).SerializeToString(), PROTO_HEADERS)
    response = ExportTraceServiceResponse.FromString(proto_reply.body)
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == partial["errorMessage"]
    (row,) = otlp.rows("blocks")  # the same spans: one block; everything is stored, views drop the rest
    assert row["nb_objects"] == 3


def trace_request_bytes() -> bytes:
    return proto_from_spec_json(spec_json_traces()).SerializeToString()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
        ("lz4", lz4.frame.compress),
        ("identity", lambda data: data),
    ],
)
def test_compressed_bodies(otlp, encoding, compress) -> None:
    raw = trace_request_bytes()
    reply = otlp.post("/v1/traces", compress(raw), {**PROTO_HEADERS, "Content-Encoding": encoding})
    assert reply.status == 200, reply.body
    (row,) = otlp.rows("blocks")
    expected = split_request(TRACES, ExportTraceServiceRequest.FromString(raw)).blocks[0].block
    assert row["block_id"] == expected.block_id


def test_unsupported_or_corrupt_compression(otlp) -> None:
    reply = otlp.post("/v1/traces", b"\x00", {**PROTO_HEADERS, "Content-Encoding": "snappy"})
    assert reply.status == 415
    assert "snappy" in Status.FromString(reply.body).message
    reply = otlp.post("/v1/traces", b"not gzip", {**PROTO_HEADERS, "Content-Encoding": "gzip"})
    assert reply.status == 400
    assert "not valid gzip" in Status.FromString(reply.body).message


def test_size_limit_applies_after_decompression(otlp_factory) -> None:
    otlp = otlp_factory(limits=OtlpLimits(max_request_bytes=64 * 1024))
    bomb = gzip.compress(b"\x00" * (1024 * 1024))  # 1 KiB on the wire, 1 MiB decompressed
    reply = otlp.post("/v1/traces", bomb, {**PROTO_HEADERS, "Content-Encoding": "gzip"})
    assert reply.status == 413
    assert "after decompression" in Status.FromString(reply.body).message
    reply = otlp.post("/v1/traces", b"\x00" * (64 * 1024 + 1), PROTO_HEADERS)
    assert reply.status == 413
    assert otlp.post("/v1/traces", trace_request_bytes(), PROTO_HEADERS).status == 200


def test_default_limit_is_64_mib_after_decompression(otlp) -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * (64 * 1024 * 1024 + 1))
    reply = otlp.post("/v1/logs", bomb, {**JSON_HEADERS, "Content-Encoding": "zstd"})
    assert reply.status == 413
    assert reply.headers["content-type"].split(";")[0] == "application/json"
    assert str(64 * 1024 * 1024) in json_status(reply.body).message


def test_bearer_auth(otlp_factory) -> None:
    from sirius.collector import ApiKeys

    otlp = otlp_factory(keys=ApiKeys((("ci", "s3cret"),)))
    body = trace_request_bytes()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        reply = otlp.post("/v1/traces", body, {**PROTO_HEADERS, **headers})
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert Status.FromString(reply.body).code == 16  # UNAUTHENTICATED
    assert otlp.post("/v1/traces", body, {**PROTO_HEADERS, "Authorization": "Bearer s3cret"}).status == 200
    assert len(otlp.rows("blocks")) == 1


def test_overload_is_429_with_retry_after(otlp_factory) -> None:
    otlp = otlp_factory(limits=OtlpLimits(max_inflight_requests=0, retry_after_seconds=2.5))
    reply = otlp.post("/v1/traces", b"{}", JSON_HEADERS)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "3"
    status = json_status(reply.body)
    assert status.code == 14  # UNAVAILABLE
    info = RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToTimedelta().total_seconds() == 2.5
    assert reply.headers["content-type"].split(";")[0] == "application/json"
    reply = otlp.post("/v1/traces", b"", PROTO_HEADERS)
    assert (reply.status, reply.headers["content-type"].split(";")[0]) == (429, "application/x-protobuf")
    assert Status.FromString(reply.body).code == 14


class FailingStore:
    """An object store whose writes fail (an S3 outage)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    async def put_if_absent(self, key, data):
        raise ObjectStoreError("bucket unreachable")

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_storage_failure_is_503_with_retry_after_and_nothing_acknowledged(stack_factory, otlp_factory) -> None:
    probe = stack_factory()
    otlp = otlp_factory(store=FailingStore(probe.stack.store))
    reply = otlp.post("/v1/traces", trace_request_bytes(), PROTO_HEADERS)
    assert reply.status == 503
    assert reply.headers["retry-after"] == "1"
    status = Status.FromString(reply.body)
    assert status.code == 14
    assert "bucket unreachable" in status.message
    assert otlp.rows("blocks") == []


def test_retried_requests_are_stored_once(otlp) -> None:
    body = trace_request_bytes()
    assert [otlp.post("/v1/traces", body, PROTO_HEADERS).status for _ in range(3)] == [200, 200, 200]
    assert len(otlp.rows("blocks")) == 1
    keys = otlp.stack.call(otlp.stack.stack.store.list_keys("blobs/"))
    assert len(keys) == 1


def test_ingestion_port_serves_otlp_with_its_auth(stack_factory, monkeypatch) -> None:
    monkeypatch.setenv("MICROMEGAS_API_KEYS", json.dumps([{"name": "ci", "key": "k1"}]))
    stack = stack_factory()
    ingestion = Otlp.__new__(Otlp)  # the stack's own ingestion port, no OTLP service
    ingestion.stack, ingestion.http_port = stack, int(stack.url.rsplit(":", 1)[1])
    body = json.dumps(spec_json_traces()).encode()
    reply = ingestion.post("/ingestion/otlp/v1/traces", body, JSON_HEADERS)
    assert reply.status == 401
    assert json_status(reply.body).code == 16
    reply = ingestion.post("/ingestion/otlp/v1/traces", body, {**JSON_HEADERS, "Authorization": "Bearer k1"})
    assert reply.status == 200
    assert ingestion.post("/ingestion/otlp/v1/logs", b"", {**PROTO_HEADERS, "Authorization": "Bearer k1"}).status == 200
    (row,) = ingestion.rows("blocks")
    assert row["block_id"] == split_request(TRACES, proto_from_spec_json(spec_json_traces())).blocks[0].block.block_id
