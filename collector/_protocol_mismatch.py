"""One clear log line when a gRPC (HTTP/2) client talks to an HTTP/1.1 port.

An OTLP gRPC exporter pointed at the OTLP/HTTP port (4318) or the ingestion port (9000) opens
the connection with the HTTP/2 preface ``PRI * HTTP/2.0``. aiohttp answers 400 and, by default,
logs a traceback at ERROR for every attempt; the exporter retries with backoff, so the console
fills with identical tracebacks that do not say what is wrong. :class:`ServerErrorLogger` is the
logger aiohttp's request handler uses in Sirius's HTTP services: it turns that case into one
WARNING naming the peer, the port and the fix, at most once per peer per ``interval_seconds``,
and passes every other message to aiohttp's own logger unchanged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import BadHttpMessage, InvalidURLError

__all__ = ["DEFAULT_GRPC_PORT", "ServerErrorLogger", "is_http2_preface_error"]

_LOG = logging.getLogger("sirius.collector.http")
DEFAULT_GRPC_PORT = 4317
_MAX_PEERS = 4096  # bound on the rate-limit table (old entries are dropped beyond it)


def is_http2_preface_error(exc: BaseException | None) -> bool:
    """True when aiohttp rejected a request because it was the HTTP/2 connection preface.

    The C parser reports ``Pause on PRI/Upgrade``; the pure-Python one (``AIOHTTP_NO_EXTENSIONS``)
    rejects the target ``*`` of the ``PRI`` method as a URL (or quotes ``PRI`` / ``HTTP/2.0``).
    """
    if not isinstance(exc, BadHttpMessage):
        return False
    if isinstance(exc, InvalidURLError) and str(exc.message).strip() == "*":
        return True
    text = f"{exc.message} {exc}"
    return "PRI/Upgrade" in text or "PRI *" in text or "HTTP/2.0" in text or "'PRI'" in text


class ServerErrorLogger(logging.LoggerAdapter):  # type: ignore[type-arg] - generic only in typeshed
    """aiohttp's ``aiohttp.server`` logger, with HTTP/2 prefaces reported as one rate-limited line.

    Args:
        service: what the port serves, for the message (e.g. ``"OTLP/HTTP"``).
        port: returns the bound port (known only once the server started).
        interval_seconds: one line per peer per this many seconds.
        clock: monotonic clock (injected by tests).
    """

    def __init__(
        self,
        service: str,
        port: Callable[[], int | None],
        *,
        interval_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._service = service
        self._port = port
        self._interval = interval_seconds
        self._clock = clock
        self._last: dict[str, float] = {}

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        """Log like aiohttp's logger, but an HTTP/2 client's preface becomes one rate-limited line."""
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if is_http2_preface_error(exc):
            self._http2_client(str(args[0]) if args else "unknown peer")
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)

    def _http2_client(self, peer: str) -> None:
        now = self._clock()
        last = self._last.get(peer)
        if last is not None and now - last < self._interval:
            return
        if len(self._last) >= _MAX_PEERS:
            self._last = {p: t for p, t in self._last.items() if now - t < self._interval}
        self._last[peer] = now
        _LOG.warning(
            "a gRPC (HTTP/2) client at %s connected to the %s port %s, which serves HTTP/1.1 only; "
            "use the OTLP gRPC port (default %d) for gRPC exporters, or an http/protobuf exporter here "
            "(repeats from this address are not logged for %.0f s)",
            peer,
            self._service,
            self._port() or "?",
            DEFAULT_GRPC_PORT,
            self._interval,
        )
