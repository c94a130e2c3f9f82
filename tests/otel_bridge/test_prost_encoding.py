"""Resource payloads are encoded exactly as Rust's prost encodes them (block ids depend on it)."""

from __future__ import annotations

import struct

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from sirius.otel_bridge import encode_resource


def tag(number: int, wire_type: int) -> bytes:
    return bytes([number << 3 | wire_type])


def ld(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return tag(number, 2) + bytes([len(payload)]) + payload


def fixed64(number: int, value: int) -> bytes:
    return tag(number, 1) + struct.pack("<q", value)


def varint(number: int, value: int) -> bytes:
    assert value < 128
    return tag(number, 0) + bytes([value])


def metrics_resource(point: NumberDataPoint) -> ResourceMetrics:
    metric = Metric(name="m", sum=Sum(data_points=[point], aggregation_temporality=1, is_monotonic=True))
    return ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[metric])])


def test_integer_points_with_exemplars_put_the_oneof_at_its_lowest_tag() -> None:
    exemplar = Exemplar(as_int=1, span_id=b"12345678", trace_id=b"T" * 16)
    point = NumberDataPoint(time_unix_nano=3, as_int=5, exemplars=[exemplar], flags=1)
    resource = metrics_resource(point)
    # prost: Exemplar fields in order 2, {3|6}, 4, 5, 7; NumberDataPoint 2, 3, {4|6}, 5, 7, 8.
    exemplar_bytes = fixed64(6, 1) + ld(4, b"12345678") + ld(5, b"T" * 16)
    point_bytes = fixed64(3, 3) + fixed64(6, 5) + ld(5, exemplar_bytes) + varint(8, 1)
    sum_bytes = ld(1, point_bytes) + varint(2, 1) + varint(3, 1)
    metric_bytes = ld(1, b"m") + ld(7, sum_bytes)
    expected = ld(2, ld(2, metric_bytes))
    assert resource.SerializeToString() != expected  # upb writes as_int after exemplars
    assert encode_resource(resource) == expected
    assert ResourceMetrics.FromString(expected) == resource


def test_histogram_exemplars_are_reordered_too() -> None:
    point = HistogramDataPoint(time_unix_nano=7, count=1, exemplars=[Exemplar(as_int=2, span_id=b"s" * 8)])
    resource = ResourceMetrics(
        scope_metrics=[ScopeMetrics(metrics=[Metric(name="h", histogram=Histogram(data_points=[point]))])]
    )
    encoded = encode_resource(resource)
    assert fixed64(6, 2) + ld(4, b"s" * 8) in encoded
    assert ResourceMetrics.FromString(encoded) == resource


def test_messages_without_moving_oneofs_serialise_as_protobuf_does() -> None:
    double_point = NumberDataPoint(
        time_unix_nano=3, as_double=1.5, exemplars=[Exemplar(as_double=1.0, span_id=b"x" * 8)]
    )
    int_point_no_exemplar = NumberDataPoint(time_unix_nano=3, as_int=4)
    for point in (double_point, int_point_no_exemplar):
        resource = ResourceMetrics(
            scope_metrics=[ScopeMetrics(metrics=[Metric(name="g", gauge=Gauge(data_points=[point]))])]
        )
        assert encode_resource(resource) == resource.SerializeToString()
    span = Span(trace_id=b"t" * 16, span_id=b"s" * 8, name="n", flags=256, start_time_unix_nano=1, end_time_unix_nano=2)
    spans = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
    assert encode_resource(spans) == spans.SerializeToString()


def test_unknown_fields_are_dropped_as_prost_drops_them() -> None:
    known = ResourceSpans(
        resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="svc"))]},
        scope_spans=[ScopeSpans(spans=[Span(name="n")])],
    )
    with_unknown = ResourceSpans.FromString(known.SerializeToString() + varint(15, 1) + ld(14, b"future"))
    assert with_unknown.SerializeToString() != known.SerializeToString()
    assert encode_resource(with_unknown) == known.SerializeToString()
