"""One INFO line per new process, from the native ingestion routes and the OTLP receivers."""

from __future__ import annotations

import http.client
import logging
from urllib.parse import urlsplit

from native_samples import sample_process
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sirius.tracing import ProcessInfo, process_info_to_cbor

LOGGER = "sirius.collector.arrivals"


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


def _insert_process(url: str, process: ProcessInfo) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/ingestion/insert_process",
            body=process_info_to_cbor(process),
            headers={"Content-Type": "application/cbor"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_native_process_is_logged_once(stack_factory, caplog) -> None:
    stack = stack_factory()
    process = sample_process(exe="/usr/bin/billing", computer="host-9")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _insert_process(stack.url, process) == 200
        assert _insert_process(stack.url, process) == 200  # a retry: not new
    assert _lines(caplog) == [
        f"new process /usr/bin/billing: process_id={process.process_id} computer=host-9 user=alice "
        "via the ingestion service (native)"
    ]


def _spans(service: str) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "host.name": "node-3"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in ("a", "b"):
        with provider.get_tracer("t").start_as_current_span(name):
            pass
    return list(memory.get_finished_spans())


def test_otlp_processes_are_logged_once(stack_factory, caplog) -> None:
    stack = stack_factory()
    urls = {e.name: e.url for e in stack.endpoints}
    http_exporter = HttpSpanExporter(endpoint=f"{urls['otlp-http']}/v1/traces")
    grpc_exporter = GrpcSpanExporter(endpoint=urlsplit(urls["otlp-grpc"]).netloc, insecure=True)
    spans = _spans("checkout")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert http_exporter.export(spans[:1]) is SpanExportResult.SUCCESS
        assert http_exporter.export(spans[1:]) is SpanExportResult.SUCCESS
        assert grpc_exporter.export(_spans("payments")) is SpanExportResult.SUCCESS
    grpc_exporter.shutdown()
    lines = _lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("new process checkout: process_id=")
    assert lines[0].endswith(" computer=node-3 via OTLP traces")
    assert lines[1].startswith("new process payments: ")
