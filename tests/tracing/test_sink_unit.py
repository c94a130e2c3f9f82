"""Telemetry sink behaviour at its transport boundary: ordering, retry policy, drops, never blocking."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

from sirius.tracing._sink import SinkConfig, TelemetrySink, TransportResponse
from sirius.tracing.transit._wire_format import Block, BlockPayload, ProcessInfo


def _process() -> ProcessInfo:
    return ProcessInfo(
        process_id=uuid.uuid4(),
        exe="app",
        username="u",
        realname="u",
        computer="c",
        distro="d",
        cpu_brand="cpu",
        tsc_frequency=1_000_000_000,
        start_time_ns=1_700_000_000_000_000_000,
        start_ticks=0,
    )


def _block(process: ProcessInfo, size: int) -> Block:
    return Block(
        block_id=uuid.uuid4(),
        stream_id=uuid.uuid4(),
        process_id=process.process_id,
        begin_time_ns=process.start_time_ns,
        begin_ticks=0,
        end_time_ns=process.start_time_ns + 1,
        end_ticks=1,
        payload=BlockPayload(b"", b"x" * size),
        object_offset=0,
        nb_objects=0,
    )


class ScriptedTransport:
    """Answers each POST with the next scripted status (then 200), recording what was sent."""

    def __init__(self, script: list[TransportResponse | Exception]) -> None:
        self.script = list(script)
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def post(self, path: str, body: bytes) -> TransportResponse:
        del body
        with self.lock:
            self.sent.append(path)
            step = self.script.pop(0) if self.script else TransportResponse(200)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self) -> None:
        pass


def _sink(transport: object, **config: object) -> TelemetrySink:
    cfg = SinkConfig(url="http://127.0.0.1:9", initial_backoff=0.001, max_backoff=0.01, **config)  # type: ignore[arg-type]
    return TelemetrySink(cfg, transport_factory=lambda _c: transport)  # type: ignore[arg-type,return-value]


def test_items_leave_in_order_and_retry_transient_failures() -> None:
    transport = ScriptedTransport(
        [ConnectionRefusedError(), TransportResponse(503, retry_after=0.0), TransportResponse(429)]
    )
    sink = _sink(transport)
    process = _process()
    sink.register_process(process)
    assert sink.send_block(_block(process, 10))
    assert sink.flush(timeout=10)
    # three failed attempts at the process, then the process, then the block
    assert transport.sent == ["/ingestion/insert_process"] * 4 + ["/ingestion/insert_block"]
    stats = sink.stats()
    assert (stats.retries, stats.sent_processes, stats.sent_blocks, stats.queued_items) == (3, 1, 1, 0)
    assert sink.shutdown(timeout=5)


def test_client_errors_are_not_retried() -> None:
    transport = ScriptedTransport([TransportResponse(400)])
    sink = _sink(transport)
    process = _process()
    assert sink.send_block(_block(process, 10))
    assert sink.flush(timeout=10)
    assert transport.sent == ["/ingestion/insert_block"]
    stats = sink.stats()
    assert (stats.rejected_items, stats.dropped_blocks, stats.retries) == (1, 1, 0)


class StuckTransport:
    """A transport whose first POST never returns until released: a hung network."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def post(self, path: str, body: bytes) -> TransportResponse:
        del path, body
        self.entered.set()
        self.release.wait()
        return TransportResponse(200)

    def close(self) -> None:
        pass


def test_full_queue_drops_blocks_and_never_blocks_the_caller() -> None:
    transport = StuckTransport()
    sink = _sink(transport, max_queue_bytes=10_000)
    process = _process()
    sink.register_process(process)  # metadata is never dropped
    assert transport.entered.wait(10)  # the worker is now stuck inside the network call
    accepted = [sink.send_block(_block(process, 3000)) for _ in range(10)]
    # If send_block blocked on the stuck transport this test would hang (pytest-timeout fails it).
    stats = sink.stats()
    assert accepted.count(True) == stats.queued_items - 1  # minus the in-flight process
    assert accepted.count(False) == stats.dropped_blocks > 0
    assert stats.queued_bytes <= 10_000  # the byte budget holds
    transport.release.set()
    assert sink.flush(timeout=10)
    assert sink.stats().sent_blocks == accepted.count(True)


def test_shutdown_gives_up_on_an_unreachable_service_within_its_timeout() -> None:
    transport = ScriptedTransport([ConnectionRefusedError()] * 10_000)
    sink = _sink(transport)
    process = _process()
    sink.register_process(process)
    sink.send_block(_block(process, 10))
    assert not sink.flush(timeout=0.05)
    assert sink.shutdown(timeout=0.2) is False
    assert sink.stats().dropped_blocks == 1
    assert sink.send_block(_block(process, 10)) is False  # stopped: dropped, no exception


def test_bad_input_never_raises_into_the_app() -> None:
    sink = _sink(ScriptedTransport([]))
    assert sink.send_block("not a block") is False  # type: ignore[arg-type]
    sink.register_process(None)  # type: ignore[arg-type]
    assert sink.flush(timeout=5)


# Forked in a fresh interpreter: by the time this test runs, earlier tests may have left gRPC
# threads in the pytest process, and a child forked beside them can deadlock on their locks.
FORK_SCRIPT = """
import os, threading, uuid
from sirius.tracing._sink import SinkConfig, TelemetrySink, TransportResponse
from sirius.tracing.transit._wire_format import Block, BlockPayload, ProcessInfo

class Stuck:
    def __init__(self):
        self.release, self.entered = threading.Event(), threading.Event()
    def post(self, path, body):
        self.entered.set()
        self.release.wait()
        return TransportResponse(200)
    def close(self):
        pass

transport = Stuck()
sink = TelemetrySink(SinkConfig(url="http://127.0.0.1:9"), transport_factory=lambda _c: transport)
process = ProcessInfo(uuid.uuid4(), "app", "u", "u", "c", "d", "cpu", 10**9, 1, 0)
sink.register_process(process)
assert transport.entered.wait(10)
block = Block(uuid.uuid4(), uuid.uuid4(), process.process_id, 1, 0, 2, 1, BlockPayload(b"", b"x"), 0, 0)
sink.send_block(block)
read_fd, write_fd = os.pipe()
pid = os.fork()
if pid == 0:  # child: the parent's items are not ours to send
    try:
        stats = sink.stats()
        ok = sink.flush(timeout=0)
        os.write(write_fd, f"{stats.queued_items},{int(ok)}".encode())
    finally:
        os._exit(0)
os.close(write_fd)
child = os.read(read_fd, 100).decode()
os.waitpid(pid, 0)
transport.release.set()
print(child, int(sink.flush(timeout=10)), sink.stats().sent_blocks)
"""


def test_forked_child_starts_with_an_empty_queue() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # the child saw an empty queue and nothing to flush; the parent then delivered its block
    assert result.stdout.split() == ["0,1", "1", "1"]
