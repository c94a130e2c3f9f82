"""Admission control shared by every receiver: how many requests, and how many bytes, are in flight.

One ``InflightBudget`` bounds what a service holds in memory at once; past it a request is refused
with ``OverloadedError`` (HTTP 429 with ``Retry-After``, gRPC ``UNAVAILABLE`` with ``RetryInfo``)
instead of being queued without limit. The OTLP receivers (gRPC and HTTP) and the native
``/ingestion/insert_*`` routes all use it.

Bytes are counted **before** they are read: a native request reserves its declared
``Content-Length`` (a body without one is refused with 411, one over the route's limit with 413),
then ``read_declared_body`` reads exactly that many bytes into one preallocated buffer, so the
memory a request holds is its body once, known before the first byte arrives. ``check`` answers
the same question without taking anything, for ``Expect: 100-continue``.

Everything here runs on the service's event loop (no locking needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ._exceptions import BodyTooLargeError, IncompleteBodyError, LengthRequiredError, OtlpOverloadedError

if TYPE_CHECKING:
    from aiohttp import StreamReader

__all__ = [
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_INFLIGHT_REQUESTS",
    "DEFAULT_RETRY_AFTER_SECONDS",
    "AdmissionTicket",
    "InflightBudget",
    "declared_body_size",
    "read_declared_body",
]

DEFAULT_RETRY_AFTER_SECONDS = 1.0
"""Delay asked of clients after an overload or a storage failure: short enough that exporter
queues do not overflow, long enough for a burst to drain."""

DEFAULT_MAX_INFLIGHT_REQUESTS = 64
"""Requests one service handles at once unless configured otherwise."""

DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
"""Request bytes one service holds at once unless configured otherwise."""


@dataclass(slots=True)
class AdmissionTicket:
    """One admitted request: its slot and the bytes it reserved. Release it when the request is done.

    Usable as a context manager (``with budget.admit() as ticket:``), which releases on exit.
    """

    budget: InflightBudget
    nbytes: int = 0
    released: bool = False

    def reserve(self, nbytes: int) -> None:
        """Count ``nbytes`` more against the budget.

        Raises:
            OtlpOverloadedError: (an ``OverloadedError``) the byte budget is full.
        """
        self.budget.check_bytes(nbytes)
        self.budget.in_flight_bytes += nbytes
        self.nbytes += nbytes

    def release(self) -> None:
        """Give back the request slot and its bytes (idempotent)."""
        if not self.released:
            self.released = True
            self.budget.in_flight_requests -= 1
            self.budget.in_flight_bytes -= self.nbytes

    def __enter__(self) -> AdmissionTicket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


class InflightBudget:
    """Bounds the requests being handled at once, by count and by bytes.

    The receivers of one service share it on one event loop. A single request larger than the
    byte budget is still admitted when nothing else is in flight, so a legal request (under the
    size limit) can always get through eventually.

    Args:
        max_requests: concurrent requests.
        max_bytes: bytes held by those requests (bodies; OTLP also counts decompressed data).
        retry_after: delay suggested to refused clients (``Retry-After`` / ``RetryInfo``).
    """

    def __init__(
        self,
        max_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS,
        max_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
        retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
    ) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.in_flight_requests = 0
        self.in_flight_bytes = 0

    def admit(self) -> AdmissionTicket:
        """Take a request slot; ``release()`` the returned ticket when the request is done.

        Raises:
            OtlpOverloadedError: (an ``OverloadedError``) every slot is taken.
        """
        self.check_slot()
        self.in_flight_requests += 1
        return AdmissionTicket(self)

    def check(self, nbytes: int) -> None:
        """Raise as ``admit().reserve(nbytes)`` would right now, without taking anything.

        For ``Expect: 100-continue``: a request that would be refused is refused before its body
        is sent. (It is checked again when admitted: the budget may fill in between.)

        Raises:
            OtlpOverloadedError: (an ``OverloadedError``) no slot, or no room for ``nbytes``.
        """
        self.check_slot()
        self.check_bytes(nbytes)

    def check_slot(self) -> None:
        """Raise ``OtlpOverloadedError`` when every request slot is taken."""
        if self.in_flight_requests >= self.max_requests:
            msg = f"too many requests in flight ({self.in_flight_requests}); retry later"
            raise OtlpOverloadedError(msg, retry_after=self.retry_after)

    def check_bytes(self, nbytes: int) -> None:
        """Raise ``OtlpOverloadedError`` when ``nbytes`` more do not fit beside the bytes in flight."""
        if self.in_flight_bytes + nbytes > self.max_bytes and self.in_flight_bytes > 0:
            msg = f"too much data in flight ({self.in_flight_bytes} bytes); retry later"
            raise OtlpOverloadedError(msg, retry_after=self.retry_after)


def declared_body_size(content_length: int | None, limit: int) -> int:
    """The body size a request declares, checked against ``limit`` before anything is read.

    Raises:
        LengthRequiredError: no ``Content-Length`` (e.g. a chunked upload): its size is unknown.
        BodyTooLargeError: the declared size is over ``limit``.
    """
    if content_length is None:
        msg = "Content-Length is required (the body's size is admitted before it is read)"
        raise LengthRequiredError(msg)
    if content_length > limit:
        msg = f"request body of {content_length} bytes is larger than {limit} bytes"
        raise BodyTooLargeError(msg)
    return content_length


async def read_declared_body(content: StreamReader, size: int) -> bytearray:
    """Read a body of exactly ``size`` bytes into one buffer allocated up front.

    Each chunk the connection delivers is copied once into place and dropped, so the request holds
    ``size`` bytes plus one chunk, never a growing buffer plus a final copy. Chunks are taken one at
    a time (``readchunk``): ``readany`` joins every chunk already buffered into a new ``bytes``
    first, an extra copy of most of a large body (measured at 1 MiB: ~0.7 MiB joined per body,
    the body arriving in two ``readany`` calls).

    Raises:
        IncompleteBodyError: the connection ended (or broke) before ``size`` bytes arrived.
    """
    body = bytearray(size)
    view = memoryview(body)
    filled = 0
    try:
        while filled < size:
            chunk, end_of_http_chunk = await content.readchunk()
            if not chunk:
                if end_of_http_chunk:  # a chunked-encoding boundary, not the end of the body
                    continue
                break
            end = min(size, filled + len(chunk))
            view[filled:end] = chunk[: end - filled]
            filled = end
    except (RequestPayloadError, HttpProcessingError, ValueError, ConnectionError) as exc:  # truncated, broken
        msg = f"malformed request body: {exc}"
        raise IncompleteBodyError(msg) from exc
    finally:
        view.release()
    if filled < size:
        msg = f"request body ended after {filled} of the {size} bytes of its Content-Length"
        raise IncompleteBodyError(msg)
    return body
