"""Adversarial review of the HTTP fast lane (``_fast_connection.py``): framing, limits, slow clients.

Each test runs the ingestion service's app three ways, as ``test_fast_lane.py`` does (the fast
lane on uvloop and on asyncio's loop, and aiohttp alone): the fast lane must answer hostile
requests as aiohttp does — refuse oversized heads, refuse ambiguous framing, and not keep a
connection whose head never completes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sirius.collector import ApiKeys, HttpServer, IngestionLimits, IngestionService

KEY = "s3cret"
AUTH = f"Authorization: Bearer {KEY}"
OTLP = "/ingestion/otlp/v1/traces"
MODES = [("fast-lane", True, "auto"), ("fast-lane-asyncio", True, "asyncio"), ("aiohttp", False, "auto")]
FAST_MODES = [mode for mode in MODES if mode[1]]
"""The fast lane's own behaviour (timers, handler tasks): its two loops, not aiohttp's lane."""


@pytest.fixture(params=MODES, ids=[mode[0] for mode in MODES])
def server(request, stack_factory, monkeypatch) -> Iterator[SimpleNamespace]:
    _, fast, loop = request.param
    monkeypatch.setenv("SIRIUS_EVENT_LOOP", loop)
    stack = stack_factory()
    service = IngestionService(
        stack.stack.lake, stack.stack.store, ApiKeys((("ci", KEY),)), limits=IngestionLimits(max_body_bytes=1 << 20)
    )
    web_server = HttpServer(service.make_app(), "127.0.0.1", 0, fast_lane=fast)
    port = stack.call(web_server.start())
    yield SimpleNamespace(stack=stack, http=web_server, port=port)
    stack.call(web_server.stop())


def _spans() -> bytes:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "review"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("work"):
        pass
    return encode_spans(memory.get_finished_spans()).SerializeToString()


def _head(*lines: str) -> bytes:
    return ("\r\n".join((f"POST {OTLP} HTTP/1.1", "Host: 127.0.0.1", AUTH, *lines)) + "\r\n\r\n").encode()


def _status(sock: socket.socket) -> int | None:
    """The status of the first answer, or None when the server closed without one."""
    reader = sock.makefile("rb")
    line = reader.readline()
    return int(line.split()[1]) if line else None


def _exchange(port: int, data: bytes) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        return _status(sock)


def test_a_header_line_longer_than_aiohttps_limit_is_refused(server) -> None:
    """aiohttp refuses a header field over 8190 bytes (400); the fast lane must not accept it."""
    body = _spans()
    request = _head("Content-Type: application/x-protobuf", f"X-Big: {'a' * 20000}", f"Content-Length: {len(body)}")
    assert _exchange(server.port, request + body) in (400, 431, None)


def test_more_header_fields_than_aiohttps_limit_are_refused(server) -> None:
    """aiohttp refuses more than 32768 header fields; an unbounded head is memory the client chooses."""
    body = _spans()
    many = [f"X-{i}: v" for i in range(40000)]
    request = _head("Content-Type: application/x-protobuf", *many, f"Content-Length: {len(body)}")
    assert _exchange(server.port, request + body) in (400, 431, None)


def test_content_length_with_transfer_encoding_is_refused(server) -> None:
    """Both framings (a smuggling vector behind a proxy that picks the other one): 400 and close."""
    body = _spans()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = _head(
        "Content-Type: application/x-protobuf", f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"
    )
    assert _exchange(server.port, request + chunked) in (400, None)


def test_a_second_transfer_encoding_header_is_not_ignored(server) -> None:
    """``Transfer-Encoding: identity`` then ``chunked``: never framed as an empty body followed by a request."""
    body = _spans()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = _head("Content-Type: application/x-protobuf", "Transfer-Encoding: identity", "Transfer-Encoding: chunked")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request + chunked)
        reader = sock.makefile("rb")
        statuses = []
        while line := reader.readline():
            if line.startswith(b"HTTP/"):
                statuses.append(int(line.split()[1]))
    # One request, answered once (200, or refused as ambiguous), never two answers.
    assert len(statuses) == 1, statuses


@pytest.mark.parametrize("server", FAST_MODES, indirect=True, ids=[mode[0] for mode in FAST_MODES])
def test_a_head_that_never_completes_is_closed(server, monkeypatch) -> None:
    """Slowloris: a partial head must not hold a connection for ever (the keep-alive timer re-armed)."""
    import sirius.collector._fast_connection as fast_connection

    monkeypatch.setattr(fast_connection, "KEEPALIVE_SECONDS", 0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST " + OTLP.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        assert closed, "a connection with a partial head is still open after 40x the keep-alive timeout"


def test_two_different_content_lengths_are_refused(server) -> None:
    body = _spans()
    request = _head(
        "Content-Type: application/x-protobuf", f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 10}"
    )
    assert _exchange(server.port, request + body + b"x" * 10) in (400, None)


def test_a_body_cut_short_by_the_client_leaves_nothing_in_flight(server) -> None:
    """The request counted at its head is uncounted when the connection ends before its body (stop never hangs)."""
    body = _spans()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head("Content-Type: application/x-protobuf", f"Content-Length: {len(body)}") + body[:10])
        _wait_until(server, lambda: server.http._in_flight == 1)
    _wait_until(server, lambda: server.http._in_flight == 0)
    server.stack.call(server.http.stop(), timeout=30)  # returns before its grace period: nothing in flight
    assert server.http._in_flight == 0


def _wait_until(server, condition) -> None:
    import asyncio

    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0)

    server.stack.call(wait(), timeout=30)


def test_a_header_value_that_never_ends_is_refused_before_it_ends(server) -> None:
    """aiohttp refuses a field as soon as it passes 8190 bytes; the head's bytes must not pile up until its end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(f"POST {OTLP} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".encode())
        try:
            for _ in range(64):  # 1 MiB of one value, never ended by CRLF
                sock.sendall(b"a" * 16384)
        except OSError:
            return  # refused and closed while it was sent
        try:
            answer = sock.recv(64)
        except TimeoutError:
            answer = None
        assert answer is not None, "1 MiB of one header value held with no answer"
        assert answer == b"" or answer.split()[1] in (b"400", b"431")


@pytest.mark.parametrize("server", FAST_MODES, indirect=True, ids=[mode[0] for mode in FAST_MODES])
def test_a_chunked_trailer_that_never_ends_is_refused_before_it_ends(server) -> None:
    """After a chunked body's last chunk, a trailer field is bounded as a header field is.

    aiohttp alone answered 400 in three runs of this test by itself but held the connection with
    no answer in two runs of the three lanes together: its lane is not held to it.
    """
    body = _spans()
    head = _head("Content-Type: application/x-protobuf", "Transfer-Encoding: chunked")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n0\r\nX-Trailer: " % (len(body), body))
        try:
            for _ in range(64):  # 1 MiB of one trailer value, never ended by CRLF
                sock.sendall(b"a" * 16384)
        except OSError:
            return  # refused and closed while it was sent
        try:
            answer = sock.recv(64)
        except TimeoutError:
            answer = None
        assert answer is not None, "1 MiB of one trailer value held with no answer"
        assert answer == b"" or answer.split()[1] in (b"400", b"431")
