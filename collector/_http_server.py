"""Running an aiohttp application on a TCP port with a graceful stop.

Shared by every HTTP service Sirius runs (ingestion now; OTLP/HTTP and the gateway later), so
binding, port 0 resolution and the drain-on-stop behaviour live in one place.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

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
    ) -> None:
        self._app = app
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

    @web.middleware
    async def _track_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self._in_flight += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

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
        site = web.SockSite(runner, sock, ssl_context=self._ssl_context)
        await site.start()
        self._runner = runner
        self._site = site
        self.port = sock.getsockname()[1]
        _LOG.debug("listening on %s:%s", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests (up to the grace period), release resources."""
        runner, self._runner = self._runner, None
        site, self._site = self._site, None
        if runner is None:
            return
        if site is not None:
            await site.stop()  # no new connections from here on
        try:
            await asyncio.wait_for(self._idle.wait(), self._grace)
        except TimeoutError:
            _LOG.warning("%d request(s) still running after %.0f s; stopping anyway", self._in_flight, self._grace)
        await runner.cleanup()
