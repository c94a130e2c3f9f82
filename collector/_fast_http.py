"""The fast lane: an HTTP/1.1 receiver below aiohttp for the hot POST routes.

Per request, aiohttp's machinery around our handlers (its parser, ``Request`` and ``StreamReader``
objects, routing, middlewares, the response's headers and write) costs about as much event-loop
time as the OTLP and native ingestion handlers themselves (bench/README.md, otlp "fourth round").
:class:`FastLane` serves those routes itself on an ``asyncio.Protocol`` with ``httptools`` (the
llhttp parser): the headers go to a :class:`FastRoute`, which refuses the request (an answer
written before the body is read) or returns a :class:`FastExchange`; the body is read into one
buffer and the exchange answers with a ``web.Response``, serialised here. The handlers' logic is
the same code the aiohttp routes call (``OtlpHttpRoutes``, ``IngestionService``).

Anything else — another path or method, ``Upgrade``, a parse error before the route is known (a
gRPC client's HTTP/2 preface) — is handed to aiohttp on the same connection with every raw byte
received since that request began; from then on the connection is aiohttp's
(``_fast_connection.py``). This module holds the routes' interface, the lane's state and the response's bytes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import formatdate
from typing import Protocol

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict

from ._environment_variables import SIRIUS_HTTP_FAST_LANE

__all__ = [
    "FAST_COVERED_MIDDLEWARES",
    "FAST_ROUTES",
    "FAST_WRAPPERS",
    "FastExchange",
    "FastLane",
    "FastRoute",
    "FastWrapper",
    "add_fast_lane_middleware",
    "fast_lane_enabled",
    "request_framing",
    "serialise_response",
]

FAST_ROUTES = web.AppKey("sirius_fast_routes", dict)
"""The app's fast routes, path → :class:`FastRoute` (set by the services that build the app)."""

FAST_COVERED_MIDDLEWARES = web.AppKey("sirius_fast_covered_middlewares", list)
"""The app's middlewares whose work the fast routes do themselves (e.g. the ingestion key check).

An app with any other middleware (``HttpServer``'s own aside) is served by aiohttp alone: the
fast lane would bypass it.
"""

FAST_WRAPPERS = web.AppKey("sirius_fast_wrappers", list)
"""What runs around each fast-lane request's handling, as a middleware does around aiohttp's: ``FastWrapper``s."""

FastWrapper = Callable[[str, CIMultiDict[str], Callable[[], Awaitable[web.Response]]], Awaitable[web.Response]]
"""``(path, headers, run)`` → the answer; ``run()`` handles the request (its body already read)."""

KEEPALIVE_SECONDS = 75.0
"""An idle keep-alive connection is closed after this long (aiohttp's default)."""


class FastExchange(Protocol):
    """One admitted request between its headers and its answer."""

    async def finish(self, body: bytes | bytearray) -> web.Response:
        """Handle the complete body and answer; releases what the request holds."""
        ...

    def malformed(self, reason: str) -> web.Response:
        """The answer when the body cannot be read (broken chunked encoding); releases."""
        ...

    def too_large(self) -> web.Response:
        """The answer when a body without ``Content-Length`` grows past the limit; releases."""
        ...

    def release(self) -> None:
        """The connection ended before the body did: release what the request holds."""
        ...


class FastRoute(Protocol):
    """A route the fast lane serves (``POST`` only).

    ``refuses_before_continue``: with ``Expect: 100-continue``, ``open`` runs before the interim
    ``100 Continue`` (its refusals are sent instead of it); else ``100 Continue`` is sent first,
    as aiohttp's default expect handler does. ``max_body_bytes`` bounds a body sent without
    ``Content-Length`` (chunked); a declared one is checked by ``open``.
    """

    refuses_before_continue: bool
    max_body_bytes: int

    def open(self, headers: CIMultiDict[str], content_length: int | None) -> FastExchange | web.Response:
        """Admit the request from its headers, or the answer refusing it before its body."""
        ...


def add_fast_lane_middleware(app: web.Application, middleware: object, wrapper: FastWrapper) -> None:
    """Add an aiohttp ``middleware`` to ``app`` and its fast-lane equivalent ``wrapper``.

    Without the wrapper, an app with the middleware is served by aiohttp alone (``HttpServer``).
    """
    app.middlewares.append(middleware)  # type: ignore[arg-type]
    app.setdefault(FAST_COVERED_MIDDLEWARES, []).append(middleware)
    app.setdefault(FAST_WRAPPERS, []).append(wrapper)


def request_framing(headers: CIMultiDict[str]) -> tuple[bool, int | None] | None:
    """(chunked, declared length) when the framing is unambiguous, else None (aiohttp decides).

    Only one ``Transfer-Encoding: chunked`` without ``Content-Length``, or at most one
    ``Content-Length`` without ``Transfer-Encoding``: the body's end is then the one llhttp finds.
    Anything else (both, several, ``identity``, a list) is a smuggling shape for aiohttp's rules.
    """
    encodings = headers.getall("Transfer-Encoding", ())
    lengths = headers.getall("Content-Length", ())
    if encodings:
        if len(encodings) == 1 and not lengths and encodings[0].strip().lower() == "chunked":
            return True, None
        return None
    if len(lengths) > 1:
        return None
    return False, int(lengths[0]) if lengths else None


def fast_lane_enabled() -> bool:
    """``SIRIUS_HTTP_FAST_LANE``: on unless set to ``0``/``false``/``off``/``no``.

    Raises:
        ValueError: any other value than those or ``1``/``true``/``on``/``yes``.
    """
    raw = os.environ.get(SIRIUS_HTTP_FAST_LANE, "").strip().lower()
    if raw in ("", "1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    msg = f"{SIRIUS_HTTP_FAST_LANE} must be 0 or 1, got {raw!r}"
    raise ValueError(msg)


class _Clock:
    """The ``Date`` header, formatted once per second (as aiohttp caches it)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("latin-1")
        return self._value


_CLOCK = _Clock()
_SERVER = SERVER_SOFTWARE.encode("latin-1")
_SKIPPED = frozenset(("content-length", "date", "server", "connection", "transfer-encoding"))


def serialise_response(response: web.Response, version: str, keep_alive: bool) -> tuple[bytes, bytes]:
    """The status line and headers (with the final blank line) and the body of ``response``.

    Headers as aiohttp sends them: the response's own, then ``Content-Length``, ``Date``,
    ``Server``, and ``Connection`` when it differs from the version's default.
    """
    body = response.body
    if not isinstance(body, bytes | bytearray):  # our routes answer with bytes; be safe with others
        body = b"" if body is None else bytes(body)  # type: ignore[arg-type]
    lines = [f"HTTP/{version} {response.status} {response.reason}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers.items() if name.lower() not in _SKIPPED)
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode("latin-1")
    head += b"\r\nDate: " + _CLOCK.date() + b"\r\nServer: " + _SERVER
    if version == "1.1" and not keep_alive:
        head += b"\r\nConnection: close"
    elif version == "1.0" and keep_alive:
        head += b"\r\nConnection: keep-alive"
    return head + b"\r\n\r\n", bytes(body) if isinstance(body, bytearray) else body


class _Connection(Protocol):
    """What the lane needs of a connection (``_fast_connection.FastConnection``)."""

    def close_if_idle(self) -> None: ...

    def abort(self) -> None: ...


class FastLane:
    """The fast lane of one listening socket: its routes, its connections, the in-flight counter.

    Args:
        routes: path → route (``POST`` only); every other request goes to aiohttp.
        aiohttp_server: the runner's ``web.Server``; calling it gives the protocol that takes a
            connection handed over.
        started / finished: the server's in-flight counter (the graceful stop waits for it).
        wrappers: run around each request's handling, first outermost (the app's middlewares'
            equivalents, e.g. self-telemetry's span).
    """

    def __init__(
        self,
        routes: Mapping[str, FastRoute],
        aiohttp_server: Callable[[], asyncio.Protocol],
        started: Callable[[], None],
        finished: Callable[[], None],
        wrappers: Sequence[FastWrapper] = (),
    ) -> None:
        self.routes = dict(routes)
        self.wrappers = tuple(wrappers)
        self.aiohttp_server = aiohttp_server
        self.started = started
        self.finished = finished
        self.stopping = False
        self.connections: set[_Connection] = set()

    def stop(self) -> None:
        """No more keep-alive: close idle connections now, the others after their answer."""
        self.stopping = True
        for connection in list(self.connections):
            connection.close_if_idle()

    def abort(self) -> None:
        """Close every connection still open (after the grace period)."""
        for connection in list(self.connections):
            connection.abort()
