"""Property tests of the webhook and Firehose decoders: round trips, determinism, and clean refusals.

Every decoder either returns or raises ``OtlpInvalidRequestError`` / ``OtlpRequestTooLargeError``
(400 / 413 with a reason) on any input: never another exception (a 500).
"""

from __future__ import annotations

import base64
import contextlib
import doctest
import gzip
import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from sirius.collector import (
    OtlpInvalidRequestError,
    OtlpRequestTooLargeError,
    _cloudwatch_logs,
    _cloudwatch_metrics,
    _firehose,
    _webhook,
)
from sirius.otel_bridge import LOGS, attribute_map, attribute_text, encode_varint, split_request

REFUSED = (OtlpInvalidRequestError, OtlpRequestTooLargeError)
LIMIT = 1 << 20

text = st.text(max_size=40)
records = st.lists(st.binary(max_size=200), max_size=8)


def test_doctests() -> None:
    for module in (_firehose, _webhook):
        assert doctest.testmod(module).failed == 0, module.__name__


# -- Firehose envelope ---------------------------------------------------------------------


@given(records, text)
def test_envelope_round_trip(data: list[bytes], request_id: str) -> None:
    body = {"requestId": request_id, "timestamp": 1, "records": [{"data": base64.b64encode(d).decode()} for d in data]}
    envelope = _firehose.decode_envelope(json.dumps(body).encode())
    assert envelope == _firehose.FirehoseEnvelope(request_id, tuple(data))


@given(st.binary(max_size=300))
def test_envelope_of_any_bytes_is_decoded_or_refused(body: bytes) -> None:
    with contextlib.suppress(OtlpInvalidRequestError):
        _firehose.decode_envelope(body)


@given(st.recursive(st.none() | st.booleans() | st.integers() | text, lambda c: st.lists(c) | st.dictionaries(text, c)))
def test_envelope_of_any_json_is_decoded_or_refused(value: object) -> None:
    for candidate in (value, {"records": value}, {"records": [{"data": value}]}, {"requestId": value}):
        with contextlib.suppress(OtlpInvalidRequestError):
            _firehose.decode_envelope(json.dumps(candidate).encode())


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_length_delimited_round_trip(messages: list[bytes]) -> None:
    framed = b"".join(encode_varint(len(m)) + m for m in messages)
    assert _firehose.split_length_delimited(framed) == messages


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=4), st.data())
def test_truncated_framing_is_refused(messages: list[bytes], data: st.DataObject) -> None:
    framed = b"".join(encode_varint(len(m)) + m for m in messages)
    last = encode_varint(len(messages[-1])) + messages[-1]
    cut = data.draw(st.integers(1, len(last)))  # cut inside the last entry: a prefix or its bytes
    if cut == len(last):  # a cut on the entry's boundary: one message fewer
        assert _firehose.split_length_delimited(framed[:-cut]) == messages[:-1]
    else:
        with pytest.raises(OtlpInvalidRequestError, match=re.escape(f"message[{len(messages) - 1}]")):
            _firehose.split_length_delimited(framed[:-cut])


@given(st.binary(max_size=300))
def test_framing_of_any_bytes_is_split_or_refused(data: bytes) -> None:
    try:
        parts = _firehose.split_length_delimited(data)
    except OtlpInvalidRequestError:
        return
    assert sum(len(p) for p in parts) <= len(data)


# -- CloudWatch Metric Streams ---------------------------------------------------------------

namespaces = st.sampled_from(["AWS/EC2", "aws/ec2", "AWS/RDS", " AWS/S3 ", "ECS/ContainerInsights", "", None])


def metric(namespace: str | None, name: str, value: float) -> Metric:
    attributes = [] if namespace is None else [KeyValue(key="Namespace", value=AnyValue(string_value=namespace))]
    point = NumberDataPoint(attributes=attributes, time_unix_nano=1, as_double=value)
    return Metric(name=name, gauge=Gauge(data_points=[point]))


def stream_request(scopes: list[list[tuple[str | None, float]]], arn: str) -> ExportMetricsServiceRequest:
    attributes = [KeyValue(key="cloud.provider", value=AnyValue(string_value="aws"))]
    if arn:
        attributes.append(KeyValue(key="aws.exporter.arn", value=AnyValue(string_value=arn)))
    scope_metrics = [
        ScopeMetrics(metrics=[metric(ns, f"m{i}", v) for i, (ns, v) in enumerate(scope)]) for scope in scopes
    ]
    resource = ResourceMetrics(resource=Resource(attributes=attributes), scope_metrics=scope_metrics)
    return ExportMetricsServiceRequest(resource_metrics=[resource])


@given(
    st.lists(st.lists(st.tuples(namespaces, st.floats(allow_nan=False)), max_size=5), max_size=3),
    st.sampled_from(["arn:aws:cloudwatch:eu-west-1:1:metric-stream/s", ""]),
)
def test_metric_streams_rewrite_partitions_by_namespace(scopes: list, arn: str) -> None:
    request = stream_request(scopes, arn)
    once = _cloudwatch_metrics.rewrite_metric_streams(request)
    assert once.SerializeToString() == _cloudwatch_metrics.rewrite_metric_streams(request).SerializeToString()
    sent = sorted(m.SerializeToString() for s in request.resource_metrics[0].scope_metrics for m in s.metrics)
    kept = sorted(m.SerializeToString() for r in once.resource_metrics for s in r.scope_metrics for m in s.metrics)
    assert kept == sent  # every metric, once
    if not arn:
        assert once == request  # not a Metric Streams resource: unchanged
        return
    names = []
    for resource in once.resource_metrics:
        attrs = attribute_map(resource.resource.attributes)
        assert attribute_text(attrs["service.instance.id"]) == arn
        name = attribute_text(attrs["service.name"])
        names.append(name.lower())
        for scope in resource.scope_metrics:
            for m in scope.metrics:
                found = attribute_text(attribute_map(m.gauge.data_points[0].attributes).get("Namespace")).strip()
                assert (found or _cloudwatch_metrics.UNKNOWN_NAMESPACE).lower() == name.lower()
    assert len(names) == len(set(names))  # one resource per namespace, case-insensitively


@given(st.lists(st.binary(max_size=120), max_size=4))
def test_metric_stream_records_of_any_bytes_are_decoded_or_refused(data: list[bytes]) -> None:
    with contextlib.suppress(OtlpInvalidRequestError):
        _cloudwatch_metrics.decode_metric_stream_records(tuple(data))


@given(st.lists(st.lists(st.tuples(namespaces, st.floats(allow_nan=False)), max_size=4), max_size=2), st.randoms())
def test_metric_stream_records_round_trip(scopes: list, rnd: random.Random) -> None:
    message = stream_request(scopes, "arn:x").SerializeToString()
    copies = rnd.randint(1, 3)
    framed = (encode_varint(len(message)) + message) * copies
    decoded = _cloudwatch_metrics.decode_metric_stream_records((framed, b""))
    one = _cloudwatch_metrics.rewrite_metric_streams(ExportMetricsServiceRequest.FromString(message))
    assert list(decoded.resource_metrics) == list(one.resource_metrics) * copies


# -- CloudWatch Logs -----------------------------------------------------------------------

events = st.lists(st.tuples(text, st.integers(0, 2**53), text), max_size=5)


def logs_json(kind: str, group: str, stream: str, evs: list[tuple[str, int, str]]) -> bytes:
    body = {
        "messageType": kind,
        "owner": "123456789012",
        "logGroup": group,
        "logStream": stream,
        "subscriptionFilters": ["f"],
        "logEvents": [{"id": i, "timestamp": t, "message": m} for i, t, m in evs],
    }
    return json.dumps(body).encode()


@given(st.sampled_from(["DATA_MESSAGE", "CONTROL_MESSAGE"]), text, text, events)
def test_logs_record_round_trip(kind: str, group: str, stream: str, evs: list) -> None:
    budget = [LIMIT]
    decoded = _cloudwatch_logs.decode_logs_record(gzip.compress(logs_json(kind, group, stream, evs)), 0, budget)
    if kind == "CONTROL_MESSAGE" or not evs:
        assert decoded is None
        return
    assert decoded is not None
    assert (decoded.log_group, decoded.log_stream, decoded.owner) == (group, stream, "123456789012")
    assert [(e.id, e.timestamp_ms, e.message) for e in decoded.events] == evs
    request = _cloudwatch_logs.logs_request([decoded])
    records = request.resource_logs[0].scope_logs[0].log_records
    assert [(r.time_unix_nano, r.body.string_value) for r in records] == [
        (min(t * 1_000_000, 2**64 - 1), m) for _, t, m in evs
    ]  # saturated as Micromegas
    # deterministic: a retried record yields the same block id
    first = split_request(LOGS, request, clock=lambda: 1).blocks[0].block.block_id
    again = _cloudwatch_logs.logs_request(
        [_cloudwatch_logs.decode_logs_record(gzip.compress(logs_json(kind, group, stream, evs)), 0, [LIMIT])]
    )
    assert split_request(LOGS, again, clock=lambda: 2).blocks[0].block.block_id == first


@given(st.binary(max_size=200))
def test_logs_record_of_any_bytes_is_refused_cleanly(raw: bytes) -> None:
    for data in (raw, gzip.compress(raw)):
        with contextlib.suppress(REFUSED):
            _cloudwatch_logs.decode_logs_record(data, 0, [LIMIT])


@given(st.recursive(st.none() | st.booleans() | st.integers() | text, lambda c: st.lists(c) | st.dictionaries(text, c)))
def test_logs_record_of_any_json_is_refused_cleanly(value: object) -> None:
    shaped = {"messageType": "DATA_MESSAGE", "owner": "o", "logGroup": "g", "logStream": "s", "logEvents": value}
    for candidate in (value, shaped, {**shaped, "logEvents": [value]}):
        with contextlib.suppress(REFUSED):
            _cloudwatch_logs.decode_logs_record(gzip.compress(json.dumps(candidate).encode()), 0, [LIMIT])


@settings(max_examples=30)
@given(st.integers(10, 4000))
def test_logs_records_share_one_decompression_budget(size: int) -> None:
    raw = gzip.compress(logs_json("DATA_MESSAGE", "g", "s", [("e", 1, "x" * size)]))
    budget = [2 * size + 400]  # room for one record, not three
    outcome = []
    for index in range(3):
        try:
            _cloudwatch_logs.decode_logs_record(raw, index, budget)
            outcome.append("ok")
        except OtlpRequestTooLargeError:
            outcome.append("413")
    assert outcome[0] == "ok"
    assert outcome[-1] == "413"


# -- webhook -------------------------------------------------------------------------------

header_pairs = st.lists(st.tuples(st.binary(min_size=1, max_size=10), st.binary(max_size=20)), max_size=8)


@given(header_pairs, st.randoms())
def test_canonical_headers_do_not_depend_on_order_or_case(pairs: list[tuple[bytes, bytes]], rnd: random.Random) -> None:
    shuffled = [(k.upper() if rnd.random() < 0.5 else k, v) for k, v in pairs]
    rnd.shuffle(shuffled)
    assert _webhook.canonical_headers(shuffled) == _webhook.canonical_headers(pairs)


@given(st.binary(max_size=300), st.one_of(st.none(), text), st.one_of(st.none(), text), text)
def test_webhook_request_keeps_the_body(body: bytes, name: str | None, namespace: str | None, target: str) -> None:
    request = _webhook.webhook_request(name, namespace, target, body)
    (resource,) = request.resource_logs
    (scope,) = resource.scope_logs
    (record,) = scope.log_records
    assert record.body.string_value == body.decode("utf-8", errors="replace")
    assert (record.time_unix_nano, record.observed_time_unix_nano, scope.scope.name) == (0, 0, target)
    attrs = attribute_map(resource.resource.attributes)
    assert (attrs.get("service.name") is None) == (name is None)
    assert (attrs.get("service.namespace") is None) == (namespace is None)
    again = _webhook.webhook_request(name, namespace, target, body)
    ids = {
        split_request(LOGS, r, clock=c, extra_hash_input=b"h").blocks[0].block.block_id
        for r, c in ((request, lambda: 1), (again, lambda: 2))
    }
    assert len(ids) == 1  # a retry hashes to the same block


@given(
    st.lists(
        st.tuples(st.sampled_from([b"X-Micromegas-Target", b"x-micromegas-target", b"Other"]), st.binary(max_size=10)),
        max_size=4,
    )
)
def test_header_text_is_the_first_visible_ascii_value(pairs: list[tuple[bytes, bytes]]) -> None:
    found = _webhook.header_text(pairs, "X-Micromegas-Target")
    first = next((v for k, v in pairs if k.lower() == b"x-micromegas-target"), None)
    if first is None or any(not (0x20 <= b < 0x7F or b == 9) for b in first):
        assert found is None
    else:
        assert found == first.decode()
