"""The HTTP fast lane (``_fast_connection.py``) against real sockets and real clients.

Every test runs on the ingestion service's app three ways: the fast lane on uvloop, the fast lane
on asyncio's loop, and aiohttp alone (``fast_lane=False``): the answers must be the same.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import itertools
import socket
import ssl
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_samples import sample_cpu_stream, sample_process
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tls_certificates import make_pki

from sirius.collector import (
    ApiKeys,
    HttpServer,
    IngestionLimits,
    IngestionService,
    ServerTls,
    add_fast_lane_middleware,
)
from sirius.collector._fast_http import FAST_ROUTES, fast_lane_enabled
from sirius.tracing import (
    Level,
    LogMetadata,
    SinkConfig,
    TelemetrySink,
    TransitWriter,
    current_process_info,
    process_info_to_cbor,
    stream_info_to_cbor,
)

KEY = "s3cret"
LIMIT = 1024 * 1024
AUTH = f"Authorization: Bearer {KEY}"
OTLP = "/ingestion/otlp/v1/traces"
MODES = [("fast-lane", True, "auto"), ("fast-lane-asyncio", True, "asyncio"), ("aiohttp", False, "auto")]
FAST_MODES = [mode for mode in MODES if mode[1]]
"""The fast lane's own behaviour (timers, handler tasks): its two loops, not aiohttp's lane."""


@pytest.fixture(params=MODES, ids=[mode[0] for mode in MODES])
def server(request, stack_factory, monkeypatch) -> Iterator[SimpleNamespace]:
    """The ingestion service's app on its own ``HttpServer`` (keys required, 1 MiB bodies) over a stack's lake."""
    _, fast, loop = request.param
    monkeypatch.setenv("SIRIUS_EVENT_LOOP", loop)
    stack = stack_factory()
    limits = IngestionLimits(max_body_bytes=LIMIT)
    service = IngestionService(stack.stack.lake, stack.stack.store, ApiKeys((("ci", KEY),)), limits=limits)
    web_server = HttpServer(service.make_app(), "127.0.0.1", 0, fast_lane=fast)
    port = stack.call(web_server.start())
    assert web_server.fast_lane is fast
    yield SimpleNamespace(stack=stack, http=web_server, port=port, service=service)
    stack.call(web_server.stop())


def _request(method: str, path: str, body: bytes = b"", lines: tuple[str, ...] = (), version: str = "1.1") -> bytes:
    head = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *lines]
    if body and not any(line.lower().startswith(("content-length", "transfer-encoding")) for line in lines):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _native(route: str, body: bytes, *lines: str) -> bytes:
    return _request("POST", f"/ingestion/{route}", body, (AUTH, *lines))


def _read(reader) -> tuple[str, dict[str, str], bytes]:
    """One response: status line, headers (lower-case names), body (by Content-Length)."""
    status = reader.readline().decode().strip()
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader.read(int(headers.get("content-length", "0")))


def _connect(port: int) -> tuple[socket.socket, object]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, sock.makefile("rb")


def _process_and_stream() -> tuple[bytes, bytes]:
    process = sample_process()
    return process_info_to_cbor(process), stream_info_to_cbor(sample_cpu_stream(process))


def _spans_request() -> bytes:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "fast-lane"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("work"):
        pass
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans(memory.get_finished_spans())
    return ExportTraceServiceRequest.FromString(message.SerializeToString()).SerializeToString()


def test_keep_alive_serves_several_requests_on_one_connection(server) -> None:
    process, stream = _process_and_stream()
    sock, reader = _connect(server.port)
    with sock:
        for request in (_native("insert_process", process), _native("insert_stream", stream)):
            sock.sendall(request)
            status, headers, body = _read(reader)
            assert (status, body) == ("HTTP/1.1 200 OK", b"")
            assert list(headers) == ["content-length", "date", "server"]  # as aiohttp sends an empty 200
        sock.sendall(
            _request(
                "POST",
                OTLP,
                _spans_request(),
                (
                    AUTH,
                    "Content-Type: application/x-protobuf",
                ),
            )
        )
        status, headers, _body = _read(reader)
        assert (status, headers["content-type"]) == ("HTTP/1.1 200 OK", "application/x-protobuf")


def test_pipelined_requests_are_answered_in_order_across_the_handover(server) -> None:
    process, stream = _process_and_stream()
    batch = (
        _native("insert_process", process)
        + _native("insert_stream", b"\xff")  # 400: not CBOR
        + _request("GET", "/health")  # not a fast route: aiohttp takes the connection from here
        + _native("insert_stream", stream)
        + _request("POST", OTLP, b"x", ("Content-Type: text/plain",))
    )
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(batch)
        answers = [_read(reader)[::2] for _ in range(5)]
    assert [status for status, _ in answers] == [
        "HTTP/1.1 200 OK",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 415 Unsupported Media Type",
    ]
    assert answers[2][1] == b"OK"
    assert answers[1][1].startswith(b"Bad request: ")


def test_a_hot_request_then_other_ones_on_the_same_connection(server) -> None:
    process, _stream = _process_and_stream()
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_native("insert_process", process))
        assert _read(reader)[0] == "HTTP/1.1 200 OK"
        sock.sendall(_request("GET", "/ingestion/insert_block", lines=(AUTH,)))
        assert _read(reader)[0] == "HTTP/1.1 405 Method Not Allowed"
        sock.sendall(_request("GET", "/nowhere"))
        assert _read(reader)[0] == "HTTP/1.1 404 Not Found"
        sock.sendall(_native("insert_process", process))  # served by aiohttp now, the same way
        assert _read(reader)[0] == "HTTP/1.1 200 OK"


def test_chunked_bodies(server) -> None:
    spans = _spans_request()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (spans[:7], spans[7:])) + b"0\r\n\r\n"
    otlp = _request("POST", OTLP, chunked, (AUTH, "Content-Type: application/x-protobuf", "Transfer-Encoding: chunked"))
    process, _stream = _process_and_stream()
    native = _native("insert_process", b"%x\r\n%s\r\n0\r\n\r\n" % (len(process), process), "Transfer-Encoding: chunked")
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(otlp)
        assert _read(reader)[0] == "HTTP/1.1 200 OK"
        sock.sendall(native)  # a native body must declare its size
        status, _headers, body = _read(reader)
        assert status == "HTTP/1.1 411 Length Required"
        assert b"Content-Length is required" in body
    assert server.stack.call(server.stack.stack.lake.pool.fetchval("SELECT count(*) FROM blocks")) == 1


def test_a_request_pipelined_behind_a_chunked_one(server) -> None:
    """Answered, or the chunked request's answer says ``Connection: close`` (the fast lane cannot find its start)."""
    spans = _spans_request()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(spans), spans)
    lines = (AUTH, "Content-Type: application/x-protobuf", "Transfer-Encoding: chunked")
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_request("POST", OTLP, chunked, lines) + _request("GET", "/health"))
        status, headers, _body = _read(reader)
        assert status == "HTTP/1.1 200 OK"
        if headers.get("connection") == "close":
            assert server.http.fast_lane
            assert reader.read() == b""
        else:
            assert _read(reader)[::2] == ("HTTP/1.1 200 OK", b"OK")


def test_chunked_trailers_are_ignored(server) -> None:
    spans = _spans_request()
    trailers = "".join(f"X-Trailer-{i}: {i}\r\n" for i in range(120)).encode()
    chunked = b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(spans), spans, trailers)
    lines = (AUTH, "Content-Type: application/x-protobuf", "Transfer-Encoding: chunked")
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_request("POST", OTLP, chunked, lines))
        assert _read(reader)[0] == "HTTP/1.1 200 OK"
        sock.sendall(_request("GET", "/health"))
        assert _read(reader)[::2] == ("HTTP/1.1 200 OK", b"OK")


def test_a_large_head_is_served_as_aiohttp_serves_it(server) -> None:
    """40 fields of 8000 bytes (each under aiohttp's limit): past the fast lane's 256 KiB, aiohttp answers."""
    big = tuple(f"X-Big-{i}: {'b' * 8000}" for i in range(40))
    lines = (AUTH, "Content-Type: application/x-protobuf", *big)
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_request("POST", OTLP, _spans_request(), lines))
        assert _read(reader)[0] == "HTTP/1.1 200 OK"


def test_broken_chunked_body_is_400(server) -> None:
    otlp = _request(
        "POST", OTLP, b"zz\r\nabc\r\n", (AUTH, "Content-Type: application/x-protobuf", "Transfer-Encoding: chunked")
    )
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(otlp)
        assert _read(reader)[0].split()[1] == "400"  # aiohttp answers its parser error as HTTP/1.0


def test_expect_100_continue_accepted_and_refused(server) -> None:
    process, _stream = _process_and_stream()
    sock, reader = _connect(server.port)
    with sock:
        head = _native("insert_process", process, "Expect: 100-continue")[: -len(process)]
        sock.sendall(head)
        assert _read(reader)[0] == "HTTP/1.1 100 Continue"
        sock.sendall(process)
        assert _read(reader)[0] == "HTTP/1.1 200 OK"
    for lines, expected in (
        ((AUTH, f"Content-Length: {LIMIT + 1}"), "HTTP/1.1 413 Request Entity Too Large"),
        (("Authorization: Bearer wrong", "Content-Length: 10"), "HTTP/1.1 401 Unauthorized"),
        ((AUTH, "Content-Length: 10", "Expect: 101-tea"), "HTTP/1.1 417 Expectation Failed"),
    ):
        sock, reader = _connect(server.port)
        with sock:
            expect = () if "Expect: 101-tea" in lines else ("Expect: 100-continue",)
            sock.sendall(_request("POST", "/ingestion/insert_block", lines=(*lines, *expect)))
            status, headers, _body = _read(reader)  # before any byte of the body was sent
            assert status == expected
            if expected.startswith("HTTP/1.1 401"):
                assert headers["www-authenticate"] == "Bearer"


def test_otlp_413_by_declared_size_and_the_connection_goes_on_for_small_refusals(server) -> None:
    sock, reader = _connect(server.port)
    with sock:
        # A refused body within the limit is read and dropped: the connection stays usable.
        sock.sendall(_request("POST", OTLP, b"x" * 1000, ("Content-Type: text/plain",)))
        assert _read(reader)[0] == "HTTP/1.1 415 Unsupported Media Type"
        sock.sendall(_request("GET", "/health"))
        assert _read(reader)[2] == b"OK"
    sock, reader = _connect(server.port)
    with sock:
        big = 65 * 1024 * 1024  # over the OTLP default limit of 64 MiB
        lines = (AUTH, "Content-Type: application/x-protobuf", f"Content-Length: {big}")
        sock.sendall(_request("POST", OTLP, lines=lines) + b"x" * 1000)
        status, headers, _body = _read(reader)
        assert (status, headers["content-type"]) == ("HTTP/1.1 413 Request Entity Too Large", "application/x-protobuf")


def test_gzip_otlp_body(server) -> None:
    body = gzip.compress(_spans_request())
    lines = (AUTH, "Content-Type: application/x-protobuf", "Content-Encoding: gzip")
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_request("POST", OTLP, body, lines))
        assert _read(reader)[0] == "HTTP/1.1 200 OK"


def test_http_1_0_closes_unless_kept_alive(server) -> None:
    process, _stream = _process_and_stream()
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_request("POST", "/ingestion/insert_process", process, (AUTH,), version="1.0"))
        status, headers, _body = _read(reader)
        assert status == "HTTP/1.0 200 OK"
        assert headers.get("connection", "close").lower() == "close"
        assert reader.read() == b""  # closed by the server
    sock, reader = _connect(server.port)
    with sock:
        request = _request("POST", "/ingestion/insert_process", process, (AUTH, "Connection: keep-alive"), "1.0")
        sock.sendall(request)
        assert _read(reader)[1]["connection"].lower() == "keep-alive"
        sock.sendall(request)
        assert _read(reader)[0] == "HTTP/1.0 200 OK"


def test_connection_close_is_honoured(server) -> None:
    process, _stream = _process_and_stream()
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(_native("insert_process", process, "Connection: close"))
        status, headers, _body = _read(reader)
        assert (status, headers["connection"]) == ("HTTP/1.1 200 OK", "close")
        assert reader.read() == b""


@pytest.mark.parametrize(
    "garbage", [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]
)
def test_garbage_and_an_http2_preface_get_aiohttps_answer(server, garbage: bytes) -> None:
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(garbage)
        assert _read(reader)[0] == "HTTP/1.0 400 Bad Request"  # aiohttp's own answer (the fast lane hands it over)


def test_tls(stack_factory, tmp_path) -> None:
    pki = make_pki(tmp_path)
    stack = stack_factory()
    service = IngestionService(stack.stack.lake, stack.stack.store, ApiKeys((("ci", KEY),)))
    web_server = HttpServer(service.make_app(), "127.0.0.1", 0, tls=ServerTls.load(pki.cert, pki.key), fast_lane=True)
    port = stack.call(web_server.start())
    try:
        conn = _https(port, ssl.create_default_context(cafile=str(pki.ca)))
        process, _stream = _process_and_stream()
        for _ in range(2):  # keep-alive over TLS
            conn.request("POST", "/ingestion/insert_process", body=process, headers={"Authorization": f"Bearer {KEY}"})
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"")
        conn.request("GET", "/health")  # handed over to aiohttp inside TLS
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"OK")
        conn.close()
    finally:
        stack.call(web_server.stop())


def _https(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)


def test_graceful_stop_answers_the_request_in_flight(server) -> None:
    process, _stream = _process_and_stream()
    request = _native("insert_process", process)
    idle, idle_reader = _connect(server.port)
    busy, reader = _connect(server.port)
    with idle, busy:
        idle.sendall(_request("GET", "/health"))  # a kept-alive connection, handed over to aiohttp
        assert _read(idle_reader)[2] == b"OK"
        busy.sendall(request[:-5])  # the body is not complete: the request is in flight
        _wait_for_in_flight(server)
        stopped = threading.Thread(target=server.stack.call, args=(server.http.stop(),))
        stopped.start()
        busy.sendall(request[-5:])
        status, _headers, _body = _read(reader)
        stopped.join(30)
        assert status == "HTTP/1.1 200 OK"
        assert reader.read() == b""  # closed after its answer
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


def _wait_for_in_flight(server) -> None:
    """Until the server counts the request as in flight (no sleeps: ask the loop)."""
    import asyncio

    async def in_flight() -> None:
        while server.http._in_flight == 0:
            await asyncio.sleep(0)

    server.stack.call(in_flight(), timeout=30)


def test_the_otel_http_exporter_and_the_native_client(server) -> None:
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{server.port}{OTLP}", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "fast-lane"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("exported"):
        pass
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()

    process = current_process_info({"test": "fast-lane"})
    log = TransitWriter(process, "log")
    log.log_string(LogMetadata("{}", target="app", level=Level.INFO), "hello", ticks=1)
    sink = TelemetrySink(SinkConfig(url=f"http://127.0.0.1:{server.port}", api_key=KEY, initial_backoff=0.01))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    assert sink.send_block(log.seal())
    assert sink.flush(timeout=30)
    sink.shutdown()
    count = "SELECT count(*) FROM blocks"
    assert server.stack.call(server.stack.stack.lake.pool.fetchval(count)) == 2


def _exchange(port: int, pieces: list[bytes], answers: int) -> list[tuple[str, bytes]]:
    sock, reader = _connect(port)
    with sock:
        for piece in pieces:
            sock.sendall(piece)
        return [(status, body) for status, _headers, body in (_read(reader) for _ in range(answers))]


_SCRIPT = (
    _native("insert_stream", b"\xa1\x01")
    + _request("POST", OTLP, b"{}", (AUTH, "Content-Type: application/json"))
    + _request("POST", OTLP, b"x", ("Content-Type: text/plain",))
    + _native("insert_process", b"", "Content-Length: 0")
    + _request("GET", "/health")
    + _native("insert_process", b"\xff")
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(_SCRIPT) - 1), max_size=8, unique=True))
def test_answers_do_not_depend_on_where_requests_are_split(server, cuts: list[int]) -> None:
    expected = _exchange(server.port, [_SCRIPT], 6)
    assert [status.split()[1] for status, _ in expected] == ["400", "200", "415", "400", "200", "400"]
    bounds = [0, *sorted(cuts), len(_SCRIPT)]
    pieces = [_SCRIPT[a:b] for a, b in itertools.pairwise(bounds)]
    assert _exchange(server.port, pieces, 6) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(max_size=300), prefix=st.sampled_from([b"", b"POST /ingestion/insert_block HTTP/1.1\r\n"]))
def test_arbitrary_bytes_never_break_the_server(server, noise: bytes, prefix: bytes) -> None:
    sock, reader = _connect(server.port)
    with sock:
        sock.sendall(prefix + noise)
        sock.shutdown(socket.SHUT_WR)
        reader.read()  # whatever the answer, the connection ends
    assert _exchange(server.port, [_request("GET", "/health")], 1) == [("HTTP/1.1 200 OK", b"OK")]


class _EchoExchange:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def finish(self, body: bytes | bytearray) -> web.Response:
        self.seen.append("handled")
        return web.Response(body=bytes(body))

    def malformed(self, reason: str) -> web.Response:
        return web.Response(status=400)

    def too_large(self) -> web.Response:
        return web.Response(status=413)

    def release(self) -> None:
        pass


class _EchoRoute:
    refuses_before_continue = False
    max_body_bytes = 1024

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def open(self, headers, content_length):
        return _EchoExchange(self.seen)


def _echo_app(seen: list[str]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        seen.append("handled")
        return web.Response(body=await request.read())

    app = web.Application()
    app.router.add_post("/echo", echo)
    app[FAST_ROUTES] = {"/echo": _EchoRoute(seen)}
    return app


@web.middleware
async def _marking(request: web.Request, handler):
    response = await handler(request)
    response.headers["X-Marked"] = "aiohttp"
    return response


@pytest.mark.parametrize("covered", [False, True])
def test_a_middleware_without_a_fast_lane_equivalent_turns_the_lane_off(covered: bool) -> None:
    seen: list[str] = []
    app = _echo_app(seen)

    async def wrapper(path, headers, run):
        seen.append(f"wrapped {path} {headers['X-Probe']}")
        response = await run()
        response.headers["X-Marked"] = "fast lane"
        return response

    if covered:
        add_fast_lane_middleware(app, _marking, wrapper)
    else:
        app.middlewares.append(_marking)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(app, "127.0.0.1", 0, fast_lane=True)
    port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    try:
        assert server.fast_lane is covered
        sock, reader = _connect(port)
        with sock:
            sock.sendall(_request("POST", "/echo", b"hello", ("X-Probe: 7",)))
            _status, headers, body = _read(reader)
        assert body == b"hello"
        assert headers["x-marked"] == ("fast lane" if covered else "aiohttp")
        assert seen == (["wrapped /echo 7", "handled"] if covered else ["handled"])
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("1", True), ("on", True), ("0", False), ("false", False), ("off", False)]
)
def test_the_switch(monkeypatch, value: str | None, expected: bool) -> None:
    if value is not None:
        monkeypatch.setenv("SIRIUS_HTTP_FAST_LANE", value)
    assert fast_lane_enabled() is expected
    assert HttpServer(web.Application(), "127.0.0.1", 0)._fast_lane_on is expected


def test_a_bad_switch_value_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("SIRIUS_HTTP_FAST_LANE", "maybe")
    with pytest.raises(ValueError, match="SIRIUS_HTTP_FAST_LANE must be 0 or 1, got 'maybe'"):
        HttpServer(web.Application(), "127.0.0.1", 0)


@pytest.mark.parametrize("server", FAST_MODES, indirect=True, ids=[mode[0] for mode in FAST_MODES])
def test_a_cancelled_handler_closes_its_connection_and_leaves_the_in_flight_count(server) -> None:
    """A handler cancelled from outside (the loop shutting down) must not stay counted in flight."""
    process, _stream = _process_and_stream()
    sock, reader = _connect(server.port)

    async def cancel_the_handler() -> int:
        # The handler awaits PostgreSQL: its task is found (no sleeps: loop yields) and cancelled.
        while True:
            handlers = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "FastConnection._handle"]
            if handlers:
                handlers[0].cancel()
                break
            await asyncio.sleep(0)
        while server.http._in_flight:
            await asyncio.sleep(0)
        return server.http._in_flight

    with sock:
        sock.sendall(_native("insert_process", process))
        assert server.stack.call(cancel_the_handler(), timeout=30) == 0
        assert reader.read() == b""  # no answer can follow: the connection is closed
