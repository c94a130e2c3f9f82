"""Running an aiohttp application on a TCP port with a graceful stop.

Shared by every HTTP service Sirius runs (ingestion now; OTLP/HTTP and the gateway later), so
binding, port 0 resolution and the drain-on-stop behaviour live in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._fast_connection import FastConnection
from ._fast_http import FAST_COVERED_MIDDLEWARES, FAST_ROUTES, FAST_WRAPPERS, FastLane, fast_lane_enabled
from ._protocol_mismatch import ServerErrorLogger
from ._tls import ServerTls

_LOG = logging.getLogger(__name__)


class HttpServer:
    """One aiohttp application bound to ``host:port``.

    ``stop()`` closes the listening socket first, then waits up to ``grace_seconds`` for
    in-flight requests to finish, so a request already being handled gets its answer. We count
    in-flight requests ourselves: aiohttp's own shutdown cancels a handler that is still
    reading its body (observed with aiohttp 3.14), which would cut off an upload mid-way.

    ``service`` names the port in log lines (e.g. a gRPC client connecting to it by mistake).
    With ``tls`` the port serves HTTPS only.

    The app's fast routes (``FAST_ROUTES``) are served below aiohttp by the fast lane
    (``_fast_connection.py``), which hands every other request to aiohttp on the same
    connection; ``fast_lane`` (default: ``SIRIUS_HTTP_FAST_LANE``, on) turns it off. An app with
    a middleware the fast routes do not cover is served by aiohttp alone.
    """

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        grace_seconds: float = 25.0,
        service: str = "HTTP",
        tls: ServerTls | None = None,
        fast_lane: bool | None = None,
    ) -> None:
        self._app = app
        self._fast_lane_on = fast_lane_enabled() if fast_lane is None else fast_lane
        self._fast_lane: FastLane | None = None
        self._fast_server: asyncio.Server | None = None
        self._ssl_context = tls.ssl_context() if tls is not None else None
        self._service = service
        self._host = host
        self._requested_port = port
        self._grace = grace_seconds
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        app.middlewares.append(self._track_in_flight)
        self.port: int | None = None

    @property
    def scheme(self) -> str:
        """``https`` when the port serves TLS, else ``http``."""
        return "https" if self._ssl_context is not None else "http"

    @property
    def fast_lane(self) -> bool:
        """Whether the fast lane serves this port (known once started)."""
        return self._fast_lane is not None

    @web.middleware
    async def _track_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self._request_started()
        try:
            return await handler(request)
        finally:
            self._request_finished()

    def _request_started(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _request_finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def _fast_routes(self) -> dict[str, object] | None:
        """The app's fast routes, or None when the fast lane does not serve this app."""
        routes = self._app.get(FAST_ROUTES)
        if not self._fast_lane_on or not routes:
            return None
        covered = [self._track_in_flight, *self._app.get(FAST_COVERED_MIDDLEWARES, [])]
        others = [m for m in self._app.middlewares if m not in covered]
        if others:
            _LOG.debug("%s: fast lane off, the app has middlewares it would bypass: %s", self._service, others)
            return None
        return routes

    async def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0)."""
        runner = web.AppRunner(
            self._app,
            access_log=None,
            shutdown_timeout=self._grace,
            logger=ServerErrorLogger(self._service, lambda: self.port),
        )
        await runner.setup()
        # Bind the socket ourselves so port 0 resolves to a known port before we report it.
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._requested_port))
        except OSError:
            sock.close()
            await runner.cleanup()
            raise
        sock.listen(512)
        routes = self._fast_routes()
        if routes is None:
            site = web.SockSite(runner, sock, ssl_context=self._ssl_context)
            await site.start()
            self._site = site
        else:
            lane = FastLane(
                routes,
                runner.server,  # type: ignore[arg-type]
                self._request_started,
                self._request_finished,
                self._app.get(FAST_WRAPPERS, []),
            )
            loop = asyncio.get_running_loop()
            self._fast_server = await loop.create_server(
                functools.partial(FastConnection, lane), sock=sock, ssl=self._ssl_context, backlog=512
            )
            self._fast_lane = lane
        self._runner = runner
        self.port = sock.getsockname()[1]
        _LOG.debug("listening on %s:%s", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests (up to the grace period), release resources."""
        runner, self._runner = self._runner, None
        site, self._site = self._site, None
        fast_server, self._fast_server = self._fast_server, None
        lane, self._fast_lane = self._fast_lane, None
        if runner is None:
            return
        if site is not None:
            await site.stop()  # no new connections from here on
        if fast_server is not None:
            fast_server.close()  # no new connections; idle keep-alive ones close now, busy ones after their answer
        if lane is not None:
            lane.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), self._grace)
        except TimeoutError:
            _LOG.warning("%d request(s) still running after %.0f s; stopping anyway", self._in_flight, self._grace)
        await runner.cleanup()  # the connections handed to aiohttp
        if lane is not None:
            lane.abort()
