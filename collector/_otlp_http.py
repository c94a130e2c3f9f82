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

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from ..identity import AuthenticationError, Authenticator, as_access_policy, refusal_detail
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

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "OtlpHttpRoutes", "read_body"]

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
        """Register ``POST {prefix}/v1/{traces,logs,metrics}`` on ``app`` (other methods get 405)."""
        for signal in SIGNALS.values():
            app.router.add_post(f"{prefix}/v1/{signal.name}", functools.partial(self._handle, signal))

    async def _handle(self, signal: Signal, request: web.Request) -> web.StreamResponse:
        media = media_type(request.headers.get("Content-Type"))
        if media is None:
            # The spec's error body is a Status in the request's encoding; an unknown one gets protobuf.
            got = request.headers.get("Content-Type") or "none"
            refusal = OtlpUnsupportedMediaTypeError(f"unsupported Content-Type {got!r}: use {_SUPPORTED}")
            return self._error(refusal, _PROTOBUF, PROTOBUF)
        content_type, encoding = media
        try:
            try:
                request[PRINCIPAL_KEY] = self._keys.require(request.headers.get("Authorization"))
            except AuthenticationError as exc:
                msg = f"missing or invalid Authorization: Bearer key{refusal_detail(exc)}"
                raise OtlpUnauthenticatedError(msg) from None
            ticket = self._budget.admit()
            try:
                data = await read_body(request, self._limit, ticket)
                principal = request[PRINCIPAL_KEY]
                if encoding == PROTOBUF:  # the payloads are views of ``data``: no parse, no copy
                    split = await self._writer.export_protobuf(signal, data, principal=principal)
                else:
                    message = parse_request(signal, data, encoding)
                    del data
                    split = await self._writer.export(signal, message, principal=principal)
            finally:
                ticket.release()
        except OtlpRequestError as exc:
            return self._error(exc, content_type, encoding)
        except Exception:  # noqa: BLE001 - a bug answers 500 with a Status body and the service keeps serving
            _LOG.exception("OTLP/HTTP %s request failed", signal.name)
            failure = OtlpRequestError("internal error")
            status = error_status(failure, code=CODE_INTERNAL)
            return web.Response(status=500, body=encode_message(status, encoding), content_type=content_type)
        return web.Response(body=export_response_bytes(signal, split, encoding), content_type=content_type)

    @staticmethod
    def _error(exc: OtlpRequestError, content_type: str, encoding: str) -> web.Response:
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(exc.retry_after))
        if isinstance(exc, OtlpUnauthenticatedError):
            headers["WWW-Authenticate"] = "Bearer"
        body = encode_message(error_status(exc), encoding)
        return web.Response(status=exc.http_status, body=body, content_type=content_type, headers=headers)


async def read_body(request: web.Request, limit: int, ticket: AdmissionTicket) -> bytes:
    """The body of ``request``, decompressed; 413 past ``limit`` bytes, 400 if malformed.

    ``ticket`` counts what the request holds in memory: the body (its declared size up front, so
    a burst of large uploads is refused before it is read), then the decompressed data.
    """
    declared = request.content_length or 0
    ticket.reserve(min(declared, limit))
    body = await _read_raw(request, limit)
    ticket.reserve(max(0, len(body) - declared))
    data = decompress(body, request.headers.get("Content-Encoding"), limit)
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
