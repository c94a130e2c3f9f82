"""OTLP/HTTP routes: ``POST /v1/{traces,logs,metrics}`` (and the same under ``/ingestion/otlp``).

Per request (``otlp.md`` §2-5, checklist §12): the ``Content-Type`` picks protobuf or JSON (415
otherwise) and the reply uses the same; a Bearer key is checked when keys are configured (401);
the in-flight budget admits it or answers 429 with ``Retry-After``; the body is read and
decompressed under the size limit (413), decoded (400 with a ``BadRequest``), stored (503 with
``Retry-After`` when storage fails) and answered with an ``Export*ServiceResponse`` carrying
``partial_success`` when some items will not be queryable. Error bodies are ``google.rpc.Status``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from multidict import CIMultiDict

from ..identity import AuthenticationError, Authenticator, Principal, as_access_policy, refusal_detail
from ..otel_bridge import SIGNALS, Signal
from ._admission import AdmissionTicket, InflightBudget
from ._auth import PRINCIPAL_KEY
from ._exceptions import (
    CODE_INTERNAL,
    OtlpInvalidRequestError,
    OtlpRequestError,
    OtlpRequestTooLargeError,
    OtlpUnauthenticatedError,
    OtlpUnsupportedMediaTypeError,
)
from ._fast_http import FAST_ROUTES
from ._otlp_codec import (
    PROTOBUF,
    decompress,
    encode_message,
    error_status,
    export_response_bytes,
    media_type,
    parse_request,
)
from ._otlp_writer import OtlpWriter

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "OtlpExchange", "OtlpHttpRoutes", "read_body"]

_LOG = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Largest request accepted, after decompression (OTLP 1.11 recommends 64 MiB)."""

_SUPPORTED = "application/x-protobuf or application/json"
_PROTOBUF = "application/x-protobuf"


class OtlpHttpRoutes:
    """The OTLP/HTTP handlers over one writer.

    Args:
        writer: stores the requests.
        keys: the service's access policy, or bare environment keys (None = no authentication).
        budget: in-flight bound shared with the service's other receivers.
        max_request_bytes: limit on the (decompressed) body.
    """

    def __init__(
        self,
        writer: OtlpWriter,
        keys: Authenticator | None = None,
        *,
        budget: InflightBudget | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self._writer = writer
        self._keys = as_access_policy(keys)
        self._budget = budget or InflightBudget()
        self._limit = max_request_bytes

    def add_to(self, app: web.Application, prefix: str = "") -> None:
        """Register ``POST {prefix}/v1/{traces,logs,metrics}`` on ``app`` (other methods get 405).

        The same routes go to the app's fast lane (``FAST_ROUTES``), which serves them below aiohttp.
        """
        fast_routes = app.get(FAST_ROUTES)
        if fast_routes is None:
            fast_routes = app[FAST_ROUTES] = {}
        for signal in SIGNALS.values():
            path = f"{prefix}/v1/{signal.name}"
            app.router.add_post(path, functools.partial(self._handle, signal))
            fast_routes[path] = _OtlpFastRoute(self, signal)

    def open(
        self, signal: Signal, headers: Mapping[str, str], content_length: int | None
    ) -> OtlpExchange | web.Response:
        """Admit a request from its headers, or the answer refusing it before its body is read.

        In order: 415 for the Content-Type, 401 for the key, 429 past the in-flight budget, 413 for
        a declared size over the limit. ``headers`` must look names up case-insensitively.
        """
        media = media_type(headers.get("Content-Type"))
        if media is None:
            # The spec's error body is a Status in the request's encoding; an unknown one gets protobuf.
            got = headers.get("Content-Type") or "none"
            refusal = OtlpUnsupportedMediaTypeError(f"unsupported Content-Type {got!r}: use {_SUPPORTED}")
            return self._error(refusal, _PROTOBUF, PROTOBUF)
        content_type, encoding = media
        try:
            try:
                principal = self._keys.require(headers.get("Authorization"))
            except AuthenticationError as exc:
                msg = f"missing or invalid Authorization: Bearer key{refusal_detail(exc)}"
                raise OtlpUnauthenticatedError(msg) from None
            ticket = self._budget.admit()
        except OtlpRequestError as exc:
            return self._error(exc, content_type, encoding)
        declared = content_length or 0
        exchange = OtlpExchange(
            self,
            signal,
            media,
            principal=principal,
            ticket=ticket,
            declared=declared,
            content_encoding=headers.get("Content-Encoding"),
        )
        try:
            # The declared size is counted before a byte is read: a burst of large uploads is refused.
            ticket.reserve(min(declared, self._limit))
            if declared > self._limit:
                msg = f"request body of {declared} bytes is larger than {self._limit} bytes"
                raise OtlpRequestTooLargeError(msg)
        except OtlpRequestError as exc:
            return exchange.refuse(exc)
        return exchange

    async def _handle(self, signal: Signal, request: web.Request) -> web.StreamResponse:
        exchange = self.open(signal, request.headers, request.content_length)
        if isinstance(exchange, web.Response):
            return exchange
        request[PRINCIPAL_KEY] = exchange.principal
        try:
            body = await _read_raw(request, self._limit)
        except OtlpRequestError as exc:
            return exchange.refuse(exc)
        except Exception:  # noqa: BLE001 - as a failing handler: 500 with a Status body
            exchange.release()
            return exchange.internal_error()
        return await exchange.finish(body)

    @staticmethod
    def _error(exc: OtlpRequestError, content_type: str, encoding: str) -> web.Response:
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(exc.retry_after))
        if isinstance(exc, OtlpUnauthenticatedError):
            headers["WWW-Authenticate"] = "Bearer"
        body = encode_message(error_status(exc), encoding)
        return web.Response(status=exc.http_status, body=body, content_type=content_type, headers=headers)


class OtlpExchange:
    """One admitted OTLP/HTTP request, from its headers to its answer (aiohttp's route and the fast lane)."""

    __slots__ = ("_content_encoding", "_declared", "_media", "_routes", "_signal", "_ticket", "principal")

    def __init__(
        self,
        routes: OtlpHttpRoutes,
        signal: Signal,
        media: tuple[str, str],
        *,
        principal: Principal,
        ticket: AdmissionTicket,
        declared: int,
        content_encoding: str | None,
    ) -> None:
        self._routes = routes
        self._signal = signal
        self._media = media
        self.principal = principal
        self._ticket = ticket
        self._declared = declared
        self._content_encoding = content_encoding

    async def finish(self, body: bytes | bytearray) -> web.Response:
        """Decompress, decode and store ``body``; the export response or the error answer."""
        routes, signal = self._routes, self._signal
        content_type, encoding = self._media
        ticket, limit = self._ticket, routes._limit
        try:
            try:
                if len(body) > limit:
                    msg = f"request body is larger than {limit} bytes"
                    raise OtlpRequestTooLargeError(msg)
                data = _decompressed(body, self._declared, self._content_encoding, limit, ticket)
                del body
                writer = routes._writer
                if encoding == PROTOBUF:  # the payloads are views of ``data``: no parse, no copy
                    split = await writer.export_protobuf(signal, data, principal=self.principal)
                else:
                    message = parse_request(signal, data, encoding)
                    del data
                    split = await writer.export(signal, message, principal=self.principal)
            finally:
                ticket.release()
        except OtlpRequestError as exc:
            return OtlpHttpRoutes._error(exc, content_type, encoding)
        except Exception:  # noqa: BLE001 - a bug answers 500 with a Status body and the service keeps serving
            return self.internal_error()
        return web.Response(body=export_response_bytes(signal, split, encoding), content_type=content_type)

    def refuse(self, exc: OtlpRequestError) -> web.Response:
        """Release the request and answer ``exc``."""
        self._ticket.release()
        return OtlpHttpRoutes._error(exc, *self._media)

    def malformed(self, reason: str) -> web.Response:
        """The body could not be read (broken chunked encoding): 400."""
        return self.refuse(OtlpInvalidRequestError(f"malformed request body: {reason}"))

    def too_large(self) -> web.Response:
        """A body without ``Content-Length`` grew past the limit: 413."""
        return self.refuse(OtlpRequestTooLargeError(f"request body is larger than {self._routes._limit} bytes"))

    def release(self) -> None:
        """The connection ended before the body: give the budget back."""
        self._ticket.release()

    def internal_error(self) -> web.Response:
        """Log the failure being handled and answer 500 with a Status body."""
        _LOG.exception("OTLP/HTTP %s request failed", self._signal.name)
        content_type, encoding = self._media
        status = error_status(OtlpRequestError("internal error"), code=CODE_INTERNAL)
        return web.Response(status=500, body=encode_message(status, encoding), content_type=content_type)


class _OtlpFastRoute:
    """One OTLP/HTTP route as the fast lane serves it (``OtlpHttpRoutes.open`` + ``OtlpExchange``)."""

    refuses_before_continue = False  # aiohttp's default expect handler: 100 Continue first

    def __init__(self, routes: OtlpHttpRoutes, signal: Signal) -> None:
        self._routes = routes
        self._signal = signal
        self.max_body_bytes = routes._limit

    def open(self, headers: CIMultiDict[str], content_length: int | None) -> OtlpExchange | web.Response:
        return self._routes.open(self._signal, headers, content_length)


async def read_body(request: web.Request, limit: int, ticket: AdmissionTicket) -> bytes:
    """The body of ``request``, decompressed; 413 past ``limit`` bytes, 400 if malformed.

    ``ticket`` counts what the request holds in memory: the body (its declared size up front, so
    a burst of large uploads is refused before it is read), then the decompressed data.
    """
    declared = request.content_length or 0
    ticket.reserve(min(declared, limit))
    body = await _read_raw(request, limit)
    return _decompressed(body, declared, request.headers.get("Content-Encoding"), limit, ticket)


def _decompressed(
    body: bytes | bytearray, declared: int, content_encoding: str | None, limit: int, ticket: AdmissionTicket
) -> bytes | bytearray:
    """``body`` decompressed; ``ticket`` counts what it holds beyond the ``declared`` size reserved before."""
    ticket.reserve(max(0, len(body) - declared))
    data = decompress(body, content_encoding, limit)
    if data is not body:
        ticket.reserve(len(data))
    return data


async def _read_raw(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        msg = f"request body of {declared} bytes is larger than {limit} bytes"
        raise OtlpRequestTooLargeError(msg)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > limit:
                msg = f"request body is larger than {limit} bytes"
                raise OtlpRequestTooLargeError(msg)
            chunks.append(chunk)
    except (RequestPayloadError, ValueError) as exc:  # broken chunked encoding, truncated body
        msg = f"malformed request body: {exc}"
        raise OtlpInvalidRequestError(msg) from exc
    return b"".join(chunks)
