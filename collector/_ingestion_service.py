"""The Micromegas ingestion HTTP routes: ``/ingestion/insert_{process,stream,block}``, ``/health``, ``/ready``.

Contract (``micromegas-wire.md`` §1-3 and DESIGN.md):

* bodies are CBOR; a malformed or inconsistent body gets 400 with the reason and stores nothing;
* a 200 means the object is in the store **and** its row is committed; blocks are written
  object-first, create-only, then the row with ``ON CONFLICT DO NOTHING``, so a retried block
  yields one row and one object;
* store failures answer 503 with ``Retry-After`` (the sender retries), never a bare 500;
* bodies over 100 MiB (``SIRIUS_INGESTION_MAX_BODY_BYTES``) get 413; Bearer keys from
  ``MICROMEGAS_API_KEYS`` are enforced when set;
* admission is bounded (``_admission.py``, limits in ``IngestionLimits``): a body's
  ``Content-Length`` is counted against the service's in-flight budget before the body is read
  (429 with ``Retry-After`` past it, 411 without a length), the body is read once into one
  buffer, and ``insert_block`` keeps its payload as views of that buffer down to the object-store
  put (``_block_body.py``), so each request holds about its body's size; a client sending
  ``Expect: 100-continue`` gets those refusals before it sends the body;
* ``/ingestion/otlp/v1/{traces,logs,metrics}`` serve OTLP/HTTP (``_otlp_http.py``) as Micromegas
  does; those routes authenticate themselves so a 401 is an OTLP ``google.rpc.Status``;
* ``/ingestion/webhook`` and the Firehose routes (``_integration_routes.py``) store through the
  same OTLP writer; the Firehose routes check ``X-Amz-Firehose-Access-Key`` themselves;
* a stream registered with the property ``sirius.format = otlp/v1/…`` (the in-process OTel
  exporters) is stored with that ``streams.format``; its blocks must hold one resource message;
* processes and streams are stamped with the caller's write audience (``micromegas.audience``),
  and a stream or block for a process of another audience is refused with 403, storing nothing
  (``_ownership.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import HttpVersion11, hdrs, web
from multidict import CIMultiDict

from ..identity import AuthenticationError, Authenticator, Principal, as_access_policy, write_audience
from ..lakehouse import DataLake, LakehouseError, ObjectStore, StreamRecord, block_object_key
from ..otel_bridge import OTLP_FORMATS, stream_format, validate_otlp_block
from ..tracing import (
    TRANSIT_FORMAT,
    Block,
    WireFormatError,
    process_info_from_cbor,
    stream_info_from_cbor,
)
from ._admission import AdmissionTicket, declared_body_size, read_declared_body
from ._arrivals import log_new_process
from ._auth import PRINCIPAL_KEY, request_principal
from ._block_body import DecodedBlock, decode_block_body
from ._block_validation import validate_transit_block
from ._exceptions import (
    AudienceOwnershipError,
    BodyTooLargeError,
    IncompleteBodyError,
    NativeRequestError,
    OverloadedError,
)
from ._fast_http import FAST_COVERED_MIDDLEWARES, FAST_ROUTES
from ._ingestion_limits import DEFAULT_MAX_BODY_BYTES, IngestionLimits
from ._integration_routes import FIREHOSE_PATHS, IntegrationRoutes
from ._otlp_http import OtlpHttpRoutes
from ._otlp_writer import OtlpWriter
from ._ownership import ProcessOwnership

_LOG = logging.getLogger(__name__)

MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES
READY_TIMEOUT_SECONDS = 2.0
READY_CACHE_SECONDS = 1.0
RETRY_AFTER_SECONDS = "1"
_STREAM_CACHE_SIZE = 10_000
OTLP_PREFIX = "/ingestion/otlp"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NativeRoute = Callable[[bytes | bytearray, Principal], Awaitable[web.Response]]

_T = TypeVar("_T")


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=f"Bad request: {reason}")


def _unavailable(reason: str) -> web.Response:
    return web.Response(status=503, text=f"Service unavailable: {reason}", headers={"Retry-After": RETRY_AFTER_SECONDS})


def _decode(body: bytes | bytearray, decoder: Callable[[bytes | bytearray], _T]) -> _T | web.Response:
    """The request body decoded by ``decoder``, or the 400 answer when it is malformed."""
    try:
        return decoder(body)
    except WireFormatError as exc:
        return _bad_request(str(exc))


def _refused(exc: NativeRequestError | OverloadedError) -> web.Response:
    """The answer to a request refused before its body was decoded."""
    if isinstance(exc, OverloadedError):
        retry_after = str(math.ceil(exc.retry_after or 0))
        return web.Response(status=429, text=f"Too many requests: {exc.message}", headers={"Retry-After": retry_after})
    if isinstance(exc, IncompleteBodyError):
        return _bad_request(exc.message)
    return web.Response(status=exc.http_status, text=exc.message)


def _unauthorized(reason: str) -> web.Response:
    return web.Response(status=401, text=f"Unauthorized: {reason}", headers={"WWW-Authenticate": "Bearer"})


def _forbidden(exc: AudienceOwnershipError) -> web.Response:
    return web.Response(status=403, text=f"Forbidden: {exc}")


def _store_failed(action: str, subject: object, exc: LakehouseError, reason: str) -> web.Response:
    """Log a failed store operation and answer 503 (the sender retries)."""
    _LOG.warning("%s %s failed: %s", action, subject, exc)
    return _unavailable(reason)


class NativeExchange:
    """One admitted native request: its route, caller, budget share and declared size."""

    __slots__ = ("_principal", "_route", "_ticket", "size")

    def __init__(self, route: NativeRoute, principal: Principal, ticket: AdmissionTicket, size: int) -> None:
        self._route = route
        self._principal = principal
        self._ticket = ticket
        self.size = size

    async def finish(self, body: bytes | bytearray) -> web.Response:
        """Run the route on the complete body, then give the budget back."""
        try:
            return await self._route(body, self._principal)
        finally:
            self._ticket.release()

    def refuse(self, exc: NativeRequestError) -> web.Response:
        """Release the request and answer ``exc`` (e.g. a truncated body)."""
        self._ticket.release()
        return _refused(exc)

    def malformed(self, reason: str) -> web.Response:
        """The body could not be read: 400."""
        return self.refuse(IncompleteBodyError(f"malformed request body: {reason}"))

    def too_large(self) -> web.Response:
        """Not reached (a native body is always declared and checked); 413 all the same."""
        return self.refuse(BodyTooLargeError(f"request body is larger than {self.size} bytes"))

    def release(self) -> None:
        """The connection ended before the body: give the budget back."""
        self._ticket.release()


class _NativeFastRoute:
    """A native ``/ingestion/insert_*`` route as the fast lane serves it: key check, then admission."""

    refuses_before_continue = True  # as _expect: what the route would refuse is refused before 100

    def __init__(self, service: IngestionService, route: NativeRoute) -> None:
        self._service = service
        self._route = route
        self.max_body_bytes = service.limits.max_body_bytes

    def open(self, headers: CIMultiDict[str], content_length: int | None) -> NativeExchange | web.Response:
        try:
            principal = self._service._keys.require(headers.get("Authorization"))
        except AuthenticationError as exc:
            return _unauthorized(str(exc))
        return self._service._admit(self._route, principal, content_length)


@dataclass(slots=True)
class _Readiness:
    ok: bool = False
    reason: str = "not probed yet"
    checked_at: float = float("-inf")


class IngestionService:
    """The ingestion routes over a data lake (PostgreSQL rows) and an object store.

    Args:
        lake: where process, stream and block rows go.
        store: where block payloads go.
        keys: the service's access policy (``sirius.identity.build_authenticator``), or bare
            environment keys; None = no authentication. Every route of the service uses it.
        limits: body size and in-flight limits (``IngestionLimits.resolve()`` when omitted); the
            in-flight budget is shared by the native routes and ``/ingestion/otlp/v1/*``.
        clock: monotonic clock, injected for the readiness cache.
    """

    def __init__(
        self,
        lake: DataLake,
        store: ObjectStore,
        keys: Authenticator | None = None,
        *,
        limits: IngestionLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lake = lake
        self._store = store
        self._keys = as_access_policy(keys)
        self.limits = limits or IngestionLimits.resolve()
        self.budget = self.limits.budget()
        self._clock = clock
        self._ready = _Readiness()
        self._ready_lock = asyncio.Lock()
        # Stream rows never change once inserted, so a bounded cache saves a query per block.
        self._streams: OrderedDict[uuid.UUID, StreamRecord] = OrderedDict()
        self._ownership = ProcessOwnership(lake)
        writer = OtlpWriter(lake, store)
        self._otlp = OtlpHttpRoutes(writer, self._keys, budget=self.budget)
        self._integrations = IntegrationRoutes(
            writer, self._keys, budget=self.budget, max_request_bytes=self.limits.max_body_bytes
        )

    def make_app(self) -> web.Application:
        """Build the aiohttp application with the routes and the auth middleware."""
        # auto_decompress off: OTLP bodies are decompressed by _otlp_codec under a size limit
        # (aiohttp's own decoder has no bomb limit); native routes never use Content-Encoding.
        app = web.Application(
            client_max_size=self.limits.max_body_bytes,
            middlewares=[self._auth_middleware],
            handler_args={"auto_decompress": False},
        )
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._readiness)
        self.add_routes(app)  # also makes the app's fast routes (the OTLP ones)
        # The fast lane serves the native routes too; it checks the key as _auth_middleware does.
        app[FAST_COVERED_MIDDLEWARES] = [self._auth_middleware]
        fast_routes = app[FAST_ROUTES]
        for route, handler in (
            ("insert_process", self._insert_process),
            ("insert_stream", self._insert_stream),
            ("insert_block", self._insert_block),
        ):
            path = f"/ingestion/{route}"
            app.router.add_post(path, self._admitted(handler), expect_handler=self._expect)
            fast_routes[path] = _NativeFastRoute(self, handler)
        return app

    def add_routes(self, app: web.Application) -> None:
        """Add the OTLP/HTTP routes ``/ingestion/otlp/v1/{traces,logs,metrics}``, the webhook and Firehose routes."""
        self._otlp.add_to(app, prefix=OTLP_PREFIX)
        self._integrations.add_to(app)

    # -- middleware -----------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        path = request.path
        # OTLP routes answer an OTLP-shaped 401 themselves; Firehose routes check their access key.
        own_auth = path.startswith(OTLP_PREFIX + "/") or path in FIREHOSE_PATHS
        if path.startswith("/ingestion/") and not own_auth:
            try:
                # The handlers (and their audience checks) find the caller here.
                request[PRINCIPAL_KEY] = self._keys.require(authorization)
            except AuthenticationError as exc:
                return _unauthorized(str(exc))
        return await handler(request)

    # -- probes ---------------------------------------------------------------------------

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _readiness(self, _request: web.Request) -> web.Response:
        ready = await self.probe()
        if ready.ok:
            return web.Response(text="READY")
        return web.Response(status=503, text=f"NOT READY: {ready.reason}", headers={"Retry-After": RETRY_AFTER_SECONDS})

    async def probe(self) -> _Readiness:
        """Probe PostgreSQL and the object store (each within 2 s), caching the answer for 1 s."""
        async with self._ready_lock:
            if self._clock() - self._ready.checked_at < READY_CACHE_SECONDS:
                return self._ready
            try:
                async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                    await self._lake.ping()
                    await self._store.probe()
            except TimeoutError:
                self._ready = _Readiness(ok=False, reason="probe timed out", checked_at=self._clock())
            except LakehouseError as exc:
                self._ready = _Readiness(ok=False, reason=str(exc), checked_at=self._clock())
            else:
                self._ready = _Readiness(ok=True, reason="", checked_at=self._clock())
            return self._ready

    # -- admission ------------------------------------------------------------------------

    def _admitted(self, route: NativeRoute) -> Handler:
        """``route`` behind the body limit and the in-flight budget, called with the body read once."""

        async def handle(request: web.Request) -> web.StreamResponse:
            exchange = self._admit(route, request_principal(request), request.content_length)
            if isinstance(exchange, web.Response):
                return exchange
            try:
                body = await read_declared_body(request.content, exchange.size)
            except NativeRequestError as exc:
                return exchange.refuse(exc)
            except BaseException:
                exchange.release()
                raise
            return await exchange.finish(body)

        return handle

    def _admit(
        self, route: NativeRoute, principal: Principal, content_length: int | None
    ) -> NativeExchange | web.Response:
        """Admit a native request by its declared size (411, 413, 429 refuse it before its body)."""
        try:
            # Sized before a byte is read: a burst of large uploads is refused, not buffered.
            size = declared_body_size(content_length, self.limits.max_body_bytes)
            ticket = self.budget.admit()
        except (NativeRequestError, OverloadedError) as exc:
            return _refused(exc)
        try:
            ticket.reserve(size)
        except OverloadedError as exc:
            ticket.release()
            return _refused(exc)
        return NativeExchange(route, principal, ticket, size)

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: what the route would refuse is refused before the body is sent.

        aiohttp calls this before the middlewares, so the key is checked here too.
        """
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != HttpVersion11:
            return None  # HTTP/1.0 has no interim responses (aiohttp's own rule)
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        try:
            self._keys.require(request.headers.get("Authorization"))
        except AuthenticationError as exc:
            return _unauthorized(str(exc))
        try:
            self.budget.check(declared_body_size(request.content_length, self.limits.max_body_bytes))
        except (NativeRequestError, OverloadedError) as exc:
            return _refused(exc)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's own handler: the response proper has not started
        return None

    # -- routes ---------------------------------------------------------------------------

    async def _insert_process(self, body: bytes | bytearray, principal: Principal) -> web.Response:
        info = _decode(body, process_info_from_cbor)
        if isinstance(info, web.Response):
            return info
        try:
            new = await self._ownership.register(info, write_audience(principal))
        except AudienceOwnershipError as exc:
            return _forbidden(exc)
        except LakehouseError as exc:
            return _store_failed("insert_process", info.process_id, exc, "metadata store error")
        if new:
            log_new_process(info, "the ingestion service (native)")
        return web.Response()

    async def _insert_stream(self, body: bytes | bytearray, principal: Principal) -> web.Response:
        info = _decode(body, stream_info_from_cbor)
        if isinstance(info, web.Response):
            return info
        try:
            format_ = stream_format(info.properties, TRANSIT_FORMAT)
        except ValueError as exc:
            return _bad_request(str(exc))
        audience = write_audience(principal)
        try:
            if not await self._ownership.check(info.process_id, audience):
                return _bad_request(f"unknown process {info.process_id}: insert_process first")
            await self._lake.insert_stream(info, format=format_, audience=audience)
        except AudienceOwnershipError as exc:
            return _forbidden(exc)
        except LakehouseError as exc:
            return _store_failed("insert_stream", info.stream_id, exc, "metadata store error")
        return web.Response()

    async def _insert_block(self, body: bytes | bytearray, principal: Principal) -> web.Response:
        decoded = _decode(body, decode_block_body)
        if isinstance(decoded, web.Response):
            return decoded
        try:
            return await self._store_block(decoded, write_audience(principal))
        finally:
            # The object store's worker thread drops its reference to the payload view a moment
            # after the put returns (measured: under CPU load, bodies outlived their admission).
            # Released views no longer pin the body: its memory goes when its budget share does.
            decoded.release()

    async def _store_block(self, decoded: DecodedBlock, audience: str | None) -> web.Response:
        block = decoded.block
        try:
            stream = await self._stream(block.stream_id)
        except LakehouseError as exc:
            return _store_failed("stream lookup", block.stream_id, exc, "metadata store error")
        problem = await self._check_block(block, stream)
        if problem:
            return _bad_request(problem)
        try:
            # The stream is the block's process's (checked above); the process must be the writer's.
            await self._ownership.check(block.process_id, audience)
        except AudienceOwnershipError as exc:
            return _forbidden(exc)
        except LakehouseError as exc:
            return _store_failed("process lookup", block.process_id, exc, "metadata store error")
        payload = decoded.stored_payload  # usually a view of the body: the block is held once
        key = block_object_key(block.process_id, block.stream_id, block.block_id)
        try:
            # Object first, create-only; then the row. A crash in between leaves an orphan
            # object that the retried request finds and keeps: one object, one row.
            await self._store.put_if_absent(key, payload)
            await self._lake.insert_block(block, len(payload))
        except LakehouseError as exc:
            return _store_failed("insert_block", block.block_id, exc, "storage error")
        return web.Response()

    # -- helpers --------------------------------------------------------------------------

    async def _stream(self, stream_id: uuid.UUID) -> StreamRecord | None:
        cached = self._streams.get(stream_id)
        if cached is not None:
            self._streams.move_to_end(stream_id)
            return cached
        record = await self._lake.get_stream(stream_id)
        if record is not None:
            self._streams[stream_id] = record
            if len(self._streams) > _STREAM_CACHE_SIZE:
                self._streams.popitem(last=False)
        return record

    @staticmethod
    async def _check_block(block: Block, stream: StreamRecord | None) -> str | None:
        if stream is None:
            return f"unknown stream {block.stream_id}: insert_stream first"
        if stream.process_id != block.process_id:
            return f"stream {block.stream_id} belongs to process {stream.process_id}, not {block.process_id}"
        if stream.format == TRANSIT_FORMAT:
            return await validate_transit_block(block, stream)
        if stream.format in OTLP_FORMATS:
            return validate_otlp_block(block, stream.format)
        return None
