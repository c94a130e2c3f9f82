"""A gRPC client on an HTTP/1.1 port: one clear WARNING per peer per minute, no tracebacks."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, InvalidURLError
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sirius.collector import HttpServer
from sirius.collector._protocol_mismatch import ServerErrorLogger, is_http2_preface_error


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def http_port() -> Iterator[int]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/traces", ok)
    runner = _Loop()
    server = HttpServer(app, "127.0.0.1", 0, service="OTLP/HTTP")
    port = runner.call(server.start())
    yield port
    runner.call(server.stop())
    runner.close()


def _spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("misdirected"):
        pass
    return memory.get_finished_spans()


def test_grpc_exporter_on_the_http_port_gets_one_line(http_port, caplog) -> None:
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{http_port}", insecure=True, timeout=3)
    with caplog.at_level(logging.DEBUG):
        # The exporter retries until its timeout: several connections, each refused by aiohttp.
        assert exporter.export(_spans()) == SpanExportResult.FAILURE
        assert exporter.export(_spans()) == SpanExportResult.FAILURE
    exporter.shutdown()
    ours = [r for r in caplog.records if r.name == "sirius.collector.http"]
    assert len(ours) == 1
    line = ours[0].getMessage()
    assert ours[0].levelno == logging.WARNING
    assert f"a gRPC (HTTP/2) client at 127.0.0.1 connected to the OTLP/HTTP port {http_port}" in line
    assert "OTLP gRPC port (default 4317)" in line
    assert ours[0].exc_info is None
    assert not [r for r in caplog.records if r.name == "aiohttp.server" and r.levelno >= logging.WARNING]


def test_one_line_per_peer_per_interval() -> None:
    now = [0.0]
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Capture()
    logging.getLogger("sirius.collector.http").addHandler(handler)
    try:
        log = ServerErrorLogger("ingestion", lambda: 9000, interval_seconds=60, clock=lambda: now[0])
        preface = BadHttpMessage("Pause on PRI/Upgrade")
        for peer, at in [("10.0.0.1", 0), ("10.0.0.1", 30), ("10.0.0.2", 31), ("10.0.0.1", 59.9), ("10.0.0.1", 60)]:
            now[0] = at
            log.exception("Error handling request from %s", peer, exc_info=preface)
    finally:
        logging.getLogger("sirius.collector.http").removeHandler(handler)
    assert [line.split(" connected")[0] for line in lines] == [
        "a gRPC (HTTP/2) client at 10.0.0.1",
        "a gRPC (HTTP/2) client at 10.0.0.2",
        "a gRPC (HTTP/2) client at 10.0.0.1",
    ]
    assert "ingestion port 9000" in lines[0]


def test_other_errors_go_to_aiohttp_unchanged(caplog) -> None:
    log = ServerErrorLogger("HTTP", lambda: 1)
    with caplog.at_level(logging.ERROR, logger="aiohttp.server"):
        log.exception("Error handling request from %s", "10.0.0.3", exc_info=BadHttpMessage("bad header"))
    assert [r.name for r in caplog.records] == ["aiohttp.server"]
    assert caplog.records[0].exc_info is not None


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (BadHttpMessage("Pause on PRI/Upgrade"), True),
        (BadStatusLine("PRI * HTTP/2.0"), True),
        (InvalidURLError("*"), True),
        (InvalidURLError("/x y"), False),
        (BadHttpMessage("Invalid header value char"), False),
        (ValueError("PRI/Upgrade"), False),
        (None, False),
    ],
)
def test_preface_detection(exc, expected: bool) -> None:
    assert is_http2_preface_error(exc) is expected
