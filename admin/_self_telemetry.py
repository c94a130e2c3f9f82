"""Self-telemetry: Sirius's own services trace themselves, with the native tracer, into their own lake.

When on, the process runs ``sirius.tracing`` as the process ``sirius`` (exe and property
``service_name``), delivering through its own ingestion service over loopback HTTP. What it
records is coarse, never per event: an async span per ingestion request (``ingestion.<route>``)
and per OTLP export (``otlp.<signal>``), a log line per FlightSQL query (``flightsql.query``,
from the query audit), an async span per daemon pass (``daemon.<kind>_pass``) and the ``sirius`` logger's INFO
lines (daemon passes that wrote something, new processes, failures) through a ``TracingHandler``.

It never recurses. The sink's posts carry the ``X-Sirius-Self-Telemetry`` header, and the
ingestion middleware neither traces those requests nor counts them as activity. Daemon passes
are what Sirius's own blocks would cause next (materialising them), so a pass (its span and its
lines) is recorded only within a couple of passes after something other than self-telemetry was
ingested: an idle Sirius writes nothing about itself. The sink's queue is small and bounded (blocks past it
are dropped and counted, never spooled), and every call is non-blocking.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace

from aiohttp import web
from multidict import CIMultiDict

from .. import tracing
from ..collector import add_fast_lane_middleware
from ..lakehouse import PassKind, PassReport
from ..otel_bridge import SplitRequest
from ..tracing import HttpTransport, SinkConfig, TelemetrySink, TracingHandler

__all__ = [
    "SELF_TELEMETRY_HEADER",
    "SIRIUS_SELF_TELEMETRY",
    "SelfTelemetry",
    "self_telemetry_default",
]

SIRIUS_SELF_TELEMETRY = "SIRIUS_SELF_TELEMETRY"
"""Env var: default of ``sirius up --self-telemetry`` (``0``/``false``/``off`` turn it off)."""

SELF_TELEMETRY_HEADER = "X-Sirius-Self-Telemetry"
"""Marks the self-telemetry sink's ingestion requests (never traced, never counted as activity)."""

SERVICE_NAME = "sirius"
QUEUE_BYTES = 4 * 1024 * 1024
_MAX_ROUTES = 32
PASS_CREDITS = 2
"""Passes of each kind traced after outside activity (the one covering it may be the second)."""
_DAEMON_LOGGER = "sirius.lakehouse._maintenance_daemon"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def self_telemetry_default(default: bool) -> bool:
    """``SIRIUS_SELF_TELEMETRY`` when set, else ``default``."""
    value = os.environ.get(SIRIUS_SELF_TELEMETRY, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "off", "no")


class _MarkedTransport(HttpTransport):
    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        self._headers[SELF_TELEMETRY_HEADER] = "1"


_TRACED_PASS: contextvars.ContextVar[bool] = contextvars.ContextVar("sirius_self_traced_pass", default=False)


class _ActivityGate(logging.Filter):
    """Traces daemon passes only after outside activity (no self-feeding loop).

    Outside activity gives each pass kind ``PASS_CREDITS`` traced passes (set, not added: a
    burst of requests is the same credit); a traced pass spends one. The daemon's INFO lines are
    recorded only inside a traced pass, so Sirius's own blocks, which are no outside activity,
    never cause another record of a pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._credits: dict[str, int] = {}

    def note_activity(self) -> None:
        with self._lock:
            for kind in PassKind:
                self._credits[kind.value] = PASS_CREDITS

    def take(self, kind: str) -> bool:
        with self._lock:
            left = self._credits.get(kind, 0)
            if left <= 0:
                return False
            self._credits[kind] = left - 1
            return True

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != _DAEMON_LOGGER or record.levelno >= logging.WARNING:
            return True
        return _TRACED_PASS.get()


class SelfTelemetry:
    """The self-telemetry of one ``sirius up`` process (``start`` after the ingestion service binds)."""

    def __init__(self) -> None:
        self._gate = _ActivityGate()
        self._handler: TracingHandler | None = None
        self._routes: dict[str, Callable[[Handler, web.Request], Awaitable[web.StreamResponse]]] = {}
        self._exports: dict[str, Callable[[Callable[[], Awaitable[SplitRequest]]], Awaitable[SplitRequest]]] = {}
        self._passes: dict[str, Callable[[Callable[[], Awaitable[PassReport]]], Awaitable[PassReport]]] = {}
        self.running = False
        self._previous_level = logging.NOTSET

    def start(
        self,
        ingestion_url: str | None,
        api_key: str | None,
        *,
        service: str | None = None,
        tls_ca_file: str | None = None,
    ) -> bool:
        """Start the tracer towards ``ingestion_url``; False (and a warning) if a tracer already runs.

        Args:
            ingestion_url: the ingestion service (None: ``MICROMEGAS_TELEMETRY_URL``, as any producer).
            api_key: its key (None: ``MICROMEGAS_INGESTION_API_KEY`` when ``ingestion_url`` is None).
            service: the single service this process runs (property ``sirius_service``), if one.
            tls_ca_file: CA bundle trusted for an ``https://`` ingestion URL (None: ``SIRIUS_TLS_CA_FILE``,
                else the system's trust store).
        """
        if tracing.is_running():
            logging.getLogger(__name__).warning("self-telemetry off: sirius.tracing already runs in this process")
            return False
        config = SinkConfig.resolve(ingestion_url, api_key, QUEUE_BYTES, spool_dir="off", ca_file=tls_ca_file)
        sink = TelemetrySink(replace(config, spool=None), transport_factory=_MarkedTransport)
        properties = {"service_name": SERVICE_NAME, "service.name": SERVICE_NAME}
        if service is not None:
            properties["sirius_service"] = service
        tracing.init(sink=sink, exe=SERVICE_NAME, properties=properties, max_queue_bytes=QUEUE_BYTES)
        handler = TracingHandler(logging.INFO)
        handler.addFilter(self._gate)
        logger = logging.getLogger("sirius")
        logger.addHandler(handler)
        self._previous_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        self._handler = handler
        self.running = True
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Remove the log handler and deliver what is left within ``timeout`` (before ingestion stops)."""
        if self._handler is not None:
            logger = logging.getLogger("sirius")
            logger.removeHandler(self._handler)
            logger.setLevel(self._previous_level)
            self._handler = None
        if self.running:
            self.running = False
            tracing.shutdown(timeout)

    def _traced(self, route: str) -> Callable[[Handler, web.Request], Awaitable[web.StreamResponse]]:
        traced = self._routes.get(route)
        if traced is None:

            async def call(handler: Handler, request: web.Request) -> web.StreamResponse:
                return await handler(request)

            traced = tracing.span(call, name=f"ingestion.{route}")
            self._routes[route] = traced
        return traced

    def _route(self, path: str) -> str:
        self._gate.note_activity()
        route = path.rsplit("/", 1)[-1] or "request"
        if route not in self._routes and len(self._routes) >= _MAX_ROUTES:
            route = "other"  # unknown paths share one span name: descriptors stay bounded
        return route

    def install(self, app: web.Application) -> None:
        """Trace ``app``'s ingestion requests: ``middleware``, and its equivalent for the HTTP fast lane."""
        add_fast_lane_middleware(app, self.middleware, self.fast_lane_wrapper)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """An async span per ingestion request, except the self-telemetry sink's own posts."""
        if not self.running or request.headers.get(SELF_TELEMETRY_HEADER) or request.method != "POST":
            return await handler(request)
        return await self._traced(self._route(request.path))(handler, request)

    async def fast_lane_wrapper(
        self, path: str, headers: CIMultiDict[str], run: Callable[[], Awaitable[web.Response]]
    ) -> web.Response:
        """``middleware`` for the POSTs the HTTP fast lane serves: the same span, around the handling."""
        if not self.running or headers.get(SELF_TELEMETRY_HEADER):
            return await run()
        traced = self._traced(self._route(path))
        return await traced(lambda _request: run(), None)  # type: ignore[arg-type,return-value]

    def note_activity(self) -> None:
        """Something other than self-telemetry arrived (OTLP exports): the next passes are traced."""
        self._gate.note_activity()

    async def wrap_export(self, signal: str, run: Callable[[], Awaitable[SplitRequest]]) -> SplitRequest:
        """The OTLP writer's ``export_wrapper``: an async span ``otlp.<signal>`` per export."""
        if not self.running:
            return await run()
        self._gate.note_activity()
        traced = self._exports.get(signal)
        if traced is None:

            async def call(run: Callable[[], Awaitable[SplitRequest]]) -> SplitRequest:
                return await run()

            traced = self._exports[signal] = tracing.span(call, name=f"otlp.{signal}")
        return await traced(run)

    async def wrap_pass(self, kind: PassKind, run: Callable[[], Awaitable[PassReport]]) -> PassReport:
        """The daemon's ``pass_wrapper``: an async span ``daemon.<kind>_pass`` when the gate allows."""
        if not self.running or not self._gate.take(kind.value):
            return await run()
        traced = self._passes.get(kind.value)
        if traced is None:

            async def call(run: Callable[[], Awaitable[PassReport]]) -> PassReport:
                return await run()

            traced = self._passes[kind.value] = tracing.span(call, name=f"daemon.{kind.value}_pass")
        token = _TRACED_PASS.set(True)
        try:
            return await traced(run)
        finally:
            _TRACED_PASS.reset(token)
