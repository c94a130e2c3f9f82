"""The telemetry sink: delivers processes, streams and blocks to a Micromegas ingestion service.

Shape follows OpenTelemetry's batch worker: one daemon thread, a bounded queue, drop counters,
``flush(timeout)`` / ``shutdown(timeout)``, and a fork hook that restarts the worker in the
child. The application thread only appends to a deque under a short lock; all I/O happens on
the worker, so the app is never blocked by the network.

Ordering: items leave in the order they were queued (process → stream → its blocks), because
the service rejects a block whose stream it does not know. The worker sends the head item and
keeps it at the head while it retries, so a down service delays everything but loses nothing
that was accepted into the queue.

Failure policy: network errors, 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``) until ``shutdown``'s deadline; other 4xx are permanent (the item is dropped and
counted as rejected). Metadata (process, stream) is never dropped for space; blocks are dropped
and counted when the queue's byte budget is full.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

from ._environment_variables import (
    MICROMEGAS_INGESTION_API_KEY,
    MICROMEGAS_TELEMETRY_URL,
    SIRIUS_SINK_MAX_QUEUE_BYTES,
)
from ._wire_format import (
    Block,
    ProcessInfo,
    StreamInfo,
    block_from_cbor,
    block_to_cbor,
    process_info_from_cbor,
    process_info_to_cbor,
    stream_info_from_cbor,
    stream_info_to_cbor,
)

_LOG = logging.getLogger("sirius.tracing.sink")

DEFAULT_URL = "http://127.0.0.1:9000"
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """Where and how the sink sends.

    Attributes:
        url: base URL of the ingestion service (``/ingestion/insert_*`` is appended).
        api_key: Bearer token, or None.
        max_queue_bytes: byte budget of queued blocks; past it new blocks are dropped.
        request_timeout: seconds per HTTP request.
        initial_backoff: first retry delay in seconds (doubles up to ``max_backoff``).
        max_backoff: longest delay between retries.
    """

    url: str = DEFAULT_URL
    api_key: str | None = None
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    request_timeout: float = 10.0
    initial_backoff: float = 0.01
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"telemetry URL must be http(s)://host[:port], got {self.url!r}"
            raise ValueError(msg)
        if self.max_queue_bytes <= 0:
            msg = "max_queue_bytes must be positive"
            raise ValueError(msg)

    @classmethod
    def resolve(
        cls, url: str | None = None, api_key: str | None = None, max_queue_bytes: int | None = None
    ) -> SinkConfig:
        """Explicit arguments first, then ``MICROMEGAS_TELEMETRY_URL`` / ``…_API_KEY``, then defaults."""
        env = os.environ
        if max_queue_bytes is None:
            raw = env.get(SIRIUS_SINK_MAX_QUEUE_BYTES, "")
            max_queue_bytes = int(raw) if raw.isdigit() else DEFAULT_MAX_QUEUE_BYTES
        return cls(
            url=url or env.get(MICROMEGAS_TELEMETRY_URL) or DEFAULT_URL,
            api_key=api_key or env.get(MICROMEGAS_INGESTION_API_KEY) or None,
            max_queue_bytes=max_queue_bytes,
        )


@dataclass(frozen=True, slots=True)
class TransportResponse:
    """What the sink needs of an HTTP answer."""

    status: int
    retry_after: float | None = None


class Transport(Protocol):
    """Sends one POST; raises ``OSError`` (or ``http.client.HTTPException``) on network failure."""

    def post(self, path: str, body: bytes) -> TransportResponse:
        """POST ``body`` to ``path`` and return the status."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class HttpTransport:
    """``http.client`` keep-alive connection to the ingestion service (stdlib only: apps stay light)."""

    def __init__(self, config: SinkConfig) -> None:
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout = config.request_timeout
        self._headers = {"Content-Type": "application/cbor"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> TransportResponse:
        """POST over the kept-alive connection; a broken connection is dropped and the error raised."""
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        try:
            self._conn.request("POST", self._prefix + path, body=body, headers=self._headers)
            response = self._conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        return TransportResponse(response.status, _parse_retry_after(response.getheader("Retry-After")))

    def close(self) -> None:
        """Close the connection (reopened on the next post)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


@dataclass(slots=True)
class SinkStats:
    """Counters of a sink (a snapshot when returned by ``TelemetrySink.stats``)."""

    queued_items: int = 0
    queued_bytes: int = 0
    sent_processes: int = 0
    sent_streams: int = 0
    sent_blocks: int = 0
    dropped_blocks: int = 0
    dropped_bytes: int = 0
    rejected_items: int = 0
    retries: int = 0


@dataclass(slots=True)
class _Item:
    kind: str  # "process" | "stream" | "block"
    path: str
    body: bytes
    droppable: bool = field(default=False)


_PATHS = {
    "process": "/ingestion/insert_process",
    "stream": "/ingestion/insert_stream",
    "block": "/ingestion/insert_block",
}


class _OnceLogger:
    """Logs each distinct message once: a failing service must not flood the app's logs."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def warn(self, message: str) -> None:
        if message not in self._seen and len(self._seen) < 1000:
            self._seen.add(message)
            _LOG.warning("%s", message)


class TelemetrySink:
    """Background delivery of Micromegas ingestion requests; never raises into the caller.

    Args:
        config: destination and limits (``SinkConfig.resolve()`` when omitted).
        transport_factory: builds the transport (tests inject failures); default HTTP.
        sleep: interruptible wait used for backoff, injected for tests; default waits on the
            sink's own condition so ``shutdown`` cuts a backoff short.
    """

    def __init__(
        self,
        config: SinkConfig | None = None,
        *,
        transport_factory: Callable[[SinkConfig], Transport] = HttpTransport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config or SinkConfig.resolve()
        self._transport_factory = transport_factory
        self._clock = clock
        self._log = _OnceLogger()
        self._reset_state()
        # Weak reference: the fork hook must not keep a discarded sink alive.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (s := ref()) is not None and s._after_fork_in_child())

    def _reset_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Item] = collections.deque()
        self._stats = SinkStats()
        self._in_flight = False
        self._stopping = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def config(self) -> SinkConfig:
        """The resolved configuration."""
        return self._config

    # -- producer side (application threads) ------------------------------------------------

    def register_process(self, info: ProcessInfo) -> None:
        """Queue ``insert_process`` (never dropped)."""
        self._enqueue_safely("process", lambda: process_info_to_cbor(info), droppable=False)

    def register_stream(self, info: StreamInfo) -> None:
        """Queue ``insert_stream`` (never dropped)."""
        self._enqueue_safely("stream", lambda: stream_info_to_cbor(info), droppable=False)

    def send_block(self, block: Block) -> bool:
        """Queue ``insert_block``; returns False when it was dropped (queue full or stopped)."""
        return self._enqueue_safely("block", lambda: block_to_cbor(block), droppable=True)

    def send_encoded_block(self, body: bytes) -> bool:
        """Queue an already CBOR-encoded block body (the native tracer encodes in C)."""
        return self._enqueue_safely("block", lambda: body, droppable=True)

    def send_encoded(self, kind: str, body: bytes) -> bool:
        """Queue an already CBOR-encoded body of ``kind`` ``process``, ``stream`` or ``block``.

        Process and stream bodies are never dropped; returns False when a block was dropped.
        """
        if kind not in _PATHS:
            self._log.warn(f"telemetry sink: unknown item kind {kind!r}; dropped")
            return False
        return self._enqueue_safely(kind, lambda: body, droppable=kind == "block")

    def _enqueue_safely(self, kind: str, encode: Callable[[], bytes], *, droppable: bool) -> bool:
        try:
            return self._enqueue(_Item(kind, _PATHS[kind], encode(), droppable))
        except Exception as exc:  # noqa: BLE001 - instrumentation must never raise into the app
            self._log.warn(f"telemetry sink could not queue a {kind}: {exc!r}")
            return False

    def _enqueue(self, item: _Item) -> bool:
        with self._cond:
            if self._pid != os.getpid():  # fork without the hook (e.g. os.fork in C code)
                self._after_fork_in_child()
            if self._stopping:
                self._count_drop(item)
                return False
            if item.droppable and self._stats.queued_bytes + len(item.body) > self._config.max_queue_bytes:
                self._count_drop(item)
                return False
            self._queue.append(item)
            self._stats.queued_items += 1
            self._stats.queued_bytes += len(item.body)
            self._ensure_worker()
            self._cond.notify_all()
        return True

    def _count_drop(self, item: _Item) -> None:
        if item.kind == "block":
            self._stats.dropped_blocks += 1
            self._stats.dropped_bytes += len(item.body)

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sirius-telemetry-sink", daemon=True)
            self._thread.start()

    # -- control --------------------------------------------------------------------------

    def stats(self) -> SinkStats:
        """A snapshot of the counters."""
        with self._cond:
            s = self._stats
            return SinkStats(**{name: getattr(s, name) for name in SinkStats.__slots__})

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued so far is delivered (or rejected); True if it was in time."""
        try:
            deadline = None if timeout is None else self._clock() + timeout
            with self._cond:
                while self._queue or self._in_flight:
                    remaining = None if deadline is None else deadline - self._clock()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
        except Exception as exc:  # noqa: BLE001
            self._log.warn(f"telemetry sink flush failed: {exc!r}")
            return False

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued within ``timeout``, then stop; later sends are dropped.

        Returns:
            True when everything was delivered in time.
        """
        try:
            with self._cond:
                self._stopping = True
                self._deadline = self._clock() + timeout
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout + 1.0)
            with self._cond:
                lost = list(self._queue)
                self._queue.clear()
                for item in lost:
                    self._count_drop(item)
                self._stats.queued_items = 0
                self._stats.queued_bytes = 0
                return not lost
        except Exception as exc:  # noqa: BLE001
            self._log.warn(f"telemetry sink shutdown failed: {exc!r}")
            return False

    def _after_fork_in_child(self) -> None:
        # The parent's queued items are the parent's to send; the child starts empty with new
        # locks (the parent's may have been held by another thread at fork time).
        self._reset_state()

    # -- worker ---------------------------------------------------------------------------

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def _run(self) -> None:
        transport = self._transport_factory(self._config)
        backoff = self._config.initial_backoff
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue or (self._stopping and self._past_deadline()):
                        return
                    item = self._queue[0]
                    self._in_flight = True
                retry_after = self._send(transport, item)
                with self._cond:
                    self._in_flight = False
                    if retry_after is None:
                        self._queue.popleft()
                        self._stats.queued_items -= 1
                        self._stats.queued_bytes -= len(item.body)
                        backoff = self._config.initial_backoff
                        self._cond.notify_all()
                        continue
                    self._stats.retries += 1
                    delay = min(max(backoff, retry_after), MAX_RETRY_AFTER_SECONDS)
                    backoff = min(backoff * 2, self._config.max_backoff)
                    if self._deadline is not None:
                        delay = min(delay, max(0.0, self._deadline - self._clock()))
                    # Waiting on the condition (not time.sleep) lets shutdown cut the backoff short.
                    self._cond.notify_all()
                    self._cond.wait(delay)
        finally:
            with contextlib.suppress(Exception):
                transport.close()

    def _send(self, transport: Transport, item: _Item) -> float | None:
        """Send one item. Returns None when done with it (sent or permanently rejected), else a retry delay."""
        try:
            response = transport.post(item.path, item.body)
        except (OSError, http.client.HTTPException) as exc:
            self._log.warn(f"telemetry sink cannot reach {self._config.url}: {exc!r}; retrying")
            return 0.0
        except Exception as exc:  # noqa: BLE001 - a transport bug must not kill the worker
            self._log.warn(f"telemetry sink transport error: {exc!r}; retrying")
            return 0.0
        status = response.status
        if 200 <= status < 300:
            with self._cond:
                if item.kind == "process":
                    self._stats.sent_processes += 1
                elif item.kind == "stream":
                    self._stats.sent_streams += 1
                else:
                    self._stats.sent_blocks += 1
            return None
        if status == 429 or status >= 500:
            self._log.warn(f"telemetry sink got HTTP {status} from {self._config.url}; retrying")
            return response.retry_after or 0.0
        self._log.warn(f"telemetry sink: {item.kind} rejected with HTTP {status}; dropped")
        with self._cond:
            self._stats.rejected_items += 1
            self._count_drop(item)
        return None


@dataclass(slots=True)
class InMemoryBlockSink:
    """A sink that keeps what it is given: for tests and in-process pipelines."""

    processes: list[ProcessInfo] = field(default_factory=list)
    streams: list[StreamInfo] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def register_process(self, info: ProcessInfo) -> None:
        """Keep the process."""
        self.processes.append(info)

    def register_stream(self, info: StreamInfo) -> None:
        """Keep the stream."""
        self.streams.append(info)

    def send_block(self, block: Block) -> bool:
        """Keep the block."""
        self.blocks.append(block)
        return True

    def send_encoded(self, kind: str, body: bytes) -> bool:
        """Decode and keep an encoded ``process``, ``stream`` or ``block`` body."""
        if kind == "process":
            self.register_process(process_info_from_cbor(body))
        elif kind == "stream":
            self.register_stream(stream_info_from_cbor(body))
        else:
            self.send_block(block_from_cbor(body))
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing to flush."""
        del timeout
        return True

    def shutdown(self, timeout: float = 0.0) -> bool:
        """Nothing to stop."""
        del timeout
        return True
