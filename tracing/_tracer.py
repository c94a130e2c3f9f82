"""Lifecycle of the native tracer in a Python process: init, delivery, flush, shutdown, fork.

The C core seals blocks on its own sink thread and queues them as encoded ingestion bodies. One
Python daemon thread, the *uploader*, pops them (``next_item`` waits with the GIL released)
and hands them to a telemetry sink (``TelemetrySink`` over HTTP, or any object with
``send_encoded(kind, body)``, e.g. ``InMemoryBlockSink``). ``flush`` seals everything emitted
so far, waits until the uploader has handed over every item queued by then, then flushes the
sink. After ``os.fork`` the C core gives the child a new process id (the parent's becomes its
``parent_process_id``) and new streams, and the hook below starts a new uploader in the child.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import _binding
from ._environment_variables import (
    MICROMEGAS_PROCESS_PROPERTIES,
    SIRIUS_TRACING_BLOCK_SIZE,
    SIRIUS_TRACING_CHUNK_SIZE,
    SIRIUS_TRACING_CHUNKS_PER_THREAD,
    SIRIUS_TRACING_CLOCK,
    SIRIUS_TRACING_FLUSH_PERIOD,
    SIRIUS_TRACING_MAX_THREADS,
)
from ._exceptions import TracingError
from ._process import _cpu_brand, _username, parse_properties
from ._sink import SinkConfig, TelemetrySink
from .transit import ProcessInfo, process_info_from_cbor

DEFAULT_CHUNK_SIZE = 64 * 1024
DEFAULT_CHUNKS_PER_THREAD = 16  # 1 MiB a thread: 65 ms at 1 M events/s (see tracer.c)
DEFAULT_BLOCK_SIZE = 1024 * 1024
DEFAULT_FLUSH_PERIOD = 1.0
DEFAULT_MAX_THREADS = 4096
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024


class EncodedSink(Protocol):
    """Where the uploader hands encoded ingestion bodies (``TelemetrySink``, ``InMemoryBlockSink``)."""

    def send_encoded(self, kind: str, body: bytes) -> bool:
        """Queue one body of ``kind`` ``process``/``stream``/``block``; False if it was dropped."""
        ...

    def flush(self, timeout: float | None = ...) -> bool:
        """Deliver what was queued."""
        ...

    def shutdown(self, timeout: float = ...) -> bool:
        """Deliver and stop."""
        ...


@dataclass(frozen=True, slots=True)
class TracerConfig:
    """Settings of the native tracer (explicit arguments, then ``SIRIUS_TRACING_*``, then defaults).

    Attributes:
        flush_period: seconds after its first event at which a block is sealed.
        chunk_size: bytes per chunk of each thread's buffer.
        chunks_per_thread: chunks in each thread's ring (the thread drops events when all are full).
        block_size: uncompressed event bytes that seal a block.
        max_threads: threads traced at once.
        max_queue_bytes: budget of sealed blocks waiting for the uploader.
        clock: ``auto``, ``tsc`` or ``monotonic``.
    """

    flush_period: float = DEFAULT_FLUSH_PERIOD
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunks_per_thread: int = DEFAULT_CHUNKS_PER_THREAD
    block_size: int = DEFAULT_BLOCK_SIZE
    max_threads: int = DEFAULT_MAX_THREADS
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    clock: str = "auto"

    def __post_init__(self) -> None:
        if not self.flush_period > 0:
            msg = "flush_period must be positive"
            raise ValueError(msg)
        for name in ("chunk_size", "chunks_per_thread", "block_size", "max_threads", "max_queue_bytes"):
            if getattr(self, name) <= 0:
                msg = f"{name} must be positive"
                raise ValueError(msg)
        if self.clock not in _binding.CLOCKS:
            msg = f"clock must be one of {sorted(_binding.CLOCKS)}, got {self.clock!r}"
            raise ValueError(msg)

    @classmethod
    def resolve(cls, **explicit: Any) -> TracerConfig:
        """Build from explicit values (None = unset), then the environment, then defaults."""
        env = os.environ
        sources: dict[str, tuple[str, type]] = {
            "flush_period": (SIRIUS_TRACING_FLUSH_PERIOD, float),
            "chunk_size": (SIRIUS_TRACING_CHUNK_SIZE, int),
            "chunks_per_thread": (SIRIUS_TRACING_CHUNKS_PER_THREAD, int),
            "block_size": (SIRIUS_TRACING_BLOCK_SIZE, int),
            "max_threads": (SIRIUS_TRACING_MAX_THREADS, int),
            "clock": (SIRIUS_TRACING_CLOCK, str),
        }
        values: dict[str, Any] = {}
        for name, (var, kind) in sources.items():
            if explicit.get(name) is not None:
                values[name] = explicit[name]
            elif env.get(var):
                try:
                    values[name] = kind(env[var].strip())
                except ValueError:
                    msg = f"{var}={env[var]!r} is not a valid {kind.__name__}"
                    raise ValueError(msg) from None
        if explicit.get("max_queue_bytes") is not None:
            values["max_queue_bytes"] = explicit["max_queue_bytes"]
        return cls(**values)


@dataclass(frozen=True, slots=True)
class TracerStats:
    """Counters of the native tracer and its delivery (a snapshot).

    Every event ends in exactly one place, so at any quiet moment, and always after
    ``shutdown``::

        events_emitted + events_internal
            == events_delivered + events_dropped + events_spooled + events_pending

    (``events_pending`` is 0 after a ``shutdown`` that finished in time). Counters are read one
    after the other, so while events flow a snapshot may be off by what moved meanwhile. With a
    ``TelemetrySink`` (the default, or one passed as ``sink``) delivery counters are the sink's
    own, so a sink shared with other producers counts their blocks too; with any other sink a
    block counts as delivered when ``send_encoded`` accepts it.

    Attributes:
        events_recorded: events read from thread buffers by the native sink.
        events_dropped: events lost: full thread buffers (``events_lost``), blocks the native
            queue refused, and blocks the telemetry sink could neither deliver nor spool.
        blocks_produced: blocks sealed by the native sink.
        blocks_sent: blocks delivered (acknowledged by the service, or accepted by a custom sink).
        blocks_dropped: blocks lost (native queue full, or neither delivered nor spooled).
        threads_attached: thread streams created.
        queued_items: ingestion bodies waiting for the uploader.
        events_lost: events lost in full thread buffers (reported in the data as drop records).
        events_internal: events the tracer added itself (those drop records: a log and a metric).
        events_delivered: events of delivered blocks.
        events_spooled: events of blocks written to the spool (delivered by a later process).
        events_pending: events not settled yet: in thread buffers' open blocks, queued, in flight.
        blocks_spooled: blocks written to the spool.
        intern_overflows: strings and property sets interned past the tracer's cardinality caps
            (recorded as ``<overflow>`` and without properties).
    """

    events_recorded: int
    events_dropped: int
    blocks_produced: int
    blocks_sent: int
    blocks_dropped: int
    threads_attached: int
    queued_items: int
    events_lost: int = 0
    events_internal: int = 0
    events_delivered: int = 0
    events_spooled: int = 0
    events_pending: int = 0
    blocks_spooled: int = 0
    intern_overflows: int = 0

    @property
    def events_emitted(self) -> int:
        """Every event the application emitted up to the last sink pass (recorded + lost)."""
        return self.events_recorded + self.events_lost


class _Uploader:
    """The daemon thread moving encoded bodies from the native queue to the telemetry sink."""

    def __init__(self, sink: EncodedSink) -> None:
        self.sink = sink
        # A TelemetrySink counts events per outcome (sent, spooled, dropped) when told them.
        self.counts_events = isinstance(sink, TelemetrySink)
        self.cond = threading.Condition()
        self.forwarded = 0  # items popped from the native queue and handed to the sink
        self.handled_events = 0  # events of blocks handed to the sink (send_encoded returned)
        self.accepted_blocks = 0
        self.accepted_events = 0
        self.dropped_blocks = 0
        self.dropped_events = 0
        self.thread = threading.Thread(target=self._run, name="sirius-tracing-uploader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _binding.set_thread_untraced(True)
        holder = _binding.ItemBuffer()
        while True:
            item = _binding.next_item(holder, 0.25)
            if item == _binding.CLOSED:
                return
            if item is None or isinstance(item, int):
                continue
            kind, nb_objects, body = item
            try:
                if self.counts_events:
                    accepted = self.sink.send_encoded(kind, body, nb_objects)  # type: ignore[call-arg]
                else:
                    accepted = self.sink.send_encoded(kind, body)
            except Exception:  # noqa: BLE001 - a broken sink must not kill delivery
                accepted = False
            with self.cond:
                if kind == "block":
                    self.handled_events += nb_objects
                    if accepted:
                        self.accepted_blocks += 1
                        self.accepted_events += nb_objects
                    else:
                        self.dropped_blocks += 1
                        self.dropped_events += nb_objects
                self.forwarded += 1
                self.cond.notify_all()

    def wait_forwarded(self, target: int, deadline: float) -> bool:
        with self.cond:
            while self.forwarded < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.thread.is_alive():
                    return self.forwarded >= target
                self.cond.wait(min(remaining, 0.25))
            return True


class _State:
    """Process-wide tracer state (one tracer per process, like the C core)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uploader: _Uploader | None = None
        self.last_uploader: _Uploader | None = None  # kept after shutdown for stats()
        self.sink: EncodedSink | None = None
        self.owns_sink = False
        self.config: TracerConfig | None = None
        self.process: ProcessInfo | None = None


_state = _State()
_atexit_registered = False


def _identity(properties: Mapping[str, str] | None, exe: str | None) -> _binding.NativeIdentity:
    merged = parse_properties(os.environ.get(MICROMEGAS_PROCESS_PROPERTIES))
    merged.update(properties or {})
    return _binding.NativeIdentity(
        exe=exe or (os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else sys.executable),
        username=_username(),
        computer=socket.gethostname(),
        distro=platform.platform(),
        cpu_brand=_cpu_brand(),
        properties=merged,
    )


def _thread_name() -> str:
    return threading.current_thread().name


def init(
    url: str | None = None,
    *,
    api_key: str | None = None,
    properties: Mapping[str, str] | None = None,
    flush_period: float | None = None,
    chunk_size: int | None = None,
    chunks_per_thread: int | None = None,
    block_size: int | None = None,
    max_threads: int | None = None,
    max_queue_bytes: int | None = None,
    clock: str | None = None,
    sink: EncodedSink | None = None,
    exe: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    spool_max_bytes: int | None = None,
    tls_ca_file: str | None = None,
) -> uuid.UUID:
    """Start the native tracer and its delivery.

    Args:
        url: ingestion service (default ``MICROMEGAS_TELEMETRY_URL``, then ``http://127.0.0.1:9000``).
        api_key: Bearer token (default ``MICROMEGAS_INGESTION_API_KEY``).
        properties: process properties, merged over ``MICROMEGAS_PROCESS_PROPERTIES``.
        flush_period: seconds after its first event at which a block is sealed (default 1).
        chunk_size: bytes per chunk of each thread's buffer (default 64 KiB).
        chunks_per_thread: chunks per thread (default 16).
        block_size: uncompressed bytes that seal a block (default 1 MiB).
        max_threads: threads traced at once (default 4096).
        max_queue_bytes: budget of sealed blocks waiting for delivery (default 64 MiB).
        clock: ``auto`` (TSC when invariant), ``tsc`` or ``monotonic``.
        sink: deliver to this object instead of an HTTP ``TelemetrySink`` built from url/api_key.
        exe: executable recorded in the process info (default the main script).
        spool_dir: where blocks that cannot be delivered (service unreachable at shutdown, queue
            full) are kept for the next process using the same spool, or ``sirius spool flush``
            (default ``SIRIUS_SPOOL_DIR``, then ``$XDG_CACHE_HOME/sirius/spool`` or
            ``~/.cache/sirius/spool``; ``"off"`` disables it). Ignored when ``sink`` is given.
        spool_max_bytes: cap of the spool in bytes (default ``SIRIUS_SPOOL_MAX_BYTES``, then 256 MiB).
        tls_ca_file: PEM bundle of the CAs trusted for an ``https://`` url (default
            ``SIRIUS_TLS_CA_FILE``, then the system's trust store). Ignored when ``sink`` is given.

    Returns:
        The process id (shared with the OTel bridge: ``process_info()``).

    Raises:
        TracingError: when the tracer is already running.
        ValueError: invalid settings.
    """
    global _atexit_registered  # noqa: PLW0603 - one tracer per process
    config = TracerConfig.resolve(
        flush_period=flush_period,
        chunk_size=chunk_size,
        chunks_per_thread=chunks_per_thread,
        block_size=block_size,
        max_threads=max_threads,
        max_queue_bytes=max_queue_bytes,
        clock=clock,
    )
    with _state.lock:
        if _binding.tracer_is_running():
            msg = "sirius.tracing is already initialised; call shutdown() first"
            raise TracingError(msg)
        owns = sink is None
        if sink is None:
            sink = TelemetrySink(
                SinkConfig.resolve(
                    url=url,
                    api_key=api_key,
                    spool_dir=spool_dir,
                    spool_max_bytes=spool_max_bytes,
                    ca_file=tls_ca_file,
                )
            )
        fast = _binding.fast_module()
        fast.set_thread_name_hook(_thread_name)
        _binding.tracer_init(
            chunk_size=config.chunk_size,
            chunks_per_thread=config.chunks_per_thread,
            max_threads=config.max_threads,
            block_size=config.block_size,
            flush_period=config.flush_period,
            max_queue_bytes=config.max_queue_bytes,
            clock=config.clock,
            identity=_identity(properties, exe),
        )
        _state.sink, _state.owns_sink, _state.config, _state.process = sink, owns, config, None
        _state.uploader = _Uploader(sink)
        _state.last_uploader = None
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _atexit_registered = True
    process_id = _binding.tracer_process_id()
    assert process_id is not None  # noqa: S101 - set by a successful init
    return process_id


def _after_fork_in_child() -> None:
    # The C core already switched to a new process id and streams (pthread_atfork); the
    # parent's uploader thread does not exist here. A new lock too: another thread may have
    # held the old one at fork time.
    _state.lock = threading.Lock()
    _state.process = None
    if _binding.tracer_is_running() and _state.sink is not None:
        _state.uploader = _Uploader(_state.sink)


def _shutdown_at_exit() -> None:
    if _binding.tracer_is_running():
        shutdown(timeout=5.0)


def is_running() -> bool:
    """True between ``init`` and ``shutdown``."""
    return _binding.tracer_is_running()


def flush(timeout: float | None = 10.0) -> bool:
    """Seal what was emitted so far and deliver it; True when it was delivered within ``timeout``.

    Never raises; returns False when the tracer is not running.
    """
    deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
    uploader, sink = _state.uploader, _state.sink
    if uploader is None or sink is None or not _binding.tracer_flush(timeout):
        return False
    target = _binding.tracer_stats()["items_total"]
    if not uploader.wait_forwarded(target, deadline):
        return False
    try:
        return bool(sink.flush(max(0.0, deadline - time.monotonic())))
    except Exception:  # noqa: BLE001 - flush never raises into the app
        return False


def shutdown(timeout: float = 10.0) -> bool:
    """Seal, deliver and stop within ``timeout``; True when everything was delivered.

    Later events are ignored. ``init`` may be called again afterwards (a new process identity).
    """
    deadline = time.monotonic() + timeout
    with _state.lock:
        uploader, sink, owns = _state.uploader, _state.sink, _state.owns_sink
        if uploader is None or sink is None:
            return True
        ok = _binding.tracer_shutdown(timeout)
        # The uploader drains the closed queue, then exits.
        uploader.thread.join(max(0.0, deadline - time.monotonic()))
        ok = ok and not uploader.thread.is_alive()
        try:
            remaining = max(0.0, deadline - time.monotonic())
            ok = bool(sink.shutdown(remaining) if owns else sink.flush(remaining)) and ok
        except Exception:  # noqa: BLE001
            ok = False
        _state.uploader = None
        _state.last_uploader = uploader
        _binding.fast_module().set_thread_name_hook(None)
        return ok


def stats() -> TracerStats:
    """Counters of the tracer and its delivery (see ``TracerStats`` for the identity they keep)."""
    native = _binding.tracer_stats()
    uploader = _state.uploader or _state.last_uploader
    with uploader.cond if uploader else contextlib.nullcontext():
        handled = uploader.handled_events if uploader else 0
        delivered_blocks = uploader.accepted_blocks if uploader else 0
        delivered = uploader.accepted_events if uploader else 0
        lost_blocks = uploader.dropped_blocks if uploader else 0
        lost = uploader.dropped_events if uploader else 0
    spooled = spooled_blocks = in_sink = 0
    sink = uploader.sink if uploader else None
    if isinstance(sink, TelemetrySink) and uploader is not None and uploader.counts_events:
        # The sink saw every block the uploader accepted: it knows how each one ended.
        s = sink.stats()
        delivered_blocks, delivered = s.sent_blocks, s.sent_events
        lost_blocks, lost = s.dropped_blocks, s.dropped_events
        spooled_blocks, spooled, in_sink = s.spooled_blocks, s.spooled_events, s.queued_events
    in_native = native["events_recorded"] + native["events_internal"] - native["events_queue_dropped"]
    in_native -= native["events_popped"]  # open blocks + native queue
    return TracerStats(
        events_recorded=native["events_recorded"],
        events_dropped=native["events_dropped"] + lost,
        blocks_produced=native["blocks_produced"],
        blocks_sent=delivered_blocks,
        blocks_dropped=native["blocks_dropped"] + lost_blocks,
        threads_attached=native["threads_attached"],
        queued_items=native["queued_items"],
        events_lost=native["events_lost"],
        events_internal=native["events_internal"],
        events_delivered=delivered,
        events_spooled=spooled,
        events_pending=in_native + (native["events_popped"] - handled) + in_sink,
        blocks_spooled=spooled_blocks,
        intern_overflows=native["intern_overflows"],
    )


def process_id() -> uuid.UUID | None:
    """This process's id as the tracer registers it (None before ``init``)."""
    return _binding.tracer_process_id()


def process_info() -> ProcessInfo | None:
    """This process as the tracer registers it: id, properties, start time, ticks, frequency.

    The OTel bridge uses it so OTel and native data share one process. Finishes the tick
    calibration if needed (may take ~20 ms right after ``init``). None before ``init``.
    """
    if _state.process is not None and _state.process.process_id == _binding.tracer_process_id():
        return _state.process
    body = _binding.tracer_process_info_cbor()
    if body is None:
        return None
    _state.process = process_info_from_cbor(body)
    return _state.process


def current_process() -> ProcessInfo | None:
    """The running tracer's ``ProcessInfo``, None when it is not running (the OTel bridge's hook).

    The bridge writes its blocks under this process so OTel and native data join on
    ``process_id``; ticks of blocks written under it follow its ``start_ticks`` and
    ``tsc_frequency`` (``ticks = start_ticks + (unix_ns - start_time_ns) * tsc_frequency / 1e9``).
    """
    if not _binding.tracer_is_running():
        return None
    return process_info()
