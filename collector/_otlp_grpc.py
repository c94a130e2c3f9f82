"""OTLP/gRPC receiver: ``TraceService``, ``LogsService``, ``MetricsService`` ``Export`` on one port.

A ``grpc.aio`` server with raw-bytes handlers, so decoding errors become ``INVALID_ARGUMENT``
with the decoder's reason instead of grpc's generic deserialisation failure. gRPC itself
decompresses ``grpc-encoding: gzip|deflate`` messages and enforces the receive limit
(``grpc.max_receive_message_length`` = the 64 MiB request limit) with ``RESOURCE_EXHAUSTED``.

Failures (``otlp.md`` §4.3): ``UNAUTHENTICATED`` without a valid Bearer key in the
``authorization`` metadata; ``INVALID_ARGUMENT`` + ``BadRequest`` for undecodable requests;
``UNAVAILABLE`` for overload and storage failures, with ``RetryInfo`` attached **twice** — in the
standard ``grpc-status-details-bin`` trailer (a ``google.rpc.Status``) and in the bare
``google.rpc.retryinfo-bin`` trailer, the only one the Python OTLP exporter reads.
"""

from __future__ import annotations

import functools
import logging

import grpc
import grpc.aio

from ..identity import AuthenticationError, Authenticator, as_access_policy, refusal_detail
from ..otel_bridge import SIGNALS, Signal
from ._admission import InflightBudget
from ._exceptions import OtlpRequestError, OtlpUnauthenticatedError
from ._otlp_codec import PROTOBUF, error_status, export_response_bytes, retry_info
from ._otlp_http import DEFAULT_MAX_REQUEST_BYTES
from ._otlp_writer import OtlpWriter
from ._tls import ServerTls

__all__ = ["OtlpGrpcServer"]

_LOG = logging.getLogger(__name__)

_MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # otlp.md §3: responses are capped at 4 MiB
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OtlpGrpcServer:
    """The three OTLP ``Export`` services on ``host:port``.

    Args:
        writer: stores the requests.
        host: bind address.
        port: 0 picks a free port.
        keys: the service's access policy, or bare environment keys (None = no authentication).
        budget: in-flight bound shared with the service's other receivers.
        max_request_bytes: largest (decompressed) message accepted.
        tls: serve TLS with this certificate (None: plain text).
    """

    def __init__(
        self,
        writer: OtlpWriter,
        host: str,
        port: int,
        keys: Authenticator | None = None,
        *,
        budget: InflightBudget | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        tls: ServerTls | None = None,
    ) -> None:
        self._writer = writer
        self._tls = tls
        self._host = host
        self._requested_port = port
        self._keys = as_access_policy(keys)
        self._budget = budget or InflightBudget()
        self._limit = max_request_bytes
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and start serving; return the bound port."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._limit),
                ("grpc.max_send_message_length", _MAX_RESPONSE_BYTES),
                ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
            ]
        )
        handlers = []
        for signal in SIGNALS.values():
            method = grpc.unary_unary_rpc_method_handler(functools.partial(self._export, signal))
            handlers.append(grpc.method_handlers_generic_handler(signal.grpc_service, {"Export": method}))
        server.add_generic_rpc_handlers(tuple(handlers))
        address = _host_port(self._host, self._requested_port)
        try:
            if self._tls is None:
                port = server.add_insecure_port(address)
            else:
                credentials = grpc.ssl_server_credentials(((self._tls.private_key, self._tls.certificate_chain),))
                port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:  # grpcio raises RuntimeError when the bind fails
            msg = f"cannot listen on {_host_port(self._host, self._requested_port)}: {exc}"
            raise OSError(msg) from exc
        if port == 0:
            msg = f"cannot listen on {_host_port(self._host, self._requested_port)}"
            raise OSError(msg)
        await server.start()
        self._server = server
        self.port = port
        return port

    async def stop(self, grace: float | None = 25.0) -> None:
        """Stop accepting and let in-flight RPCs finish for up to ``grace`` seconds."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def _export(self, signal: Signal, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            metadata = dict(context.invocation_metadata() or ())
            try:
                principal = self._keys.require(_text(metadata.get("authorization")))
            except AuthenticationError as exc:
                msg = f"missing or invalid authorization: Bearer key{refusal_detail(exc)}"
                raise OtlpUnauthenticatedError(msg) from None
            ticket = self._budget.admit()
            try:
                ticket.reserve(len(request))
                split = await self._writer.export_protobuf(signal, request, principal=principal)
            finally:
                ticket.release()
        except OtlpRequestError as exc:
            error = exc
        except Exception:
            _LOG.exception("OTLP/gRPC %s request failed", signal.name)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise  # unreachable: abort raises
        else:
            return export_response_bytes(signal, split, PROTOBUF)
        status = error_status(error)
        trailers: list[tuple[str, bytes]] = [("grpc-status-details-bin", status.SerializeToString())]
        if error.retry_after is not None:
            trailers.append(("google.rpc.retryinfo-bin", retry_info(error.retry_after).SerializeToString()))
        await context.abort(_CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.message, tuple(trailers))
        raise AssertionError  # unreachable: abort raises


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value
