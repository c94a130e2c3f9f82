"""The native tracer through the real ingestion service: a C program built from the public header
and library, a Python process (sync/async/generator/exception/auto spans, logs, metrics), and a
fork. What the lake stores (PostgreSQL rows + object store payloads) decodes with the lakehouse
transit reader to exactly the events emitted."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

TRACING_TESTS = str(Path(__file__).resolve().parents[1] / "tracing")
if TRACING_TESTS not in sys.path:
    sys.path.insert(0, TRACING_TESTS)

from auto_sample import work  # noqa: E402
from c_programs import build_program, send_items  # noqa: E402
from test_c_program import decode, run_emit_threads  # noqa: E402
from tracer_helpers import decode_items, span_name, summary  # noqa: E402

from sirius import tracing  # noqa: E402
from sirius.collector import block_object_key  # noqa: E402
from sirius.tracing import (  # noqa: E402
    Block,
    ProcessInfo,
    StreamInfo,
    decode_udts,
    payload_from_cbor,
)

B, E = "BeginThreadSpanEvent", "EndThreadSpanEvent"


def _uuid(value) -> uuid.UUID:
    return uuid.UUID(str(value))


async def _read_lake(stack):
    """Every process, stream and block of the lake, blocks with their stored payloads."""
    lake, store = stack.stack.lake, stack.stack.store
    processes = [await lake.get_process(_uuid(r[0])) for r in await lake.pool.fetch("SELECT process_id FROM processes")]
    streams = [await lake.get_stream(_uuid(r[0])) for r in await lake.pool.fetch("SELECT stream_id FROM streams")]
    blocks = []
    for (block_id,) in await lake.pool.fetch("SELECT block_id FROM blocks"):
        record = await lake.get_block(_uuid(block_id))
        payload = payload_from_cbor(
            await store.get(block_object_key(record.process_id, record.stream_id, record.block_id))
        )
        blocks.append((record, payload))
    return processes, streams, blocks


def _lake_contents(stack):
    processes, streams, blocks = stack.call(_read_lake(stack))
    infos = [
        ProcessInfo(
            process_id=p.process_id,
            exe=p.exe,
            username=p.username,
            realname=p.realname,
            computer=p.computer,
            distro=p.distro,
            cpu_brand=p.cpu_brand,
            tsc_frequency=p.tsc_frequency,
            start_time_ns=p.start_time_ns,
            start_ticks=p.start_ticks,
            parent_process_id=p.parent_process_id,
            properties=dict(p.properties),
        )
        for p in processes
    ]
    stream_infos = [
        StreamInfo(
            process_id=s.process_id,
            stream_id=s.stream_id,
            dependencies_metadata=decode_udts(s.dependencies_metadata),
            objects_metadata=decode_udts(s.objects_metadata),
            tags=tuple(s.tags),
            properties=dict(s.properties),
        )
        for s in streams
    ]
    block_objs = [
        Block(
            block_id=r.block_id,
            stream_id=r.stream_id,
            process_id=r.process_id,
            begin_time_ns=r.begin_time_ns,
            begin_ticks=r.begin_ticks,
            end_time_ns=r.end_time_ns,
            end_ticks=r.end_ticks,
            payload=payload,
            object_offset=r.object_offset,
            nb_objects=r.nb_objects,
        )
        for r, payload in blocks
    ]
    return infos, stream_infos, block_objs


def test_c_program_blocks_through_the_ingestion_service(stack_factory, tmp_path):
    exe = build_program("emit_threads", tmp_path)
    stats, items, _expected = run_emit_threads(exe, tmp_path, threads=3, iterations=100, chunk=65536)
    assert stats["dropped"] == 0
    direct = decode(items)
    stack = stack_factory()
    send_items(stack.url, items)
    stored = decode_items(*_lake_contents(stack))
    (stored_process,) = stored.processes
    (direct_process,) = direct.processes
    # PostgreSQL keeps microseconds
    assert abs(stored_process.start_time_ns - direct_process.start_time_ns) < 1000
    assert dataclasses.replace(stored_process, start_time_ns=direct_process.start_time_ns) == direct_process
    assert {s.stream_id: s for s in stored.streams.values()} == direct.streams
    assert stored.events == direct.events
    assert (
        sum(len(e) for e in stored.events.values()) == stats["recorded"] == 3 * 100 * 12
    )  # 12 events per iteration (emit_threads.c)


def test_python_process_through_the_ingestion_service(stack_factory):
    stack = stack_factory()
    process_id = tracing.init(url=stack.url, properties={"test": "e2e-python"})
    try:

        @tracing.span
        def compute(x):
            if x < 0:
                raise ValueError(x)
            return x * 2

        @tracing.span
        def chunks(n):
            yield from range(n)

        @tracing.span
        async def fetch(i):
            await asyncio.sleep(0)
            return i

        with tracing.span("request"):
            compute(2)
            with pytest.raises(ValueError, match="-1"):
                compute(-1)
            assert list(chunks(2)) == [0, 1]
            tracing.warn("slow request")
            tracing.metric("latency", 12.5, unit="ms")
        assert asyncio.run(fetch(1)) == 1
        tracing.auto_spans(include=["auto_sample"], exclude=["auto_sample.skipped"])
        work.outer(1)
        tracing.stop_auto_spans()
        worker_id = []

        def in_thread():
            worker_id.append(threading.get_native_id())
            with tracing.span("worker-span"):
                tracing.info("from worker")

        t = threading.Thread(target=in_thread, name="e2e-worker")
        t.start()
        t.join()
        assert tracing.flush(timeout=60)
        assert tracing.stats().blocks_sent == tracing.stats().blocks_produced
    finally:
        assert tracing.shutdown(timeout=30)
    stored = decode_items(*_lake_contents(stack))
    (process,) = stored.processes
    assert process.process_id == process_id
    assert process.properties["test"] == "e2e-python"
    main = stored.thread_events(threading.get_native_id())
    thread_spans = [(t, n.rsplit(".", 1)[-1]) for t, n in summary([e for e in main if "thread_span_desc" in e])]
    assert thread_spans == [
        (B, "request"),
        (B, "compute"),
        (E, "compute"),
        (B, "compute"),
        (E, "compute"),
        *[(B, "chunks"), (E, "chunks")] * 3,
        (E, "request"),
        (B, "outer"),
        (B, "inner"),
        (E, "inner"),
        (E, "outer"),
    ]
    asyncs = [(e["type"], span_name(e)) for e in main if "span_desc" in e]
    assert [t for t, _ in asyncs] == ["BeginAsyncSpanEvent", "EndAsyncSpanEvent"]
    logs = stored.tagged_events("log")
    assert [(e["msg"], e["desc"]["level"]) for e in logs] == [("slow request", 3), ("from worker", 4)]
    (metric,) = stored.tagged_events("metrics")
    assert (metric["desc"]["name"], metric["desc"]["unit"], metric["value"]) == ("latency", "ms", 12.5)
    (worker_stream,) = [s for s in stored.streams_tagged("cpu") if s.properties["thread-id"] == str(worker_id[0])]
    assert worker_stream.properties["thread-name"] == "e2e-worker"
    assert summary(stored.events[worker_stream.stream_id]) == [(B, "worker-span"), (E, "worker-span")]


# The forking app runs in its own process: forking this test process would also copy the
# stack's gRPC and asyncio threads (the OTLP and FlightSQL servers), and a child forked from a
# process with such threads can deadlock on a lock one of them held (gRPC warns "skipping fork()
# handlers"). A real instrumented app forks with only the tracer's own threads, as here.
FORKING_APP = """
import os, sys
from sirius import tracing

parent_id = tracing.init(url=sys.argv[1])
tracing.info("before fork")
with tracing.span("before-fork"):
    pass
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:  # child: emit, deliver, report, leave without running the parent's cleanup
    code = 1
    try:
        os.close(read_end)
        tracing.info("in child")
        with tracing.span("child-span"):
            pass
        ok = tracing.flush(timeout=60)
        os.write(write_end, f"{tracing.process_id()} {int(ok)}".encode())
        code = 0
    finally:
        os._exit(code)
os.close(write_end)
tracing.info("in parent")
with os.fdopen(read_end, "rb") as pipe:
    child_id, child_ok = pipe.read().decode().split()
_, status = os.waitpid(pid, 0)
flushed = tracing.flush(timeout=60)
stopped = tracing.shutdown(timeout=30)
print(parent_id, child_id, child_ok, pid, os.waitstatus_to_exitcode(status), int(flushed), int(stopped))
"""


def test_fork_parent_and_child_both_deliver_once(stack_factory):
    stack = stack_factory()
    result = subprocess.run(
        [sys.executable, "-c", FORKING_APP, stack.url], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    parent_text, child_id_text, child_ok, pid_text, child_exit, flushed, stopped = result.stdout.split()
    assert (child_ok, child_exit, flushed, stopped) == ("1", "0", "1", "1")
    parent_id, pid = uuid.UUID(parent_text), int(pid_text)
    child_id = uuid.UUID(child_id_text)
    assert child_id != parent_id
    stored = decode_items(*_lake_contents(stack))
    processes = {p.process_id: p for p in stored.processes}
    assert set(processes) == {parent_id, child_id}
    assert processes[child_id].parent_process_id == parent_id
    assert processes[child_id].properties["pid"] == str(pid)
    assert processes[parent_id].parent_process_id is None
    logs_by_process: dict[uuid.UUID, list[str]] = {}
    spans_by_process: dict[uuid.UUID, list[str]] = {}
    for stream in stored.streams.values():
        for event in stored.events.get(stream.stream_id, []):
            if "msg" in event:
                logs_by_process.setdefault(stream.process_id, []).append(event["msg"])
            elif event["type"] == B:
                spans_by_process.setdefault(stream.process_id, []).append(span_name(event))
    assert logs_by_process == {parent_id: ["before fork", "in parent"], child_id: ["in child"]}
    assert spans_by_process == {parent_id: ["before-fork"], child_id: ["child-span"]}
    assert len({b.block_id for b in stored.blocks}) == len(stored.blocks)
    assert {b.process_id for b in stored.blocks if stored.streams[b.stream_id].process_id == child_id} == {child_id}
