"""Routes for third-party pushers on the ingestion port: the generic webhook and Amazon Data Firehose.

* ``POST /ingestion/webhook`` (``_webhook.py``): Bearer-authenticated like the native routes
  (by the ingestion service's middleware); answers 200 with an empty body, or a ``text/plain``
  reason: 400 empty or undecodable body, 413 over the size limit, 415 unknown
  ``Content-Encoding``, 429 / 503 with ``Retry-After``.
* ``POST /ingestion/otlp/v1/metrics/firehose`` (CloudWatch Metric Streams, OpenTelemetry 1.0
  format, ``_cloudwatch_metrics.py``) and ``POST /ingestion/cloudwatch/v1/logs/firehose``
  (CloudWatch Logs subscription filters, ``_cloudwatch_logs.py``): authenticated by
  ``X-Amz-Firehose-Access-Key`` against the same API keys (Firehose cannot send
  ``Authorization``); every answer is Firehose's JSON (``_firehose.py``) echoing the request id:
  401 missing or unknown key, 400 malformed envelope, base64, framing, gzip or JSON, 413 over
  the limit, 429 / 503 with ``Retry-After`` (Firehose retries non-200 answers).

Every record of a request is decoded before anything is stored, so a bad request changes
nothing. Blocks are stored through the OTLP writer, whose ids are a pure function of the
content: a retried delivery (same ``requestId``, same records) finds its blocks and stores
nothing twice. Requests take a slot and their bytes in the service's in-flight budget; bodies
and decompressed data are bounded by ``max_request_bytes``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..identity import BEARER_PREFIX, AuthenticationError, Authenticator, Principal, as_access_policy, refusal_detail
from ..otel_bridge import LOGS, METRICS
from ._admission import AdmissionTicket, InflightBudget
from ._auth import PRINCIPAL_KEY, request_principal
from ._cloudwatch_logs import decode_logs_record, logs_request
from ._cloudwatch_metrics import decode_metric_stream_records
from ._exceptions import OtlpInvalidRequestError, OtlpRequestError, OtlpUnauthenticatedError
from ._firehose import HEADER_ACCESS_KEY, HEADER_REQUEST_ID, FirehoseEnvelope, decode_envelope, reply_body
from ._otlp_http import read_body
from ._otlp_writer import OtlpWriter
from ._webhook import (
    HEADER_SERVICE_NAME,
    HEADER_SERVICE_NAMESPACE,
    HEADER_TARGET,
    canonical_headers,
    header_text,
    webhook_request,
)

__all__ = ["FIREHOSE_PATHS", "LOGS_FIREHOSE_PATH", "METRICS_FIREHOSE_PATH", "WEBHOOK_PATH", "IntegrationRoutes"]

_LOG = logging.getLogger(__name__)

WEBHOOK_PATH = "/ingestion/webhook"
METRICS_FIREHOSE_PATH = "/ingestion/otlp/v1/metrics/firehose"
LOGS_FIREHOSE_PATH = "/ingestion/cloudwatch/v1/logs/firehose"
FIREHOSE_PATHS = frozenset({METRICS_FIREHOSE_PATH, LOGS_FIREHOSE_PATH})
"""Routes that check their own credential (not ``Authorization``)."""

Store = Callable[[FirehoseEnvelope, AdmissionTicket, Principal], Awaitable[None]]


class IntegrationRoutes:
    """The webhook and Firehose handlers over one OTLP writer.

    Args:
        writer: stores the resulting OTLP requests.
        keys: the service's access policy: the webhook's Bearer key and the Firehose access key
            are checked against it (None = no authentication).
        budget: in-flight bound shared with the service's other routes.
        max_request_bytes: limit on a body, before and after decompression (413 past it).
    """

    def __init__(
        self, writer: OtlpWriter, keys: Authenticator | None, *, budget: InflightBudget, max_request_bytes: int
    ) -> None:
        self._writer = writer
        self._keys = as_access_policy(keys)
        self._budget = budget
        self._limit = max_request_bytes

    def add_to(self, app: web.Application) -> None:
        """Register the three ``POST`` routes on ``app``."""
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        app.router.add_post(METRICS_FIREHOSE_PATH, functools.partial(self._firehose, self._store_metrics))
        app.router.add_post(LOGS_FIREHOSE_PATH, functools.partial(self._firehose, self._store_logs))

    # -- webhook --------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        try:
            with self._budget.admit() as ticket:
                data = await read_body(request, self._limit, ticket)
                if not data:
                    raise OtlpInvalidRequestError("empty body")
                raw = request.raw_headers
                message = webhook_request(
                    header_text(raw, HEADER_SERVICE_NAME),
                    header_text(raw, HEADER_SERVICE_NAMESPACE),
                    header_text(raw, HEADER_TARGET) or "",
                    data,
                )
                del data
                await self._writer.export(
                    LOGS, message, extra_hash_input=canonical_headers(raw), principal=request_principal(request)
                )
        except OtlpRequestError as exc:
            return web.Response(status=exc.http_status, text=exc.message, headers=_retry_after(exc))
        except Exception:  # noqa: BLE001 - a bug answers 500 and the service keeps serving
            _LOG.exception("webhook request failed")
            return web.Response(status=500, text="internal error")
        return web.Response()

    # -- Firehose -------------------------------------------------------------------------

    async def _firehose(self, store: Store, request: web.Request) -> web.Response:
        request_id = request.headers.get(HEADER_REQUEST_ID, "")
        try:
            self._authenticate(request)
            with self._budget.admit() as ticket:
                envelope = decode_envelope(await read_body(request, self._limit, ticket))
                request_id = request_id or envelope.request_id
                ticket.reserve(sum(len(record) for record in envelope.records))  # held beside the body
                await store(envelope, ticket, request_principal(request))
        except OtlpRequestError as exc:
            if exc.http_status >= 500:
                _LOG.warning("Firehose request %s to %s failed: %s", request_id, request.path, exc.message)
            return _firehose_reply(exc.http_status, request_id, exc.message, _retry_after(exc))
        except Exception:  # noqa: BLE001 - a bug answers 500 (Firehose retries) and the service keeps serving
            _LOG.exception("Firehose request %s to %s failed", request_id, request.path)
            return _firehose_reply(500, request_id, "internal error")
        return _firehose_reply(200, request_id, None)

    def _authenticate(self, request: web.Request) -> None:
        if not self._keys.enabled:
            return
        key = request.headers.get(HEADER_ACCESS_KEY)
        if not key:
            msg = f"missing {HEADER_ACCESS_KEY}: set the stream's access key to one of the API keys"
            raise OtlpUnauthenticatedError(msg)
        try:
            request[PRINCIPAL_KEY] = self._keys.require(BEARER_PREFIX + key)
        except AuthenticationError as exc:
            msg = f"invalid {HEADER_ACCESS_KEY}{refusal_detail(exc)}"
            raise OtlpUnauthenticatedError(msg) from None

    async def _store_metrics(self, envelope: FirehoseEnvelope, _ticket: AdmissionTicket, principal: Principal) -> None:
        message = decode_metric_stream_records(envelope.records)
        await self._writer.export(METRICS, message, principal=principal)

    async def _store_logs(self, envelope: FirehoseEnvelope, ticket: AdmissionTicket, principal: Principal) -> None:
        budget = [self._limit]
        messages = []
        for index, record in enumerate(envelope.records):
            decoded = decode_logs_record(record, index, budget)
            if decoded is not None:
                messages.append(decoded)
        ticket.reserve(self._limit - budget[0])  # the decompressed records are held too
        if messages:
            await self._writer.export(LOGS, logs_request(messages), principal=principal)


def _retry_after(exc: OtlpRequestError) -> dict[str, str]:
    return {} if exc.retry_after is None else {"Retry-After": str(math.ceil(exc.retry_after))}


def _firehose_reply(
    status: int, request_id: str, error: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    body = reply_body(request_id, error)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
