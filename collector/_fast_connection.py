"""One connection of the fast lane: parse with httptools, serve the hot routes, hand the rest to aiohttp.

Requests on a connection are answered one at a time, in order (keep-alive and pipelining): a
request's bytes that arrive while the previous one is being handled wait in a backlog (reading
pauses past ``_BACKLOG_BYTES``). Each message gets a fresh parser. With a declared size the
parser is stopped where the head ends (llhttp requires CRLF, so that is the first blank line) and
the body's ``Content-Length`` bytes are copied straight from the reads into one buffer: one copy
(none when a read is exactly the body), and the offset where the next message begins is known.
A chunked body goes through the parser; its end is known only when it ends a read, so when
another message follows it in the same read that message's start is lost and the connection
closes after the chunked request's answer (the client retries what it pipelined, RFC 9112
§9.3.2).

Until a message's route is known its raw bytes are kept; a request the fast lane does not serve
(or cannot parse) is handed to aiohttp with them, and the connection is aiohttp's from then on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import cast

import httptools
from aiohttp import web
from multidict import CIMultiDict

from ._fast_http import KEEPALIVE_SECONDS, FastExchange, FastLane, FastRoute, request_framing, serialise_response

__all__ = ["FastConnection"]

_LOG = logging.getLogger(__name__)

_BACKLOG_BYTES = 256 * 1024
"""Pipelined bytes buffered while a request is handled before reading pauses."""

_LINGER_SECONDS = 10.0
"""How long a refused request's unread body is read and dropped before the connection closes.

A refused body is read and dropped rather than left unread: closing a socket with unread data
makes the kernel reset the connection, which can destroy the answer before the client reads it
(aiohttp lingers the same way). A body within the route's limit (401, 415, 429 answers) is read
to its end and the connection kept; a larger or undeclared one (413) is answered with
``Connection: close`` and dropped for at most this long.
"""

_MAX_FIELD = 8190
"""A header name or value, or the request target, longer than this goes to aiohttp (its limit, 400 past it)."""

_MAX_HEAD_BYTES = 256 * 1024
"""Bytes kept while a route is not known; past them the connection goes to aiohttp (its limits apply)."""

_MAX_HEADERS = 100
"""A request with more header fields than this goes to aiohttp (which refuses past 32 768)."""

_HEAD_END = b"\r\n\r\n"
_CRLF = b"\r\n"


class _Stop(Exception):  # noqa: N818 - a control-flow signal out of the parser's callbacks, not an error
    """Raised in a parser callback to stop parsing; ``FastConnection._stop`` says why."""


class FastConnection(asyncio.Protocol):
    """The fast lane's protocol for one connection (until it is handed to aiohttp)."""

    def __init__(self, lane: FastLane) -> None:
        self._lane = lane
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | None = None
        self._raw: bytearray | None = None  # the message's bytes while its route is unknown
        self._seen = 0  # bytes of the message before the read being parsed
        self._read = 0  # length of the read being parsed
        self._quiet = 0  # bytes of a chunked body's framing or trailers since its last parsed piece
        self._left = 0  # bytes of a declared body still to come
        self._body_at = 0  # where the body starts in the read that ended the head
        self._ended = False  # a chunked message ended in the read being parsed
        self._stop: str | None = None
        self._url = b""
        self._path = ""
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._version = "1.1"
        self._keep_alive = True
        self._route: FastRoute | None = None
        self._exchange: FastExchange | None = None
        self._draining = False
        self._linger: asyncio.TimerHandle | None = None
        self._size: int | None = None  # declared body size (None: chunked)
        self._body: bytes | memoryview | bytearray | None = None
        self._view: memoryview | None = None
        self._chunks: list[bytes] = []
        self._filled = 0
        self._counted = False  # this request is in the server's in-flight count
        self._busy = False  # a request is being handled; later bytes wait in the backlog
        self._lost = False  # a message began where we cannot locate it: close after the answer
        self._backlog = bytearray()
        self._paused = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # a stream server's (uvloop's is no subclass)
        self._lane.connections.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        try:
            self._consume(data)
        except Exception:  # noqa: BLE001 - a bug here must cost one connection, not the server
            _LOG.exception("HTTP fast lane: connection failed")
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._detach()
        if self._counted and not self._busy:  # the body never completed
            if self._exchange is not None:
                self._exchange.release()
                self._exchange = None
            self._uncount()

    # -- the lane's controls ---------------------------------------------------------------------

    def close_if_idle(self) -> None:
        """Close now if no request is under way (the server is stopping)."""
        if not self._busy and not self._counted and not (self._raw and self._raw.strip(_CRLF)):
            self._close()

    def abort(self) -> None:
        """Close at once, dropping anything unsent."""
        if self._transport is not None and not self._closed:
            self._transport.abort()
        self._closed = True

    # -- parsing -------------------------------------------------------------------------------

    def _consume(self, data: bytes | memoryview) -> None:
        while data and not self._closed:
            if self._busy:
                self._backlog += data
                if len(self._backlog) > _BACKLOG_BYTES and not self._paused and self._transport is not None:
                    self._paused = True
                    self._transport.pause_reading()
                return
            # A declared body is copied straight into place, the parser skipped.
            data = self._fill(data) if self._left else self._parse(data)

    def _parse(self, data: bytes | memoryview) -> bytes | memoryview:
        """Feed ``data`` to the message's parser; what is left of it when the parser stopped before its end."""
        if self._parser is None:
            self._parser = httptools.HttpRequestParser(self)
            self._raw = bytearray()
            self._seen = 0
            self._ended = False
        if self._raw is not None:
            self._raw += data
            if len(self._raw) > _MAX_HEAD_BYTES:  # a head this large is aiohttp's to judge
                self._handover()
                return b""
        self._read = len(data)
        self._stop = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._stop is None:
                self._parse_error(exc)
                return b""
        stop = self._stop
        if stop is None:
            self._took_all(len(data))
        elif stop == "body":  # the head ended at ``_body_at`` in this read; the body follows
            self._parser = None
            rest = memoryview(data)[self._body_at :]
            if not self._left:
                self._body_done()
            return rest
        elif stop == "handover":
            self._handover()
        elif stop == "close":
            self._close()
        # "lost": the rest of the read is dropped; the answer closes the connection
        return b""

    def _took_all(self, n: int) -> None:
        """The parser took a whole read of ``n`` bytes without stopping."""
        self._seen += n
        if self._ended:
            self._parser = None  # the chunked message ended with this read
        elif self._raw is None:  # a chunked body: its framing and trailers are bounded too
            self._quiet += n
            if self._quiet > _MAX_HEAD_BYTES:
                self._parse_error(httptools.HttpParserError("chunk header or trailer too long"))

    def _fill(self, data: bytes | memoryview) -> bytes | memoryview:
        """Take the declared body's bytes from ``data`` (one copy, none when a read is exactly the body)."""
        n = min(self._left, len(data))
        if not self._draining:
            if self._body is None and n == self._size and n == len(data) and isinstance(data, bytes):
                self._body = data
            else:
                if self._view is None:
                    self._body = bytearray(self._size or 0)
                    self._view = memoryview(self._body)
                self._view[self._filled : self._filled + n] = data[:n]
        self._filled += n
        self._left -= n
        rest = memoryview(data)[n:] if n < len(data) else b""
        if not self._left:
            self._body_done()
        return rest

    def _body_done(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            self._busy = True
            run = functools.partial(exchange.finish, self._take_body())
            for wrapper in reversed(self._lane.wrappers):
                run = functools.partial(wrapper, self._path, self._headers, run)
            self._task = self._loop.create_task(self._handle(run))
            self._task.add_done_callback(self._handler_ended)
        elif self._draining and not self._keep_alive:
            self._close()  # a refused body read to its end; the answer said the connection closes
        self._reset_message()

    def _parse_error(self, exc: httptools.HttpParserError) -> None:
        if self._raw is not None:  # the route is not known: aiohttp answers as it always did
            self._handover()
        elif self._exchange is not None:  # broken body (chunked encoding): answer 400, then close
            exchange, self._exchange = self._exchange, None
            self._keep_alive = False
            self._answer(exchange.malformed(str(exc)))
            self._close()
        else:  # a refused request's body: its answer is sent
            self._close()

    def on_message_begin(self) -> None:
        if self._ended:  # after a chunked message, in the same read: where it starts is unknown
            self._lost = True
            self._stop = "lost"
            raise _Stop

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._raw is None:  # a chunked body's trailer: ignored (aiohttp's handlers never see them either)
            self._quiet = 0
            return
        if len(value) > _MAX_FIELD or len(name) > _MAX_FIELD or len(self._headers) >= _MAX_HEADERS:
            self._stop = "handover"  # aiohttp applies its own limits (400 past them)
            raise _Stop
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # noqa: S101 - it is the caller
        assert self._raw is not None  # noqa: S101 - the route is not known yet
        served = self._served(parser)
        if served is None:
            self._stop = "handover"
            raise _Stop
        route, chunked, content_length = served
        if self._timer is not None:  # the head is complete: the idle timer stops here
            self._timer.cancel()
            self._timer = None
        raw, self._raw = self._raw, None
        start = len(raw) - len(raw.lstrip(_CRLF)) if raw[:1] in (b"\r", b"\n") else 0
        head_len = raw.find(_HEAD_END, start) + len(_HEAD_END)
        self._seen = len(raw) - self._read
        self._size = None if chunked else content_length or 0
        self._version = parser.get_http_version()
        self._keep_alive = parser.should_keep_alive() and not self._lane.stopping
        self._route = route
        self._lane.started()
        self._counted = True
        opened = self._open(route, content_length)
        if isinstance(opened, web.Response):
            self._refuse(opened, unsent=False)
        else:
            self._exchange = opened
        if self._size is not None:  # stop the parser: the body is ``_size`` bytes from here
            self._left = self._size
            self._body_at = head_len - self._seen
            self._stop = "body"
            raise _Stop

    def _served(self, parser: httptools.HttpRequestParser) -> tuple[FastRoute, bool, int | None] | None:
        """The route, chunked or not, and declared length of a request the fast lane serves; else None."""
        if parser.get_method() != b"POST" or parser.should_upgrade() or len(self._url) > _MAX_FIELD:
            return None
        self._path = self._url.partition(b"?")[0].decode("latin-1")
        route = self._lane.routes.get(self._path)
        framing = request_framing(self._headers) if route is not None else None
        return None if framing is None or route is None else (route, *framing)

    def _open(self, route: FastRoute, content_length: int | None) -> FastExchange | web.Response:
        """``route.open``, with ``Expect: 100-continue`` as aiohttp's routes answer it."""
        headers = self._headers
        expect = headers.get("Expect")
        if expect is None or self._version != "1.1":  # HTTP/1.0 has no interim answers
            return route.open(headers, content_length)
        if expect.lower() != "100-continue":
            self._refuse(web.Response(status=417, text=f"Unknown Expect: {expect}"), unsent=True)  # raises _Stop
        if not route.refuses_before_continue:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return route.open(headers, content_length)
        opened = route.open(headers, content_length)
        if isinstance(opened, web.Response):
            self._refuse(opened, unsent=True)  # raises _Stop: the connection closes after the answer
        self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return opened

    def on_chunk_header(self) -> None:
        self._quiet = 0

    def on_body(self, chunk: bytes) -> None:
        """A chunked body's piece (a declared one never reaches the parser): keep it, join once at the end."""
        self._quiet = 0  # bytes read with no chunk header, data or trailer line done: see ``_parse``
        exchange = self._exchange
        if self._draining or exchange is None:
            return
        self._filled += len(chunk)
        if self._filled > self._route.max_body_bytes:  # type: ignore[union-attr] - set with the exchange
            self._exchange = None
            self._keep_alive = False
            self._answer(exchange.too_large())
            self._stop = "close"
            raise _Stop
        self._chunks.append(chunk)

    def on_message_complete(self) -> None:
        """The end of a chunked message; parsing goes on, and a message beginning now is lost."""
        self._body_done()
        self._ended = True

    def _take_body(self) -> bytes | bytearray:
        if self._size is None:
            chunks = self._chunks
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        body = self._body
        if self._view is not None:
            self._view.release()
        return b"" if body is None else body

    def _reset_message(self) -> None:
        self._url = b""
        self._headers = CIMultiDict()
        self._draining = False
        self._quiet = 0
        self._body = None
        self._view = None
        self._chunks = []
        self._filled = 0

    # -- answering -------------------------------------------------------------------------------

    def _refuse(self, response: web.Response, *, unsent: bool) -> None:
        """Answer before the body; then read and drop the body (see ``_LINGER_SECONDS``) or close."""
        if unsent:
            # After a refused ``Expect: 100-continue`` the client may or may not send the body:
            # the next bytes cannot be told apart from a request, so the connection ends here.
            self._keep_alive = False
            self._answer(response)
            self._stop = "close"
            raise _Stop
        route = self._route
        if self._size is None or (route is not None and self._size > route.max_body_bytes):
            self._keep_alive = False
            self._linger = self._loop.call_later(_LINGER_SECONDS, self.abort)
        self._answer(response)
        self._draining = True
        self._arm_timer()  # a refused body that stops arriving does not hold the connection

    def _handler_ended(self, task: asyncio.Task[None]) -> None:
        # Cancelled from outside (the loop shutting down), maybe before it ran at all: no answer
        # can follow, so the connection ends here and the request leaves the in-flight count (a
        # graceful stop waiting for it would otherwise wait out its grace period).
        if task.cancelled():
            self._busy = False
            self._uncount()
            self.abort()

    async def _handle(self, run: Callable[[], Awaitable[web.Response]]) -> None:
        try:
            response = await run()
        except Exception:  # noqa: BLE001 - as aiohttp: a failing handler answers 500, the server goes on
            _LOG.exception("HTTP fast lane: request handler failed")
            self._keep_alive = False
            response = web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        del run
        self._busy = False
        self._answer(response)
        if self._closed:
            return
        if not self._keep_alive or self._lost:
            self._close()
            return
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        self._arm_timer()  # the next head must complete within the keep-alive time
        backlog, self._backlog = self._backlog, bytearray()
        if backlog:
            self.data_received(bytes(backlog))

    def _answer(self, response: web.Response) -> None:
        keep_alive = self._keep_alive and not self._lost and not self._lane.stopping
        self._keep_alive = keep_alive
        head, body = serialise_response(response, self._version, keep_alive)
        if len(body) < 16384:
            self._write(head + body)
        else:
            self._write(head)
            self._write(body)
        self._uncount()

    def _write(self, data: bytes) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._lane.finished()

    # -- connection's end ------------------------------------------------------------------------

    def _close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.close()  # sends what is buffered first
        self._closed = True
        self._detach()

    def _detach(self) -> None:
        self._lane.connections.discard(self)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(KEEPALIVE_SECONDS, self._idle_timeout)

    def _idle_timeout(self) -> None:
        """No complete head for the keep-alive time (idle, or a head that never ends): close."""
        self._timer = None
        if not self._busy and not self._counted:
            self._close()

    def _handover(self) -> None:
        """Give the connection and the request's raw bytes to aiohttp."""
        transport = self._transport
        raw = bytes(self._raw or b"")
        self._raw = None
        self._parser = None
        self._closed = True  # for this protocol; the connection goes on
        self._detach()
        if transport is None or transport.is_closing():
            return
        if self._paused:
            transport.resume_reading()
        protocol = self._lane.aiohttp_server()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if raw:
            protocol.data_received(raw)
