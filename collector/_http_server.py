"""Running an aiohttp application on a TCP port with a graceful stop.

Shared by every HTTP service Sirius runs (ingestion now; OTLP/HTTP and the gateway later), so
binding, port 0 resolution and the drain-on-stop behaviour live in one place.
"""

from __future__ import annotations

import logging
import socket

from aiohttp import web

_LOG = logging.getLogger(__name__)


class HttpServer:
    """One aiohttp application bound to ``host:port``.

    ``stop()`` closes the listening socket first, then waits up to ``grace_seconds`` for
    in-flight requests to finish, so a 200 already promised is never cut off.
    """

    def __init__(self, app: web.Application, host: str, port: int, *, grace_seconds: float = 25.0) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._grace = grace_seconds
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0)."""
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=self._grace)
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
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self.port = sock.getsockname()[1]
        _LOG.debug("listening on %s:%s", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests (up to the grace period), release resources."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
