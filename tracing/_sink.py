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
``Retry-After``); other 4xx are permanent (the item is dropped and counted as rejected).
Metadata (process, stream) is never dropped for space.

Nothing it could have kept is lost (``_spool.py``): a block that does not fit in the queue's
byte budget, and whatever is still queued at ``shutdown`` (when the deadline passes, or at once
when the service is unreachable), is written to the spool on disk, with the process and stream
bodies it needs, for the next sink using that spool (or ``sirius spool flush``) to deliver. Only
what the spool cannot take (cap reached, disk error, spooling disabled, past the spooling time
budget) is dropped, and counted. A background thread delivers the spool: at start what earlier
processes left, and, each time the queue drains, what this sink spooled while it was full.

Accounting (events are the ``nb_objects`` of blocks): every event handed to the sink ends in
exactly one of ``sent_events``, ``dropped_events``, ``spooled_events``, or is still
``queued_events`` (0 after ``shutdown``).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._environment_variables import (
    MICROMEGAS_INGESTION_API_KEY,
    MICROMEGAS_TELEMETRY_URL,
    SIRIUS_SINK_MAX_QUEUE_BYTES,
    SIRIUS_TLS_CA_FILE,
)
from ._http_transport import HttpTransport, Transport, TransportResponse
from ._in_memory_sink import InMemoryBlockSink
from ._spool import SpoolConfig, SpoolEntry, SpoolWriter
from ._spool_delivery import SpoolDeliveryStats, deliver_until
from .transit import (
    Block,
    ProcessInfo,
    StreamInfo,
    block_to_cbor,
    process_info_to_cbor,
    stream_info_to_cbor,
)

__all__ = [
    "HttpTransport",
    "InMemoryBlockSink",
    "SinkConfig",
    "SinkStats",
    "TelemetrySink",
    "Transport",
    "TransportResponse",
]

_LOG = logging.getLogger("sirius.tracing.sink")

DEFAULT_URL = "http://127.0.0.1:9000"
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER_SECONDS = 60.0
DEFAULT_SPOOL_TIMEOUT = 5.0
MAX_METADATA_ITEMS = 100_000


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
        spool: where undelivered bodies are kept on disk (None: dropped, counted).
        spool_timeout: seconds ``shutdown`` may spend writing the spool, beyond its own timeout.
        ca_file: PEM bundle of the certificate authorities trusted for an ``https://`` URL (None:
            the system's trust store).
    """

    url: str = DEFAULT_URL
    api_key: str | None = None
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    request_timeout: float = 10.0
    initial_backoff: float = 0.01
    max_backoff: float = 2.0
    spool: SpoolConfig | None = None
    spool_timeout: float = DEFAULT_SPOOL_TIMEOUT
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"telemetry URL must be http(s)://host[:port], got {self.url!r}"
            raise ValueError(msg)
        if self.max_queue_bytes <= 0:
            msg = "max_queue_bytes must be positive"
            raise ValueError(msg)
        if not self.spool_timeout >= 0:
            msg = "spool_timeout must be zero or positive"
            raise ValueError(msg)
        if self.ca_file is not None:
            self.tls_context()  # a missing or malformed bundle is refused here, not in the worker

    def tls_context(self) -> ssl.SSLContext:
        """The client context for an ``https://`` URL: ``ca_file``'s CAs, else the system's trust store.

        Raises:
            ValueError: ``ca_file`` cannot be read or holds no usable certificate.
        """
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:  # FileNotFoundError, or no PEM certificate in it
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            msg = f"cannot use the CA bundle {self.ca_file}: {reason}"
            raise ValueError(msg) from None

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        max_queue_bytes: int | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | None = None,
        ca_file: str | None = None,
    ) -> SinkConfig:
        """Explicit arguments first, then the environment, then defaults (spooling on).

        Variables: ``MICROMEGAS_TELEMETRY_URL``, ``MICROMEGAS_INGESTION_API_KEY``,
        ``SIRIUS_SINK_MAX_QUEUE_BYTES``, ``SIRIUS_SPOOL_DIR`` (``off`` disables the spool),
        ``SIRIUS_SPOOL_MAX_BYTES``, ``SIRIUS_TLS_CA_FILE``.
        """
        env = os.environ
        if max_queue_bytes is None:
            raw = env.get(SIRIUS_SINK_MAX_QUEUE_BYTES, "")
            max_queue_bytes = int(raw) if raw.isdigit() else DEFAULT_MAX_QUEUE_BYTES
        return cls(
            url=url or env.get(MICROMEGAS_TELEMETRY_URL) or DEFAULT_URL,
            api_key=api_key or env.get(MICROMEGAS_INGESTION_API_KEY) or None,
            max_queue_bytes=max_queue_bytes,
            spool=SpoolConfig.resolve(spool_dir, spool_max_bytes),
            ca_file=ca_file or env.get(SIRIUS_TLS_CA_FILE, "").strip() or None,
        )


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
    queued_events: int = 0
    sent_events: int = 0
    dropped_events: int = 0
    spooled_items: int = 0
    spooled_blocks: int = 0
    spooled_events: int = 0
    recovered_items: int = 0
    recovered_blocks: int = 0
    recovered_events: int = 0
    corrupt_spool_entries: int = 0


@dataclass(slots=True)
class _Item:
    kind: str  # "process" | "stream" | "block"
    path: str
    body: bytes
    droppable: bool = field(default=False)
    events: int = 0


_PATHS = {
    "process": "/ingestion/insert_process",
    "stream": "/ingestion/insert_stream",
    "block": "/ingestion/insert_block",
}


def _unreachable(url: str, exc: BaseException) -> str:
    """The warning for a failed send: an untrusted certificate says how to trust it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"telemetry sink does not trust the TLS certificate of {url} ({exc.verify_message}): "
            f"set {SIRIUS_TLS_CA_FILE} to the CA bundle that signed it; retrying"
        )
    return f"telemetry sink cannot reach {url}: {exc!r}; retrying"


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
        self._writer = SpoolWriter(self._config.spool) if self._config.spool is not None else None
        self._reset_state()
        if self._config.spool is not None:
            # What earlier processes left in the spool goes out now, beside this sink's own data.
            self._recovery = threading.Thread(target=self._recover, name="sirius-spool-recovery", daemon=True)
            self._recovery.start()
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
        self._abandoned = False  # set by shutdown: a late answer of a stuck worker is not counted
        self._metadata: list[SpoolEntry] = []  # process/stream bodies, rewritten into the spool
        self._recovery: threading.Thread | None = None
        self._recovery_stop = threading.Event()
        # Delivery passes of the recovery thread: one at start, one more per release of the
        # sink's own spool directory; wait_recovered waits for the pass it asked for.
        self._recovery_cond = threading.Condition(threading.Lock())
        self._recovery_requested = 1
        self._recovery_done = 0
        self._recovery_stopped = False

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
        """Queue ``insert_block``; False when it was dropped (queue full and not spooled, or stopped)."""
        events = getattr(block, "nb_objects", 0)
        return self._enqueue_safely(
            "block", lambda: block_to_cbor(block), droppable=True, events=events if isinstance(events, int) else 0
        )

    def send_encoded_block(self, body: bytes, nb_objects: int = 0) -> bool:
        """Queue an already CBOR-encoded block body (the native tracer encodes in C)."""
        return self._enqueue_safely("block", lambda: body, droppable=True, events=nb_objects)

    def send_encoded(self, kind: str, body: bytes, nb_objects: int = 0) -> bool:
        """Queue an already CBOR-encoded body of ``kind`` ``process``, ``stream`` or ``block``.

        Process and stream bodies are never dropped; returns False when a block was dropped.
        ``nb_objects`` (a block's event count) feeds the event counters of ``stats``.
        """
        if kind not in _PATHS:
            self._log.warn(f"telemetry sink: unknown item kind {kind!r}; dropped")
            return False
        return self._enqueue_safely(kind, lambda: body, droppable=kind == "block", events=nb_objects)

    def _enqueue_safely(self, kind: str, encode: Callable[[], bytes], *, droppable: bool, events: int = 0) -> bool:
        try:
            return self._enqueue(_Item(kind, _PATHS[kind], encode(), droppable, events if kind == "block" else 0))
        except Exception as exc:  # noqa: BLE001 - instrumentation must never raise into the app
            self._log.warn(f"telemetry sink could not queue a {kind}: {exc!r}")
            return False

    def _enqueue(self, item: _Item) -> bool:
        with self._cond:
            if self._pid != os.getpid():  # fork without the hook (e.g. os.fork in C code)
                self._after_fork_in_child()
            if not item.droppable and len(self._metadata) < MAX_METADATA_ITEMS:
                self._metadata.append(SpoolEntry(item.kind, item.body))
            full = item.droppable and self._stats.queued_bytes + len(item.body) > self._config.max_queue_bytes
            if not (self._stopping or full):
                self._queue.append(item)
                self._stats.queued_items += 1
                self._stats.queued_bytes += len(item.body)
                self._stats.queued_events += item.events
                self._ensure_worker()
                self._cond.notify_all()
                return True
        # Outside the lock: a disk write must not stall the worker.
        return self._spill(item)

    def _spill(self, item: _Item) -> bool:
        """Write ``item`` to the spool; count it as spooled, or as dropped when that fails."""
        writer = self._writer
        with self._cond:
            metadata = list(self._metadata)
        kept = writer is not None and writer.write(SpoolEntry(item.kind, item.body, item.events), metadata)
        with self._cond:
            if kept:
                self._stats.spooled_items += 1
                if item.kind == "block":
                    self._stats.spooled_blocks += 1
                    self._stats.spooled_events += item.events
            else:
                self._count_drop(item)
        if not kept and writer is not None:
            self._log.warn("telemetry sink: spool full or unwritable; blocks dropped")
        return kept

    def _count_drop(self, item: _Item) -> None:
        if item.kind == "block":
            self._stats.dropped_blocks += 1
            self._stats.dropped_bytes += len(item.body)
            self._stats.dropped_events += item.events

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sirius-telemetry-sink", daemon=True)
            self._thread.start()

    def _recover(self) -> None:
        """Deliver the spool: at start what earlier processes left, later what this sink released.

        Directories held by a live writer (this sink's current one included) are skipped.
        """
        spool = self._config.spool
        transport: Transport | None = None
        cond = self._recovery_cond
        try:
            while True:
                with cond:
                    while not self._recovery_stop.is_set() and self._recovery_done >= self._recovery_requested:
                        cond.wait()
                    if self._recovery_stop.is_set():
                        return
                    generation = self._recovery_requested
                if spool is not None and spool.directory.is_dir():
                    transport = transport or self._transport_factory(self._config)
                    self._recover_once(spool, transport)
                with cond:
                    self._recovery_done = generation
                    cond.notify_all()
        finally:
            with cond:
                self._recovery_stopped = True
                cond.notify_all()
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()

    def _recover_once(self, spool: SpoolConfig, transport: Transport) -> None:
        try:
            result = deliver_until(
                spool,
                lambda path, body: transport.post(path, body).status,
                timeout=float("inf"),
                stop_event=self._recovery_stop,
                backoff=(self._config.initial_backoff, self._config.max_backoff),
            )
        except Exception as exc:  # noqa: BLE001 - recovery must never take the app down
            self._log.warn(f"telemetry sink could not deliver its spool: {exc!r}")
            result = SpoolDeliveryStats()
        with self._cond:
            self._stats.recovered_items += result.delivered_items
            self._stats.recovered_blocks += result.delivered_blocks
            self._stats.recovered_events += result.delivered_events
            self._stats.corrupt_spool_entries += result.corrupt_entries
            self._cond.notify_all()

    def _release_spool(self) -> None:
        """The queue drained: hand what this sink spooled meanwhile to its recovery thread."""
        if self._writer is not None and self._writer.rotate():
            with self._recovery_cond:
                self._recovery_requested += 1
                self._recovery_cond.notify_all()

    def wait_recovered(self, timeout: float | None = None) -> bool:
        """Wait until the spool has been delivered (True) or the wait timed out.

        That is what earlier processes left, and what this sink spooled while its queue was full
        and released once the queue drained. Recovery retries while the service is unreachable,
        until ``shutdown``.
        """
        if self._recovery is None:
            return True
        with self._recovery_cond:
            target = self._recovery_requested
            return self._recovery_cond.wait_for(
                lambda: self._recovery_done >= target or self._recovery_stopped, timeout
            )

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
        """Deliver what is queued within ``timeout``, spool the rest, then stop.

        When the service is unreachable, spooling starts at once instead of waiting out the
        timeout. Spooling takes at most ``config.spool_timeout`` more; what is left then is
        dropped and counted. Later sends go to the spool (or are dropped).

        Returns:
            True when everything was delivered in time.
        """
        try:
            self._recovery_stop.set()
            with self._recovery_cond:
                self._recovery_cond.notify_all()
            with self._cond:
                self._stopping = True
                self._deadline = self._clock() + timeout
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout + 1.0)
            with self._cond:
                self._abandoned = True
                left = list(self._queue)
                self._queue.clear()
                self._stats.queued_items = 0
                self._stats.queued_bytes = 0
                self._stats.queued_events = 0
            spool_deadline = self._clock() + self._config.spool_timeout
            for item in left:
                if self._clock() < spool_deadline:
                    self._spill(item)
                else:
                    with self._cond:
                        self._count_drop(item)
            if self._writer is not None:
                self._writer.close()
            recovery = self._recovery
            if recovery is not None and recovery is not threading.current_thread():
                recovery.join(max(0.0, min(1.0, self._deadline - self._clock())))
            return not left
        except Exception as exc:  # noqa: BLE001
            self._log.warn(f"telemetry sink shutdown failed: {exc!r}")
            return False

    def _after_fork_in_child(self) -> None:
        # The parent's queued items are the parent's to send; the child starts empty with new
        # locks (the parent's may have been held by another thread at fork time), and a spool
        # directory of its own when it needs one.
        if self._writer is not None:
            self._writer.after_fork_in_child()
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
                    if self._abandoned:  # shutdown gave up on us and spooled the queue
                        return
                    if retry_after is None:
                        self._queue.popleft()
                        self._stats.queued_items -= 1
                        self._stats.queued_bytes -= len(item.body)
                        self._stats.queued_events -= item.events
                        if not self._queue and not self._stopping:
                            self._release_spool()
                        backoff = self._config.initial_backoff
                        self._cond.notify_all()
                        continue
                    if self._stopping:
                        # Shutting down and the service fails: spool now rather than wait out
                        # the deadline (the app is exiting).
                        self._cond.notify_all()
                        return
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
            self._log.warn(_unreachable(self._config.url, exc))
            return 0.0
        except Exception as exc:  # noqa: BLE001 - a transport bug must not kill the worker
            self._log.warn(f"telemetry sink transport error: {exc!r}; retrying")
            return 0.0
        status = response.status
        if 200 <= status < 300:
            with self._cond:
                if self._abandoned:
                    return None
                if item.kind == "process":
                    self._stats.sent_processes += 1
                elif item.kind == "stream":
                    self._stats.sent_streams += 1
                else:
                    self._stats.sent_blocks += 1
                    self._stats.sent_events += item.events
            return None
        if status == 429 or status >= 500:
            self._log.warn(f"telemetry sink got HTTP {status} from {self._config.url}; retrying")
            return response.retry_after or 0.0
        self._log.warn(f"telemetry sink: {item.kind} rejected with HTTP {status}; dropped")
        with self._cond:
            if not self._abandoned:
                self._stats.rejected_items += 1
                self._count_drop(item)
        return None
