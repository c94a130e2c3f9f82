"""OTLP-format streams registered through the native ``/ingestion/insert_*`` routes (in-process exporters)."""

from __future__ import annotations

import dataclasses
import http.client
from urllib.parse import urlsplit

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from sirius.otel_bridge import LOGS, STREAM_FORMAT_PROPERTY, split_request
from sirius.tracing import (
    BlockPayload,
    block_to_cbor,
    current_process_info,
    process_info_to_cbor,
    stream_info_to_cbor,
)


def post(url: str, route: str, body: bytes) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", f"/ingestion/{route}", body=body, headers={"Content-Type": "application/cbor"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def otlp_block():
    process = current_process_info()
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(time_unix_nano=1, severity_number=9)])])
        ]
    )
    (item,) = split_request(LOGS, request, process=process).blocks
    return process, item.stream, item.block


def test_stream_property_selects_the_otlp_format_and_blocks_are_checked(stack_factory) -> None:
    stack = stack_factory()
    process, stream, block = otlp_block()
    assert stream.properties == {STREAM_FORMAT_PROPERTY: "otlp/v1/logs"}
    assert post(stack.url, "insert_process", process_info_to_cbor(process))[0] == 200
    assert post(stack.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    corrupt = dataclasses.replace(block, payload=BlockPayload(b"", b"\xff\xff"))
    status, text = post(stack.url, "insert_block", block_to_cbor(corrupt))
    assert (status, "not a valid ResourceLogs" in text) == (400, True)
    assert post(stack.url, "insert_block", block_to_cbor(block))[0] == 200

    row = stack.call(stack.stack.lake.get_stream(stream.stream_id))
    assert (row.format, row.tags, dict(row.properties)) == (
        "otlp/v1/logs",
        ("log",),
        {STREAM_FORMAT_PROPERTY: "otlp/v1/logs"},
    )
    assert stack.call(stack.stack.lake.get_block(block.block_id)).nb_objects == 1


def test_unknown_stream_format_is_refused(stack_factory) -> None:
    stack = stack_factory()
    process, stream, _ = otlp_block()
    post(stack.url, "insert_process", process_info_to_cbor(process))
    bogus = dataclasses.replace(stream, properties={STREAM_FORMAT_PROPERTY: "parquet"})
    status, text = post(stack.url, "insert_stream", stream_info_to_cbor(bogus))
    assert status == 400
    assert "sirius.format='parquet'" in text
    assert stack.call(stack.stack.lake.get_stream(stream.stream_id)) is None
