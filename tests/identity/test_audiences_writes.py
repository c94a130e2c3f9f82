"""Audiences on the write side: ingestion stamps them, and a writer never adds to another audience's process.

Keys minted for ``team-a`` and ``team-b`` write through the native routes and the OTel SDK
exporters of a real stack. Ingestion stamps ``micromegas.audience`` on the processes and streams
from the key (a client-supplied value is dropped). A ``team-a`` key that re-registers, extends
with a stream, or appends a block to a ``team-b`` process is refused with 403 and nothing is
stored; a ``team-a`` key that registers first the process id ``team-b``'s OTel producer derives
makes that producer's exports fail (PERMISSION_DENIED / 403) rather than land in ``team-a``.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _audience_lake import AudienceLake, build, export_spans, native_status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sirius.lakehouse import AUDIENCE_PROPERTY
from sirius.otel_bridge import attribute_map, process_id_for_resource
from sirius.tracing import (
    LogMetadata,
    StreamInfo,
    TransitWriter,
    block_to_cbor,
    current_process_info,
    process_info_to_cbor,
    stream_info_to_cbor,
)


@pytest.fixture
def lake(stack_factory: Any, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> AudienceLake:
    return build(stack_factory, pg_dsn, capsys)


def _rows(lake: AudienceLake, sql: str, *args: object) -> list[Any]:
    return lake.stack.call(lake.stack.stack.lake.pool.fetch(sql, *args))


def _native_log_stream(lake: AudienceLake, audience: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The process and log stream ``audience``'s native sink registered."""
    rows = _rows(
        lake,
        "SELECT s.process_id, s.stream_id FROM streams s JOIN processes p USING (process_id)"
        " WHERE 'log' = ANY(s.tags) AND s.format = 'micromegas-transit'"
        " AND EXISTS (SELECT 1 FROM unnest(p.properties) x WHERE x.key = $1 AND x.value = $2)",
        AUDIENCE_PROPERTY,
        audience,
    )
    assert len(rows) == 1
    return rows[0]["process_id"], rows[0]["stream_id"]


def _counts(lake: AudienceLake) -> tuple[int, int, int]:
    row = _rows(
        lake, "SELECT (SELECT count(*) FROM processes), (SELECT count(*) FROM streams), (SELECT count(*) FROM blocks)"
    )[0]
    return row[0], row[1], row[2]


def test_ingestion_stamps_the_key_audience_on_processes_and_streams(lake: AudienceLake) -> None:
    stamps = _rows(
        lake,
        "SELECT t, (SELECT x.value FROM unnest(properties) x WHERE x.key = $1) AS audience,"
        " (SELECT count(*) FROM unnest(properties) x WHERE x.key LIKE 'micromegas.%') AS reserved FROM"
        " (SELECT 'process' AS t, properties FROM processes UNION ALL SELECT 'stream', properties FROM streams) r",
        AUDIENCE_PROPERTY,
    )
    assert {row["t"] for row in stamps} == {"process", "stream"}
    # every row carries exactly one reserved property, written by ingestion from the key: the
    # native sink's forged ``micromegas.audience`` is gone
    assert {row["audience"] for row in stamps} == {"team-a", "team-b"}
    assert {row["reserved"] for row in stamps} == {1}
    # blocks are their process's: each block's process is stamped with the audience that wrote it
    blocks = _rows(lake, "SELECT count(*) FROM blocks b LEFT JOIN processes p USING (process_id) WHERE p IS NULL")
    assert blocks[0][0] == 0


def test_a_write_to_another_audience_process_is_refused_with_403_and_stores_nothing(lake: AudienceLake) -> None:
    key_a = lake.writers["team-a"]
    process_b, stream_b = _native_log_stream(lake, "team-b")
    before = _counts(lake)
    objects_before = set(lake.stack.call(lake.stack.stack.lakehouse.store.list_keys("blobs/")))

    # insert_process: the first registration fixed the audience; another audience cannot take it over
    status, text = native_status(
        lake.urls, key_a, "insert_process", process_info_to_cbor(current_process_info(process_id=process_b))
    )
    assert status == 403
    assert f"process {process_b} belongs to another audience" in text
    assert "team-b" not in text  # the owner is not revealed

    # insert_stream: a new stream for team-b's process
    stream = StreamInfo(process_id=process_b, stream_id=uuid.uuid4(), dependencies_metadata=(), objects_metadata=(),
                        tags=("log",), properties={})  # fmt: skip
    status, text = native_status(lake.urls, key_a, "insert_stream", stream_info_to_cbor(stream))
    assert (status, f"process {process_b} belongs to another audience" in text) == (403, True)

    # insert_block: a well-formed block for team-b's existing log stream
    writer = TransitWriter(current_process_info(process_id=process_b), "log", stream_id=stream_b)
    writer.log_string(LogMetadata("{}", target="intruder"), "injected", ticks=1)
    block = writer.seal()
    status, text = native_status(lake.urls, key_a, "insert_block", block_to_cbor(block))
    assert (status, f"process {process_b} belongs to another audience" in text) == (403, True)

    assert _counts(lake) == before
    assert not _rows(lake, "SELECT 1 FROM blocks WHERE block_id = $1", block.block_id)
    assert set(lake.stack.call(lake.stack.stack.lakehouse.store.list_keys("blobs/"))) == objects_before

    # the owner's own key still writes to it (same audience: idempotent registration, new block)
    key_b = lake.writers["team-b"]
    assert native_status(lake.urls, key_b, "insert_process", process_info_to_cbor(current_process_info(process_id=process_b)))[0] == 200  # fmt: skip
    assert native_status(lake.urls, key_b, "insert_block", block_to_cbor(block))[0] == 200
    assert _rows(lake, "SELECT 1 FROM blocks WHERE block_id = $1", block.block_id)


def _squat_id(service: str, audience: str) -> uuid.UUID:
    """The process id OTLP ingestion derives for the SDK's resource of ``service`` under ``audience``."""
    attributes = Resource.create({"service.name": service}).attributes
    values = [KeyValue(key=k, value=AnyValue(string_value=str(v))) for k, v in attributes.items()]
    return process_id_for_resource(attribute_map(values), audience)


def _otlp_http_status(lake: AudienceLake, key: str, service: str) -> tuple[int, bytes]:
    """Status and body of a raw OTLP/HTTP trace export (the SDK's own encoding) of one span of ``service``."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("audiences").start_as_current_span("span"):
        pass
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{lake.urls['otlp-http']}/v1/traces", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_process_id_registered_by_another_audience_refuses_the_otlp_producer(lake: AudienceLake) -> None:
    # the derivation the test uses is the server's: team-b's producer of the fixture is there
    assert lake.owner[str(_squat_id("svc-team-b", "team-b"))] == "team-b"
    squatted = _squat_id("svc-squat", "team-b")
    info = process_info_to_cbor(current_process_info(process_id=squatted))
    assert native_status(lake.urls, lake.writers["team-a"], "insert_process", info)[0] == 200
    before = _counts(lake)

    key_b = lake.writers["team-b"]
    status, body = _otlp_http_status(lake, key_b, "svc-squat")
    assert status == 403
    assert f"process {squatted} belongs to another audience".encode() in body
    assert export_spans(lake.urls, key_b, "svc-squat", "grpc") == "FAILURE"
    assert export_spans(lake.urls, key_b, "svc-squat", "http") == "FAILURE"
    assert _counts(lake) == before
    assert not _rows(lake, "SELECT 1 FROM streams WHERE process_id = $1", squatted)
    # team-b's other producers are unaffected
    assert _otlp_http_status(lake, key_b, "svc-elsewhere")[0] == 200
