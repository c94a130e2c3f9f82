"""OTLP body decoding without a server: compression under a limit, JSON quirks, replies, budget."""

from __future__ import annotations

import gzip
import json
import zlib

import lz4.frame
import pytest
import zstandard
from google.rpc.error_details_pb2 import BadRequest, RetryInfo
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from sirius.collector import (
    InflightBudget,
    OtlpInvalidRequestError,
    OtlpOverloadedError,
    OtlpRequestTooLargeError,
    OtlpUnavailableError,
    OtlpUnsupportedEncodingError,
)
from sirius.collector._otlp_codec import (
    JSON,
    PROTOBUF,
    decompress,
    encode_message,
    error_status,
    export_response,
    export_response_bytes,
    media_type,
    parse_request,
)
from sirius.otel_bridge import LOGS, METRICS, TRACES, SplitRequest

DATA = b"otlp " * 1000
LIMIT = 64 * 1024


def raw_deflate(data: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return encoder.compress(data) + encoder.flush()


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d)),
        ("lz4", lz4.frame.compress),
        ("identity", lambda d: d),
        ("", lambda d: d),
    ],
)
def test_codings_round_trip(coding, compress) -> None:
    assert decompress(compress(DATA), coding, LIMIT) == DATA


def test_concatenated_members_and_stacked_codings() -> None:
    assert decompress(gzip.compress(DATA) + gzip.compress(DATA), "gzip", LIMIT) == DATA * 2
    assert decompress(lz4.frame.compress(DATA) + lz4.frame.compress(DATA), "lz4", LIMIT) == DATA * 2
    assert decompress(gzip.compress(zlib.compress(DATA)), "deflate, gzip", LIMIT) == DATA


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d)),
        ("lz4", lz4.frame.compress),
    ],
)
def test_bombs_stop_at_the_limit(coding, compress) -> None:
    bomb = compress(b"\x00" * (16 * 1024 * 1024))
    with pytest.raises(OtlpRequestTooLargeError, match="after decompression"):
        decompress(bomb, coding, LIMIT)
    assert decompress(compress(b"\x00" * LIMIT), coding, LIMIT) == b"\x00" * LIMIT  # exactly the limit is fine


def test_plain_bodies_over_the_limit() -> None:
    with pytest.raises(OtlpRequestTooLargeError):
        decompress(b"x" * (LIMIT + 1), None, LIMIT)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd", "lz4"])
def test_corrupt_and_truncated_data(coding) -> None:
    with pytest.raises(OtlpInvalidRequestError, match=f"not valid {coding}"):
        decompress(b"definitely not compressed", coding, LIMIT)
    whole = {"gzip": gzip.compress, "deflate": zlib.compress, "lz4": lz4.frame.compress}.get(coding)
    if whole is not None:
        with pytest.raises(OtlpInvalidRequestError, match="truncated"):
            decompress(whole(DATA)[:-8], coding, LIMIT)


def test_unsupported_coding() -> None:
    with pytest.raises(OtlpUnsupportedEncodingError, match="snappy"):
        decompress(b"", "snappy", LIMIT)


def test_media_types() -> None:
    assert media_type("application/x-protobuf") == ("application/x-protobuf", PROTOBUF)
    assert media_type("Application/Protobuf") == ("application/protobuf", PROTOBUF)
    assert media_type("application/json;charset=UTF-8") == ("application/json", JSON)
    assert media_type("application/grpc") is None
    assert media_type(None) is None


def test_json_ids_are_hex_everywhere_they_occur() -> None:
    trace_id, span_id = "0102030405060708090a0b0c0d0e0f10", "a1a2a3a4a5a6a7a8"
    logs = {
        "resourceLogs": [
            {"scopeLogs": [{"logRecords": [{"traceId": trace_id, "spanId": span_id, "body": {"stringValue": "x"}}]}]}
        ]
    }
    record = parse_request(LOGS, json.dumps(logs).encode(), JSON).resource_logs[0].scope_logs[0].log_records[0]
    assert (record.trace_id.hex(), record.span_id.hex()) == (trace_id, span_id)
    exemplar = {"traceId": trace_id, "spanId": span_id, "asInt": "3", "timeUnixNano": 5}
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {"name": "h", "histogram": {"dataPoints": [{"count": 1, "exemplars": [exemplar]}]}},
                            {"name": "e", "exponentialHistogram": {"dataPoints": [{"exemplars": [exemplar]}]}},
                            {"name": "g", "gauge": {"dataPoints": [{"asInt": 7, "exemplars": [exemplar]}]}},
                        ]
                    }
                ]
            }
        ]
    }
    parsed = parse_request(METRICS, json.dumps(metrics).encode(), JSON).resource_metrics[0].scope_metrics[0].metrics
    assert parsed[0].histogram.data_points[0].exemplars[0].trace_id.hex() == trace_id
    assert parsed[1].exponential_histogram.data_points[0].exemplars[0].span_id.hex() == span_id
    assert parsed[2].gauge.data_points[0].exemplars[0].as_int == 3
    assert parsed[2].gauge.data_points[0].as_int == 7


def test_json_snake_case_enum_names_and_unknown_fields_are_tolerated() -> None:
    body = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "AA" * 16,
                                "span_id": "bb" * 8,
                                "kind": "SPAN_KIND_CLIENT",
                                "newField": [1, 2],
                            },
                            {"traceId": "cc" * 16, "spanId": "dd" * 8, "kind": 3, "startTimeUnixNano": 1.5e18},
                        ]
                    }
                ],
                "futureResourceField": True,
            }
        ]
    }
    spans = parse_request(TRACES, json.dumps(body).encode(), JSON).resource_spans[0].scope_spans[0].spans
    assert (spans[0].trace_id, spans[0].span_id, spans[0].kind) == (b"\xaa" * 16, b"\xbb" * 8, 3)
    assert (spans[1].kind, spans[1].start_time_unix_nano) == (3, 1_500_000_000_000_000_000)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}, "traceId must be a hex string"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abc"}]}]}]}, "spanId must be a hex string"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"links": [{"traceId": 12}]}]}]}]}, "traceId must be a hex"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}, "startTimeUnixNano"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": 1.5}]}]}]}, "startTimeUnixNano"),
    ],
)
def test_bad_json_values_are_invalid_requests(body, reason) -> None:
    with pytest.raises(OtlpInvalidRequestError, match=reason):
        parse_request(TRACES, json.dumps(body).encode(), JSON)


def test_deeply_nested_input_is_an_invalid_request_not_a_crash() -> None:
    with pytest.raises(OtlpInvalidRequestError):
        parse_request(TRACES, b"[" * 100_000 + b"]" * 100_000, JSON)
    value = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(150):  # AnyValue{array_value: ArrayValue{values: [AnyValue …]}} past the recursion limit (100)
        array = b"\x0a" + _varint(len(value)) + value
        value = b"\x2a" + _varint(len(array)) + array
    key_value = KeyValue(key="deep").SerializeToString() + b"\x12" + _varint(len(value)) + value
    span = b"\x4a" + _varint(len(key_value)) + key_value  # Span.attributes = 9
    scope = b"\x12" + _varint(len(span)) + span
    resource = b"\x12" + _varint(len(scope)) + scope
    body = b"\x0a" + _varint(len(resource)) + resource
    with pytest.raises(OtlpInvalidRequestError, match="not a valid"):
        parse_request(TRACES, body, PROTOBUF)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_error_statuses_carry_bad_request_or_retry_info() -> None:
    status = error_status(OtlpInvalidRequestError("bad ids"))
    assert (status.code, status.message) == (3, "bad ids")
    bad_request = BadRequest()
    assert status.details[0].Unpack(bad_request)
    status = error_status(OtlpUnavailableError("db down", retry_after=0.25))
    info = RetryInfo()
    assert status.code == 14
    assert status.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (0, 250_000_000)
    assert error_status(OtlpInvalidRequestError("x" * 10_000)).message.endswith("…")
    assert json.loads(encode_message(error_status(OtlpInvalidRequestError("e")), JSON))["code"] == 3


def test_inflight_budget_bounds_requests_and_bytes() -> None:
    budget = InflightBudget(max_requests=2, max_bytes=100, retry_after=2.0)
    first = budget.admit()
    first.reserve(150)  # alone in flight: a request larger than the byte budget still gets through
    second = budget.admit()
    with pytest.raises(OtlpOverloadedError) as refused:
        second.reserve(1)
    assert refused.value.retry_after == 2.0
    with pytest.raises(OtlpOverloadedError):
        budget.admit()
    second.release()
    first.release()
    first.release()  # idempotent
    assert (budget.in_flight_requests, budget.in_flight_bytes) == (0, 0)
    budget.admit().reserve(100)


@pytest.mark.parametrize("signal", [TRACES, LOGS, METRICS])
@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
@pytest.mark.parametrize(("items", "rejected"), [(512, 0), (0, 0), (512, 3)])
def test_export_response_bytes_are_the_encoded_response(signal, encoding, items, rejected) -> None:
    split = SplitRequest(blocks=(), items=items, rejected=rejected, reasons=("no time",) if rejected else ())
    expected = encode_message(export_response(signal, split), encoding)
    assert export_response_bytes(signal, split, encoding) == expected
    assert (expected in (b"", b"{}")) == (rejected == 0)
