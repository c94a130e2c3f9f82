"""Export requests → process, stream and block (micromegas-wire.md §9.4-9.5)."""

from __future__ import annotations

import hashlib
import uuid

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from sirius.otel_bridge import (
    LOGS,
    METRICS,
    NS_OTEL_BLOCK_V1,
    STREAM_FORMAT_PROPERTY,
    TRACES,
    attribute_map,
    encode_resource,
    process_id_for_resource,
    split_request,
    stream_id_for,
    validate_otlp_block,
)
from sirius.tracing import Block, BlockPayload, current_process_info

T0 = 1_750_000_000_000_000_000
NOW = 1_760_000_000_000_000_000


def uuid5_of(namespace: uuid.UUID, data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.sha1(namespace.bytes + data).digest()[:16], version=5)


def clock() -> int:
    return NOW


def resource(**attrs) -> Resource:
    return Resource(
        attributes=[KeyValue(key=k.replace("__", "."), value=AnyValue(string_value=v)) for k, v in attrs.items()]
    )


def span(i: int, *, start: int | None = None, end: int | None = None, trace_id: bytes = b"t" * 16) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=i.to_bytes(8, "big"),
        name=f"s{i}",
        start_time_unix_nano=T0 + i if start is None else start,
        end_time_unix_nano=T0 + 10 * i + 100 if end is None else end,
    )


def test_one_block_per_non_empty_resource_with_reference_ids() -> None:
    a = ResourceSpans(
        resource=resource(service__name="a", host__name="h"), scope_spans=[ScopeSpans(spans=[span(1), span(2)])]
    )
    empty = ResourceSpans(resource=resource(service__name="empty"), scope_spans=[ScopeSpans()])
    b = ResourceSpans(resource=resource(service__name="b", host__name="h"), scope_spans=[ScopeSpans(spans=[span(3)])])
    split = split_request(TRACES, ExportTraceServiceRequest(resource_spans=[a, empty, b]), clock=clock)
    assert [blk.items for blk in split.blocks] == [2, 1]
    assert split.items == 3
    assert split.rejected == 0
    assert split.error_message == ""
    first = split.blocks[0]
    process_id = process_id_for_resource(attribute_map(a.resource.attributes))
    assert first.process.process_id == process_id == first.block.process_id
    assert first.stream.stream_id == stream_id_for(process_id, "traces") == first.block.stream_id
    assert first.stream.tags == ("trace",)
    assert first.stream.properties == {}
    payload = encode_resource(a)
    assert first.block.payload == BlockPayload(b"", payload)
    assert first.block.block_id == uuid5_of(NS_OTEL_BLOCK_V1, payload)
    # spans: min start / max end, ticks = absolute Unix ns
    assert (first.block.begin_time_ns, first.block.end_time_ns) == (T0 + 1, T0 + 120)
    assert (first.block.begin_ticks, first.block.end_ticks) == (T0 + 1, T0 + 120)
    assert (first.block.object_offset, first.block.nb_objects) == (0, 2)
    assert split.blocks[1].process.process_id != process_id


def test_same_request_gives_the_same_ids() -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource(service__name="a"), scope_spans=[ScopeSpans(spans=[span(1)])])]
    )
    one = split_request(TRACES, ExportTraceServiceRequest.FromString(request.SerializeToString()), clock=clock)
    two = split_request(
        TRACES, ExportTraceServiceRequest.FromString(request.SerializeToString()), clock=lambda: NOW + 5
    )
    assert one.blocks[0].block == two.blocks[0].block


def test_process_row_from_resource() -> None:
    attrs = resource(
        service__name="api",
        service__namespace="shop",
        host__name="web-1",
        os__description="Debian 12",
        host__cpu__model__name="EPYC",
        process__user__name="alice",
        process__creation__time="2026-01-02T03:04:05.123456789Z",
    )
    attrs.attributes.append(KeyValue(key="process.pid", value=AnyValue(int_value=42)))
    attrs.attributes.append(KeyValue(key="long", value=AnyValue(string_value="x" * 300)))
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=attrs, scope_spans=[ScopeSpans(spans=[span(1)])])]
    )
    info = split_request(TRACES, request, clock=clock).blocks[0].process
    assert info.exe == "shop/api"
    assert (info.username, info.realname, info.computer, info.distro, info.cpu_brand) == (
        "alice",
        "alice",
        "web-1",
        "Debian 12",
        "EPYC",
    )
    assert info.tsc_frequency == 1_000_000_000
    assert info.start_time_ns == info.start_ticks == 1_767_323_045_123_456_789
    assert info.parent_process_id is None
    assert info.properties["otel.resource.process.pid"] == "42"
    assert info.properties["otel.resource.service.name"] == "api"
    assert len(info.properties["otel.resource.long"]) == 300  # properties are not truncated


def test_process_start_falls_back_to_block_begin_and_text_is_truncated() -> None:
    attrs = resource(service__name="s" * 300, process__creation__time="not a time")
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=attrs, scope_spans=[ScopeSpans(spans=[span(1)])])]
    )
    info = split_request(TRACES, request, clock=clock).blocks[0].process
    assert info.start_time_ns == T0 + 1
    assert info.exe == "s" * 255


def test_rejected_spans_are_counted_but_kept_in_the_payload() -> None:
    spans = [span(1), span(2, trace_id=b"short"), span(3, start=0), span(4, end=0)]
    rs = ResourceSpans(resource=resource(service__name="a"), scope_spans=[ScopeSpans(spans=spans)])
    split = split_request(TRACES, ExportTraceServiceRequest(resource_spans=[rs]), clock=clock)
    assert (split.items, split.rejected) == (4, 3)
    assert "3 of 4 items" in split.error_message
    assert "16-byte trace_id" in split.error_message
    assert "non-zero start and end" in split.error_message
    assert split.blocks[0].block.nb_objects == 4
    assert ResourceSpans.FromString(split.blocks[0].block.payload.objects) == rs


def test_blocks_without_times_take_the_arrival_time() -> None:
    rs = ResourceSpans(resource=resource(service__name="a"), scope_spans=[ScopeSpans(spans=[span(1, start=0, end=0)])])
    block = split_request(TRACES, ExportTraceServiceRequest(resource_spans=[rs]), clock=clock).blocks[0].block
    assert (block.begin_time_ns, block.end_time_ns) == (NOW, NOW)
    logs = ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(body=AnyValue(string_value="x"))])])
    block = split_request(LOGS, ExportLogsServiceRequest(resource_logs=[logs]), clock=clock).blocks[0].block
    assert (block.begin_time_ns, block.end_time_ns) == (NOW, NOW)


def test_log_bounds_use_observed_time_as_fallback_and_reject_bad_ids() -> None:
    records = [
        LogRecord(time_unix_nano=T0 + 5),
        LogRecord(observed_time_unix_nano=T0 + 1),
        LogRecord(time_unix_nano=T0 + 9, trace_id=b"x" * 3),
        LogRecord(),
    ]
    logs = ResourceLogs(resource=resource(service__name="l"), scope_logs=[ScopeLogs(log_records=records)])
    split = split_request(LOGS, ExportLogsServiceRequest(resource_logs=[logs]), clock=clock)
    block = split.blocks[0]
    assert (block.block.begin_time_ns, block.block.end_time_ns) == (T0 + 1, T0 + 9)
    assert (split.items, split.rejected, block.block.nb_objects) == (4, 1, 4)
    assert block.stream.tags == ("log",)


def test_metrics_count_points_and_summary_fan_out() -> None:
    gauge = Metric(
        name="g",
        gauge=Gauge(data_points=[NumberDataPoint(time_unix_nano=T0 + 3, as_int=1), NumberDataPoint(as_double=2)]),
    )
    summary = Metric(name="s", summary=Summary(data_points=[SummaryDataPoint(time_unix_nano=T0 + 1, count=2, sum=3.0)]))
    no_data = Metric(name="nothing")
    rm = ResourceMetrics(
        resource=resource(service__name="m"), scope_metrics=[ScopeMetrics(metrics=[gauge, summary, no_data])]
    )
    split = split_request(METRICS, ExportMetricsServiceRequest(resource_metrics=[rm]), clock=clock)
    block = split.blocks[0]
    assert block.block.nb_objects == 2 + 4
    assert (split.items, split.rejected) == (3, 1)  # the point without time
    assert (block.block.begin_time_ns, block.block.end_time_ns) == (T0 + 1, T0 + 3)
    assert block.stream.tags == ("metrics",)
    empty = ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[no_data])])
    assert split_request(METRICS, ExportMetricsServiceRequest(resource_metrics=[empty]), clock=clock).blocks == ()


def test_in_process_mode_uses_the_given_process() -> None:
    process = current_process_info()
    rs = ResourceSpans(resource=resource(service__name="a"), scope_spans=[ScopeSpans(spans=[span(1)])])
    request = ExportTraceServiceRequest(resource_spans=[rs])
    split = split_request(TRACES, request, process=process, clock=clock)
    item = split.blocks[0]
    assert item.process is process
    assert item.block.process_id == process.process_id
    assert item.stream.stream_id == stream_id_for(process.process_id, "traces")
    assert item.stream.properties == {STREAM_FORMAT_PROPERTY: "otlp/v1/traces"}
    # native rules: ticks relative to the process start, at its frequency (1 GHz for Python)
    assert item.block.begin_ticks == T0 + 1 - process.start_time_ns
    # salted with the process id: two processes never share a block id
    other = split_request(TRACES, request, process=current_process_info(), clock=clock).blocks[0]
    assert other.block.block_id != item.block.block_id
    assert other.block.payload == item.block.payload


def test_validate_otlp_block() -> None:
    process = current_process_info()
    rs = ResourceSpans(scope_spans=[ScopeSpans(spans=[span(1)])])
    block = split_request(TRACES, ExportTraceServiceRequest(resource_spans=[rs]), process=process).blocks[0].block
    assert validate_otlp_block(block, "otlp/v1/traces") is None
    bad = Block(**{**{f: getattr(block, f) for f in Block.__slots__}, "payload": BlockPayload(b"", b"\xff\xff\xff")})
    assert "not a valid ResourceSpans" in validate_otlp_block(bad, "otlp/v1/traces")
    deps = Block(
        **{**{f: getattr(block, f) for f in Block.__slots__}, "payload": BlockPayload(b"x", block.payload.objects)}
    )
    assert "empty dependencies" in validate_otlp_block(deps, "otlp/v1/traces")
