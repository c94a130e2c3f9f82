"""The C wire scanner's split equals the upb path's, and it never vouches for what upb would not store."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import cbor2
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from sirius.collector._otlp_writer import otlp_payload_cbor
from sirius.otel_bridge import LOGS, METRICS, TRACES, Signal, SplitRequest, split_request, split_request_bytes
from sirius.otel_bridge._wire_schema_codegen import generate_header
from sirius.tracing import BlockPayload, payload_to_cbor

HEADER = Path(__file__).resolve().parents[2] / "otel_bridge" / "native" / "otlp_schema.h"
U64 = st.integers(0, 2**64 - 1)
TIMES = st.one_of(st.just(0), st.integers(1, 2**64 - 1), st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9))
IDS = st.one_of(
    st.binary(min_size=0, max_size=0), st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16)
)
TEXT = st.text(max_size=12)
INT32 = st.integers(-(2**31), 2**31 - 1)


def clock() -> int:
    return 1_750_000_000_000_000_000


def values(depth: int = 2) -> st.SearchStrategy[AnyValue]:
    leaves = st.one_of(
        st.builds(AnyValue),
        st.builds(AnyValue, string_value=TEXT),
        st.builds(AnyValue, bool_value=st.booleans()),
        st.builds(AnyValue, int_value=st.integers(-(2**63), 2**63 - 1)),
        st.builds(AnyValue, double_value=st.floats(allow_nan=False)),
        st.builds(AnyValue, bytes_value=st.binary(max_size=6)),
    )
    if depth == 0:
        return leaves
    inner = values(depth - 1)
    return st.one_of(
        leaves,
        st.builds(lambda v: AnyValue(array_value=ArrayValue(values=v)), st.lists(inner, max_size=2)),
        st.builds(lambda v: AnyValue(kvlist_value=KeyValueList(values=v)), st.lists(key_values(inner), max_size=2)),
    )


def key_values(value: st.SearchStrategy[AnyValue] | None = None) -> st.SearchStrategy[KeyValue]:
    keys = st.sampled_from(["service.name", "host.name", "process.pid", "service.instance.id", "k", ""])
    value = values(1) if value is None else value
    start = st.builds(
        KeyValue,
        key=st.sampled_from(["process.creation.time", "process.start_time"]),
        value=st.builds(
            AnyValue, string_value=st.sampled_from(["2025-06-15T12:00:00.5Z", "1969-12-31T23:59:59Z", "?"])
        ),
    )
    return st.one_of(st.builds(KeyValue, key=keys, value=value), st.builds(KeyValue, key=keys), start)


ATTRS = st.lists(key_values(), max_size=3)
RESOURCE = st.one_of(st.none(), st.builds(Resource, attributes=ATTRS, dropped_attributes_count=st.integers(0, 3)))
SCOPE = st.one_of(st.none(), st.builds(InstrumentationScope, name=TEXT, version=TEXT, attributes=ATTRS))

SPAN = st.builds(
    Span,
    trace_id=IDS,
    span_id=IDS,
    parent_span_id=IDS,
    name=TEXT,
    kind=st.integers(0, 5),
    start_time_unix_nano=TIMES,
    end_time_unix_nano=TIMES,
    attributes=ATTRS,
    flags=st.integers(0, 2**32 - 1),
    status=st.one_of(st.none(), st.builds(Status, message=TEXT, code=st.integers(0, 2))),
    events=st.lists(st.builds(Span.Event, time_unix_nano=TIMES, name=TEXT), max_size=2),
    links=st.lists(st.builds(Span.Link, trace_id=IDS, span_id=IDS, flags=st.integers(0, 3)), max_size=2),
)
LOG = st.builds(
    LogRecord,
    time_unix_nano=TIMES,
    observed_time_unix_nano=TIMES,
    severity_number=st.integers(0, 24),
    severity_text=TEXT,
    body=st.one_of(st.none(), values(1)),
    attributes=ATTRS,
    trace_id=IDS,
    span_id=IDS,
    event_name=TEXT,
)
EXEMPLARS = st.lists(
    st.one_of(
        st.builds(Exemplar, time_unix_nano=TIMES, as_double=st.floats(allow_nan=False), span_id=IDS, trace_id=IDS),
        st.builds(Exemplar, time_unix_nano=TIMES, as_int=st.integers(-5, 5), span_id=IDS, trace_id=IDS),
        st.builds(Exemplar, time_unix_nano=TIMES),
    ),
    max_size=2,
)
NUMBER_POINT = st.one_of(
    st.builds(NumberDataPoint, time_unix_nano=TIMES, as_double=st.floats(allow_nan=False), exemplars=EXEMPLARS),
    st.builds(NumberDataPoint, time_unix_nano=TIMES, as_int=st.integers(-(2**63), 2**63 - 1), exemplars=EXEMPLARS),
    st.builds(NumberDataPoint, time_unix_nano=TIMES, attributes=ATTRS, flags=st.integers(0, 1)),
)
HIST_POINT = st.builds(
    HistogramDataPoint,
    time_unix_nano=TIMES,
    count=U64,
    bucket_counts=st.lists(U64, max_size=3),
    explicit_bounds=st.lists(st.floats(allow_nan=False), max_size=3),
    exemplars=EXEMPLARS,
    **{k: st.one_of(st.none(), st.floats(allow_nan=False)) for k in ("sum", "min", "max")},
)
BUCKETS = st.one_of(
    st.none(),
    st.builds(
        ExponentialHistogramDataPoint.Buckets,
        offset=INT32,
        bucket_counts=st.lists(st.integers(0, 2**64 - 1), max_size=3),
    ),
)
EXP_POINT = st.builds(
    ExponentialHistogramDataPoint,
    time_unix_nano=TIMES,
    scale=st.integers(-10, 20),
    zero_count=st.integers(0, 9),
    positive=BUCKETS,
    negative=BUCKETS,
    exemplars=EXEMPLARS,
    zero_threshold=st.floats(allow_nan=False),
)
SUMMARY_POINT = st.builds(
    SummaryDataPoint,
    time_unix_nano=TIMES,
    count=U64,
    sum=st.floats(allow_nan=False),
    quantile_values=st.lists(
        st.builds(SummaryDataPoint.ValueAtQuantile, quantile=st.floats(0, 1), value=st.floats(allow_nan=False)),
        max_size=2,
    ),
)
METRIC = st.one_of(
    st.builds(Metric, name=TEXT, unit=TEXT),
    st.builds(Metric, name=TEXT, gauge=st.builds(Gauge, data_points=st.lists(NUMBER_POINT, max_size=3))),
    st.builds(
        Metric,
        name=TEXT,
        sum=st.builds(Sum, data_points=st.lists(NUMBER_POINT, max_size=3), is_monotonic=st.booleans()),
    ),
    st.builds(Metric, name=TEXT, histogram=st.builds(Histogram, data_points=st.lists(HIST_POINT, max_size=2))),
    st.builds(
        Metric,
        name=TEXT,
        exponential_histogram=st.builds(ExponentialHistogram, data_points=st.lists(EXP_POINT, max_size=2)),
    ),
    st.builds(Metric, name=TEXT, summary=st.builds(Summary, data_points=st.lists(SUMMARY_POINT, max_size=2))),
)


def _resources(kind: Any, scope_kind: Any, scopes_field: str, items_field: str, item: Any) -> Any:
    scope = st.builds(scope_kind, scope=SCOPE, schema_url=TEXT, **{items_field: st.lists(item, max_size=4)})
    return st.builds(kind, resource=RESOURCE, schema_url=TEXT, **{scopes_field: st.lists(scope, max_size=2)})


REQUESTS: dict[str, Any] = {
    "traces": st.builds(
        ExportTraceServiceRequest,
        resource_spans=st.lists(_resources(ResourceSpans, ScopeSpans, "scope_spans", "spans", SPAN), max_size=3),
    ),
    "logs": st.builds(
        ExportLogsServiceRequest,
        resource_logs=st.lists(_resources(ResourceLogs, ScopeLogs, "scope_logs", "log_records", LOG), max_size=3),
    ),
    "metrics": st.builds(
        ExportMetricsServiceRequest,
        resource_metrics=st.lists(
            _resources(ResourceMetrics, ScopeMetrics, "scope_metrics", "metrics", METRIC), max_size=3
        ),
    ),
}
SIGNAL_OF = {"traces": TRACES, "logs": LOGS, "metrics": METRICS}


def _normal(split: SplitRequest) -> tuple[Any, ...]:
    blocks = [
        (b.process, b.stream, b.block.block_id, bytes(b.block.payload.objects), b.items, b.rejected)
        for b in split.blocks
    ]
    times = [
        (b.block.nb_objects, b.block.begin_time_ns, b.block.end_time_ns, b.block.begin_ticks, b.block.end_ticks)
        for b in split.blocks
    ]
    return (blocks, times, split.items, split.rejected, split.reasons)


def _upb_split(signal: Signal, data: bytes, audience: str | None) -> SplitRequest:
    return split_request(signal, signal.request_type.FromString(data), audience=audience, clock=clock)


def _needs_prost_reorder(signal: Signal, data: bytes) -> bool:
    if signal is not METRICS:
        return False
    request = ExportMetricsServiceRequest.FromString(data)
    return any(r.SerializeToString() != _encode(r) for r in request.resource_metrics)


def _encode(resource: ResourceMetrics) -> bytes:
    from sirius.otel_bridge import encode_resource

    return encode_resource(resource)


def test_the_committed_schema_header_is_generated_from_the_installed_descriptors() -> None:
    assert HEADER.read_text() == generate_header()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(REQUESTS)), audience=st.sampled_from([None, "team-a"]))
def test_upb_encoded_requests_split_as_the_upb_path_does(data: st.DataObject, name: str, audience: str | None) -> None:
    signal = SIGNAL_OF[name]
    body = data.draw(REQUESTS[name]).SerializeToString()
    fast = split_request_bytes(signal, body, audience=audience, clock=clock)
    if fast is None:  # only metrics prost would reorder are left to the upb path
        assert _needs_prost_reorder(signal, body)
        return
    assert _normal(fast) == _normal(_upb_split(signal, body, audience))


def _mutate(body: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(body)
    for kind, position, value in edits:
        if not out:
            out.append(value)
            continue
        at = position % len(out)
        if kind == 0:
            out[at] = value
        elif kind == 1:
            out.insert(at, value)
        elif kind == 2:
            del out[at]
        else:
            del out[at:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(REQUESTS)), edits=EDITS)
def test_mutated_requests_are_vouched_for_only_when_upb_stores_the_same(
    data: st.DataObject, name: str, edits: list[tuple[int, int, int]]
) -> None:
    signal = SIGNAL_OF[name]
    body = _mutate(data.draw(REQUESTS[name]).SerializeToString(), edits)
    fast = split_request_bytes(signal, body, clock=clock)
    if fast is None:
        return
    try:
        upb = _upb_split(signal, body, None)
    except DecodeError as exc:  # pragma: no cover - the failure being tested for
        raise AssertionError(f"the scanner vouched for bytes upb refuses: {exc}") from exc
    assert _normal(fast) == _normal(upb)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(REQUESTS)), body=st.binary(max_size=200))
def test_random_bytes_never_crash_and_are_vouched_for_only_when_upb_agrees(name: str, body: bytes) -> None:
    signal = SIGNAL_OF[name]
    fast = split_request_bytes(signal, body, clock=clock)
    if fast is not None:
        assert _normal(fast) == _normal(_upb_split(signal, body, None))


def _ld(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def _spans_request(span: bytes) -> bytes:
    return _ld(1, _ld(2, _ld(2, span)))


GOOD_SPAN = (
    _ld(1, b"T" * 16)
    + _ld(2, b"S" * 8)
    + _ld(5, b"op")
    + bytes([7 << 3 | 1])
    + struct.pack("<Q", 10)
    + bytes([8 << 3 | 1])
    + struct.pack("<Q", 20)
)


def test_a_canonical_span_is_vouched_for_with_its_statistics() -> None:
    split = split_request_bytes(TRACES, _spans_request(GOOD_SPAN), clock=clock)
    assert split is not None
    (block,) = split.blocks
    assert (block.items, block.rejected, block.block.begin_time_ns, block.block.end_time_ns) == (1, 0, 10, 20)


def test_non_canonical_or_invalid_resources_are_left_to_upb() -> None:
    cases = {
        "explicit default": GOOD_SPAN + bytes([10 << 3, 0]),
        "unknown field": GOOD_SPAN + bytes([17 << 3, 1]),
        "descending fields": _ld(2, b"S" * 8) + _ld(1, b"T" * 16),
        "repeated singular": GOOD_SPAN + _ld(5, b"again"),
        "non-minimal varint": GOOD_SPAN + bytes([10 << 3, 0x81, 0x00]),
        "invalid UTF-8 name": _ld(1, b"T" * 16) + _ld(5, b"\xff"),
        "empty string written": _ld(1, b"T" * 16) + _ld(5, b""),
        "truncated": GOOD_SPAN[:-3],
    }
    for what, span in cases.items():
        assert split_request_bytes(TRACES, _spans_request(span), clock=clock) is None, what
    two_oneof_members = _ld(1, b"x") + bytes([2 << 3, 1])  # AnyValue string_value and bool_value
    attribute = _ld(1, b"k") + _ld(2, two_oneof_members)
    assert split_request_bytes(TRACES, _spans_request(GOOD_SPAN + _ld(9, attribute)), clock=clock) is None
    unknown_top_level = _spans_request(GOOD_SPAN) + bytes([2 << 3, 1])
    assert split_request_bytes(TRACES, unknown_top_level, clock=clock) is None


@given(
    st.binary(max_size=70_000).map(memoryview) | st.sampled_from([b"", b"x" * 23, b"x" * 24, b"x" * 256, b"x" * 65_536])
)
@settings(max_examples=60, deadline=None)
def test_payload_framing_is_payload_to_cbor(objects: bytes | memoryview) -> None:
    framed = otlp_payload_cbor(objects)
    assert framed == payload_to_cbor(BlockPayload(dependencies=b"", objects=bytes(objects)))
    assert cbor2.loads(framed) == {"dependencies": b"", "objects": bytes(objects)}
