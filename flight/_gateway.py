"""The HTTP query gateway (``sirius gateway``, :3000): SQL over HTTP, answered from FlightSQL.

* ``POST /gateway/query``: JSON ``{"sql": …, "time_range_begin"?: …, "time_range_end"?: …}``
  → a JSON array of row objects, streamed batch by batch. The range takes what ``sirius query``
  takes (:mod:`._time_arguments`): RFC 3339 times or durations before now (``30m``, ``1h``,
  ``7d``); with only a beginning it ends now;
* ``GET /gateway/health``: ``200 OK`` (no authentication);
* ``GET /gateway``: a short JSON description of these routes (no authentication), so the URL
  ``sirius up`` prints answers in a browser.

Like Micromegas's ``http-gateway``, it is a FlightSQL client: the request's ``Authorization``
header is checked against the same API keys and forwarded, the range goes out as
``query_range_begin``/``query_range_end``, and ``x-client-type`` becomes ``<orig>+gateway``
with ``x-request-id`` and ``x-client-ip`` added; the attribution headers (``x-client-agent``,
``-entrypoint``, ``-session``, ``-notebook``, ``-cell``, ``x-user-id``/``-email``/``-name``,
``x-org-id``) are forwarded as sent, so the FlightSQL server audits and matches deny rules on them.

The same application serves the Explore web UI (``sirius.flight.explore``: ``/``, deep links,
``/explore/static/*`` and ``/explore/api/*``), whose queries go through :meth:`GatewayService.run_sql`;
Explore is mounted through :func:`register_ui` (``sirius.flight`` registers it).

Values in JSON: timestamps as RFC 3339 UTC text with nanoseconds, binary as hex, JSONB columns
(properties, span events and links) as nested JSON, nested values as JSON, NaN/±inf as
strings. Errors: 400 (bad request body or INVALID_ARGUMENT), 401, 403 (a query deny rule
matched), 503 with ``Retry-After`` (server busy), 504 (query timeout), 502 (FlightSQL
unreachable), 500 otherwise; the body is ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from aiohttp import web
from pyarrow import flight

from ..collector import PRINCIPAL_KEY
from ..identity import AuthenticationError, Authenticator, as_access_policy
from . import _protocol as proto
from ._jsonb_text import embed_json_columns, jsonb_as_json_text
from ._time_arguments import TimeArgumentError, resolve_range
from ._tls_roots import read_ca_bundle, tls_failure_hint

__all__ = ["GatewayError", "GatewayService", "QueryAnswer", "UiMount", "register_ui", "rows_as_json"]

_LOG = logging.getLogger(__name__)
_RETRY_AFTER_SECONDS = "1"
_ATTRIBUTION_HEADERS = (
    "x-client-agent",
    "x-client-entrypoint",
    "x-client-session",
    "x-client-notebook",
    "x-client-cell",
    "x-user-id",
    "x-user-email",
    "x-user-name",
    "x-org-id",
)
_MAX_BODY_BYTES = 1024 * 1024
_INDEX = {
    "service": "sirius query gateway",
    "routes": {
        "POST /gateway/query": {
            "body": {
                "sql": "SELECT ...",
                "time_range_begin": "optional: RFC 3339 or a duration before now (30m, 1h, 7d)",
                "time_range_end": "optional: RFC 3339 or a duration before now (default now)",
            },
            "headers": "Authorization: Bearer <key> when the server has API keys",
            "returns": "a JSON array of row objects",
        },
        "GET /gateway/health": "200 OK",
    },
}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _jsonable_column(column: pa.Array) -> pa.Array:
    """Columns Python's JSON encoder cannot take as is (timestamps, durations) rendered as text."""
    data_type = column.type
    if pa.types.is_dictionary(data_type):
        return _jsonable_column(column.dictionary_decode())
    if pa.types.is_timestamp(data_type):
        utc = pc.cast(column, pa.timestamp("ns", tz="UTC"))
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_date(data_type) or pa.types.is_time(data_type) or pa.types.is_duration(data_type):
        return pc.cast(column, pa.utf8())
    return column


def rows_as_json(batch: pa.RecordBatch) -> Iterator[str]:
    """One JSON object (text) per row of ``batch``."""
    columns = [_jsonable_column(column) for column in batch.columns]
    names = batch.schema.names
    for row in zip(*(column.to_pylist() for column in columns), strict=True):
        yield json.dumps({name: _json_value(v) for name, v in zip(names, row, strict=True)}, ensure_ascii=False)


UiMount = Callable[[web.Application, "GatewayService"], None]
"""Adds a web UI's routes to a gateway application; the UI runs its SQL through the service."""

_UI_MOUNTS: list[UiMount] = []


def register_ui(mount: UiMount) -> None:
    """Serve a web UI from every gateway application made after this call.

    ``sirius.flight`` registers Explore when it is imported: Explore builds on this module, so
    this module takes the UI as a registered callable rather than importing it.
    """
    if mount not in _UI_MOUNTS:
        _UI_MOUNTS.append(mount)


class GatewayError(Exception):
    """A request the gateway refuses or a query that failed, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_GatewayError = GatewayError

NO_KEY_MESSAGE = "this server needs an API key (send Authorization: Bearer <key>)"
"""The 401 reason when no ``Authorization`` header was sent (a wrong key is ``invalid token``)."""

SESSION_COOKIE = "sirius_session"
"""Explore's sign-in cookie (httpOnly): the ID token the gateway sends as ``Authorization: Bearer``
when a request carries no header of its own (``sirius.flight.explore``'s login sets it)."""


def _session_bearer(request: web.Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return f"Bearer {token}" if token else None


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """A whole query result read by :meth:`GatewayService.run_sql`, with what it cost."""

    sql: str
    table: pa.Table
    elapsed_ms: float

    @property
    def rows(self) -> int:
        """Rows received."""
        return self.table.num_rows

    @property
    def bytes(self) -> int:
        """Bytes of the Arrow data received."""
        return self.table.nbytes


def _http_error(exc: BaseException) -> _GatewayError:  # noqa: PLR0911 - one status per error kind
    """Map a FlightSQL client error to an HTTP status (the message without gRPC debug context)."""
    text = str(exc).split(". gRPC client debug context", 1)[0]
    for prefix in (
        "Flight returned invalid argument error, with message: ",
        "Flight returned unavailable error, with message: ",
        "Flight returned unauthorized error, with message: ",
    ):
        text = text.removeprefix(prefix)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return _GatewayError(401, "invalid token")
    if isinstance(exc, flight.FlightUnauthorizedError):
        return _GatewayError(403, text)
    if isinstance(exc, pa.ArrowInvalid) and text.startswith("query denied by rule "):
        return _GatewayError(403, text)  # a query deny rule matched (INVALID_ARGUMENT on FlightSQL)
    if isinstance(exc, flight.FlightTimedOutError):
        return _GatewayError(504, text)
    if isinstance(exc, flight.FlightUnavailableError):
        hint = tls_failure_hint(text)
        if hint is not None:
            _LOG.warning("gateway cannot reach FlightSQL over TLS: %s", text)
            return _GatewayError(502, hint)
        if "failed to connect" in text.lower() or "connection refused" in text.lower():
            return _GatewayError(502, "the FlightSQL service is unreachable")
        return _GatewayError(503, text)
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowNotImplementedError)):
        return _GatewayError(400, text)
    return _GatewayError(500, text)


class GatewayService:
    """The gateway's aiohttp application, forwarding queries to a FlightSQL server.

    Args:
        flight_uri: the FlightSQL service, e.g. ``grpc://127.0.0.1:50051`` or ``grpc+tls://…``.
        keys: the access policy requests must satisfy (``sirius.identity.build_authenticator``
            with the analytics role, as the FlightSQL server's), or bare environment keys; None
            = no authentication. The request's ``Authorization`` is forwarded to FlightSQL,
            which checks it again.
        clock: "now" in Unix ns, for relative ranges (default the wall clock).
        tls_ca_file: PEM bundle of the CAs trusted for a ``grpc+tls`` service (default
            ``$SIRIUS_TLS_CA_FILE``, else the system's trust store).

    Raises:
        TlsConfigurationError: the CA bundle cannot be read.
    """

    def __init__(
        self,
        flight_uri: str,
        keys: Authenticator | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        tls_ca_file: str | None = None,
    ) -> None:
        self.flight_uri = flight_uri
        # Read now: a missing bundle is a start-up error, not a 502 on the first query.
        self._tls_roots = read_ca_bundle(tls_ca_file) if flight_uri.startswith("grpc+tls://") else None
        self.keys = as_access_policy(keys)
        self._clock = clock
        self._client: flight.FlightClient | None = None
        self._client_lock = threading.Lock()

    def make_app(self) -> web.Application:
        """The aiohttp application (serve it with ``sirius.collector.HttpServer``)."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_get("/gateway", self._index)
        app.router.add_get("/gateway/", self._index)
        app.router.add_get("/gateway/health", self._health)
        app.router.add_post("/gateway/query", self._query)
        app.on_cleanup.append(self._on_cleanup)
        for mount in _UI_MOUNTS:  # the Explore web UI at / and /explore/* (it runs its SQL here)
            mount(app, self)
        return app

    def close(self) -> None:
        """Close the FlightSQL connection."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _on_cleanup(self, _app: web.Application) -> None:
        self.close()

    def _flight_client(self) -> flight.FlightClient:
        with self._client_lock:
            if self._client is None:
                if self._tls_roots is not None:
                    self._client = flight.connect(self.flight_uri, tls_root_certs=self._tls_roots)
                else:
                    self._client = flight.connect(self.flight_uri)
            return self._client

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _index(self, _request: web.Request) -> web.Response:
        return web.json_response(_INDEX)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        try:
            headers = self._call_headers(request, await self._body(request))
            sql = headers.pop(b":sql").decode()
            reader = await asyncio.to_thread(self._open, sql, list(headers.items()))
            first = await asyncio.to_thread(_read_chunk, reader)
        except _GatewayError as exc:
            return _error_response(exc)
        except Exception as exc:  # noqa: BLE001 - every FlightSQL failure becomes an HTTP status
            return _error_response(_http_error(exc))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        separator = "["
        batch = first
        try:
            while batch is not None:
                rows = list(_json_rows(batch))
                if rows:
                    await response.write((separator + ",".join(rows)).encode())
                    separator = ","
                batch = await asyncio.to_thread(_read_chunk, reader)
        except Exception as exc:  # noqa: BLE001 - headers are sent: end the body and log
            _LOG.warning("gateway query failed mid-stream: %s", exc)
        await response.write(b"[]" if separator == "[" else b"]")
        await response.write_eof()
        return response

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise _GatewayError(400, "the body must be a JSON object with a 'sql' string") from None
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str) or not body["sql"].strip():
            raise _GatewayError(400, "the body must be a JSON object with a non-empty 'sql' string")
        return body

    def authorize(self, request: web.Request) -> str | None:
        """The request's ``Authorization`` header once checked by the access policy.

        The principal is kept in ``request[PRINCIPAL_KEY]``.

        Raises:
            GatewayError: 401 when a credential is needed and missing, unknown or refused (the
                reason, e.g. a revoked key).
        """
        authorization = request.headers.get("Authorization") or _session_bearer(request)
        if not (authorization or "").strip() and self.keys.enabled:
            raise GatewayError(401, NO_KEY_MESSAGE)
        try:
            request[PRINCIPAL_KEY] = self.keys.require(authorization)
        except AuthenticationError as exc:
            raise GatewayError(401, str(exc)) from None
        return authorization

    async def run_sql(
        self, request: web.Request, sql: str, begin: str | None = None, end: str | None = None
    ) -> QueryAnswer:
        """Run ``sql`` over FlightSQL as ``/gateway/query`` does (key, range and client headers) and read it all.

        Args:
            request: the HTTP request whose key and client details are forwarded.
            sql: the statement.
            begin: range start (RFC 3339 or a duration before now), or None.
            end: range end, or None.

        Raises:
            GatewayError: 401, 400 (bad range or INVALID_ARGUMENT: the server's message), 502-504, 500.
        """
        headers = self._call_headers(request, {"sql": sql, "time_range_begin": begin, "time_range_end": end})
        headers.pop(b":sql")
        started = time.perf_counter()
        try:
            table = await asyncio.to_thread(self._read_all, sql, list(headers.items()))
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - every FlightSQL failure becomes an HTTP status
            raise _http_error(exc) from None
        return QueryAnswer(sql, table, (time.perf_counter() - started) * 1000.0)

    def _read_all(self, sql: str, headers: list[tuple[bytes, bytes]]) -> pa.Table:
        reader = self._open(sql, headers)
        return reader.read_all()

    def _call_headers(self, request: web.Request, body: dict[str, Any]) -> dict[bytes, bytes]:
        authorization = self.authorize(request)
        headers: dict[bytes, bytes] = {b":sql": body["sql"].encode()}
        if authorization:
            headers[b"authorization"] = authorization.encode()
        begin, end = body.get("time_range_begin"), body.get("time_range_end")
        for name, value in (("time_range_begin", begin), ("time_range_end", end)):
            if value is not None and not isinstance(value, str):
                raise _GatewayError(400, f"{name} must be a string: RFC 3339 or a duration (30m, 1h, 7d)")
        try:
            resolved = resolve_range(begin, end, self._clock(), names=("time_range_begin", "time_range_end"))
        except TimeArgumentError as exc:
            raise _GatewayError(400, str(exc)) from None
        if resolved is not None:
            headers[b"query_range_begin"] = resolved[0].encode()
            headers[b"query_range_end"] = resolved[1].encode()
        client_type = request.headers.get("x-client-type", "unknown")
        headers[b"x-client-type"] = f"{client_type}+gateway".encode()
        headers[b"x-request-id"] = request.headers.get("x-request-id", str(uuid.uuid4())).encode()
        forwarded = request.headers.get("x-forwarded-for", "")
        client_ip = forwarded.split(",")[-1].strip() if forwarded else (request.remote or "")
        headers[b"x-client-ip"] = client_ip.encode()
        for name in _ATTRIBUTION_HEADERS:  # who asked, for the query audit and deny list
            value = request.headers.get(name)
            if value:
                headers[name.encode()] = value.encode()
        return headers

    def _open(self, sql: str, headers: list[tuple[bytes, bytes]]) -> flight.FlightStreamReader:
        ticket = flight.Ticket(proto.pack(proto.TicketStatementQuery(statement_handle=sql.encode())))
        return self._flight_client().do_get(ticket, options=flight.FlightCallOptions(headers=headers))


def _json_rows(batch: pa.RecordBatch) -> Iterator[str]:
    """JSON row objects of ``batch``, JSONB columns (properties, events, links) as nested JSON."""
    table, jsonb_columns = jsonb_as_json_text(pa.Table.from_batches([batch]))
    for converted in table.to_batches():
        yield from embed_json_columns(rows_as_json(converted), jsonb_columns)


def _read_chunk(reader: flight.FlightStreamReader) -> pa.RecordBatch | None:
    try:
        return reader.read_chunk().data
    except StopIteration:
        return None


def _error_response(error: _GatewayError) -> web.Response:
    headers = {"Retry-After": _RETRY_AFTER_SECONDS} if error.status == 503 else None
    return web.json_response({"error": error.message}, status=error.status, headers=headers)
