"""The OTLP service: gRPC on :4317 and HTTP on :4318 over one writer and one in-flight budget.

``sirius otlp`` runs it alone; ``sirius up`` runs it next to the ingestion service (which also
serves ``/ingestion/otlp/v1/*`` on its own port, as Micromegas does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..identity import AccessPolicy, Authenticator, as_access_policy
from ..lakehouse import DataLake, ObjectStore
from ._admission import (
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    DEFAULT_RETRY_AFTER_SECONDS,
    InflightBudget,
)
from ._environment_variables import (
    SIRIUS_OTLP_MAX_INFLIGHT_BYTES,
    SIRIUS_OTLP_MAX_INFLIGHT_REQUESTS,
    SIRIUS_OTLP_MAX_REQUEST_BYTES,
    read_int,
)
from ._http_server import HttpServer
from ._otlp_grpc import OtlpGrpcServer
from ._otlp_http import DEFAULT_MAX_REQUEST_BYTES, OtlpHttpRoutes
from ._otlp_writer import OtlpWriter
from ._tls import ServerTls

__all__ = ["DEFAULT_OTLP_GRPC_PORT", "DEFAULT_OTLP_HTTP_PORT", "OtlpLimits", "OtlpPorts", "OtlpService"]

DEFAULT_OTLP_GRPC_PORT = 4317
DEFAULT_OTLP_HTTP_PORT = 4318


@dataclass(frozen=True, slots=True)
class OtlpLimits:
    """Size and concurrency limits of the OTLP receivers.

    Attributes:
        max_request_bytes: largest request after decompression (413 / RESOURCE_EXHAUSTED past it).
        max_inflight_requests: requests handled at once (429 / UNAVAILABLE past it).
        max_inflight_bytes: decompressed bytes handled at once (429 / UNAVAILABLE past it).
        retry_after_seconds: delay asked of refused clients (``Retry-After``, ``RetryInfo``).
    """

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS

    def __post_init__(self) -> None:
        if self.max_request_bytes <= 0 or self.max_inflight_bytes <= 0:
            msg = "OTLP byte limits must be positive"
            raise ValueError(msg)
        if self.max_inflight_requests < 0 or self.retry_after_seconds < 0:
            msg = "OTLP in-flight request limit and retry delay must not be negative"
            raise ValueError(msg)

    @classmethod
    def resolve(cls) -> OtlpLimits:
        """Defaults overridden by ``SIRIUS_OTLP_MAX_REQUEST_BYTES`` / ``…_INFLIGHT_REQUESTS`` / ``…_INFLIGHT_BYTES``.

        Raises:
            ValueError: a variable is not a valid integer.
        """
        default = cls()
        return cls(
            max_request_bytes=read_int(SIRIUS_OTLP_MAX_REQUEST_BYTES) or default.max_request_bytes,
            max_inflight_requests=read_int(SIRIUS_OTLP_MAX_INFLIGHT_REQUESTS) or default.max_inflight_requests,
            max_inflight_bytes=read_int(SIRIUS_OTLP_MAX_INFLIGHT_BYTES) or default.max_inflight_bytes,
        )

    def budget(self) -> InflightBudget:
        """A fresh in-flight budget with these limits."""
        return InflightBudget(self.max_inflight_requests, self.max_inflight_bytes, self.retry_after_seconds)


@dataclass(frozen=True, slots=True)
class OtlpPorts:
    """Ports the OTLP service listens on (None for a receiver that was not started)."""

    grpc: int | None
    http: int | None


@dataclass(slots=True)
class _Running:
    grpc: OtlpGrpcServer | None = None
    http: HttpServer | None = None


class OtlpService:
    """OTLP/gRPC and OTLP/HTTP receivers writing to the lake.

    Args:
        lake: process, stream and block rows.
        store: payload objects.
        keys: the service's access policy (``sirius.identity.build_authenticator``) or bare
            environment keys; None = no authentication (check the bind with
            ``check_bind_is_safe`` first). Both receivers use it.
        host: bind address of both receivers.
        grpc_port: gRPC port (0 = any free port, None = no gRPC receiver).
        http_port: HTTP port (0 = any free port, None = no HTTP receiver).
        limits: size and concurrency limits (``OtlpLimits.resolve()`` when omitted).
        grace_seconds: how long ``stop`` lets in-flight requests finish.
        clock: Unix-ns wall clock for blocks whose records carry no time.
        tls: both receivers serve TLS with this certificate (None: plain text).
    """

    def __init__(
        self,
        lake: DataLake,
        store: ObjectStore,
        keys: Authenticator | None = None,
        *,
        host: str = "127.0.0.1",
        grpc_port: int | None = DEFAULT_OTLP_GRPC_PORT,
        http_port: int | None = DEFAULT_OTLP_HTTP_PORT,
        limits: OtlpLimits | None = None,
        grace_seconds: float = 25.0,
        clock: Callable[[], int] = time.time_ns,
        tls: ServerTls | None = None,
    ) -> None:
        self.tls = tls
        self.limits = limits or OtlpLimits.resolve()
        self.keys: AccessPolicy = as_access_policy(keys)
        self.host = host
        self.writer = OtlpWriter(lake, store, clock=clock, retry_after=self.limits.retry_after_seconds)
        self.budget = self.limits.budget()
        self._grpc_port = grpc_port
        self._http_port = http_port
        self._grace = grace_seconds
        self._running = _Running()

    def http_routes(self) -> OtlpHttpRoutes:
        """OTLP/HTTP routes sharing this service's writer, keys, budget and limits."""
        return OtlpHttpRoutes(
            self.writer, self.keys, budget=self.budget, max_request_bytes=self.limits.max_request_bytes
        )

    async def start(self) -> OtlpPorts:
        """Start the receivers; on failure, stop what was started and re-raise.

        Returns:
            The bound ports.
        """
        try:
            grpc_port = http_port = None
            if self._grpc_port is not None:
                grpc_server = OtlpGrpcServer(
                    self.writer,
                    self.host,
                    self._grpc_port,
                    self.keys,
                    budget=self.budget,
                    max_request_bytes=self.limits.max_request_bytes,
                    tls=self.tls,
                )
                grpc_port = await grpc_server.start()
                self._running.grpc = grpc_server
            if self._http_port is not None:
                # auto_decompress off: _otlp_codec decompresses under the size limit instead.
                app = web.Application(
                    client_max_size=self.limits.max_request_bytes, handler_args={"auto_decompress": False}
                )
                self.http_routes().add_to(app)
                http_server = HttpServer(
                    app, self.host, self._http_port, grace_seconds=self._grace, service="OTLP/HTTP", tls=self.tls
                )
                http_port = await http_server.start()
                self._running.http = http_server
        except BaseException:
            await self.stop()
            raise
        return OtlpPorts(grpc=grpc_port, http=http_port)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace period), release the ports."""
        running, self._running = self._running, _Running()
        if running.http is not None:
            await running.http.stop()
        if running.grpc is not None:
            await running.grpc.stop(self._grace)
