"""The C API without Python: a C program built with `cc` from the public header and the static
library (the documented build line of tracing/native/README.md) emits from several threads; its
blocks decode with the lakehouse transit reader to exactly the events it emitted."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from c_programs import build_program, run_program
from tracer_helpers import decode_items, is_internal, span_name

from sirius.tracing import block_from_cbor, process_info_from_cbor, stream_info_from_cbor


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return build_program("emit_threads", tmp_path_factory.mktemp("cbuild"))


def run_emit_threads(exe: Path, tmp_path: Path, threads: int, iterations: int, chunk: int):
    """Run emit_threads; return its stats, the items it pulled and the events it says it emitted."""
    expected_path = tmp_path / "expected.tsv"
    stats, items = run_program(exe, tmp_path / "items.bin", expected_path, threads, iterations, chunk)
    expected = [line.split("\t") for line in expected_path.read_text().splitlines()]
    return stats, items, expected


def decode(items):
    processes = [process_info_from_cbor(b) for k, _, b in items if k == "process"]
    streams = [stream_info_from_cbor(b) for k, _, b in items if k == "stream"]
    blocks = [block_from_cbor(b) for k, _, b in items if k == "block"]
    for (kind, nb_objects, _), block in zip([i for i in items if i[0] == "block"], blocks, strict=True):
        assert kind == "block"
        assert nb_objects == block.nb_objects
    return decode_items(processes, streams, blocks)


EVENT_TYPES = {
    "begin": "BeginThreadSpanEvent",
    "end": "EndThreadSpanEvent",
    "begin_named": "BeginThreadNamedSpanEvent",
    "end_named": "EndThreadNamedSpanEvent",
    "async_begin": "BeginAsyncSpanEvent",
    "async_end": "EndAsyncSpanEvent",
    "async_begin_named": "BeginAsyncNamedSpanEvent",
    "async_end_named": "EndAsyncNamedSpanEvent",
}


def test_c_program_events_decode_exactly(program, tmp_path):
    threads, iterations = 4, 150
    stats, items, expected = run_emit_threads(program, tmp_path, threads, iterations, 65536)
    assert stats["rc"] == 0
    assert stats["emitted"] == stats["recorded"] == threads * iterations * 12
    assert stats["dropped"] == 0
    assert items[0][0] == "process"  # the process precedes its streams, a stream its blocks
    decoded = decode(items)
    (process,) = decoded.processes
    assert process.properties["test"] == "c-program"
    assert process.tsc_frequency > 0
    convert = decoded.converter().ticks_to_ns

    by_tid: dict[str, list[list[str]]] = collections.defaultdict(list)
    for row in expected:
        by_tid[row[0]].append(row)
    assert len(by_tid) == threads
    log_events = decoded.tagged_events("log")
    dynamic_logs = {e["msg"]: e for e in log_events if e["type"] == "LogStringEventV2"}
    for tid, rows in by_tid.items():
        index = next(r[2].split()[1] for r in rows if r[1] == "log" and r[2].startswith("dynamic"))
        (stream,) = [s for s in decoded.streams_tagged("cpu") if s.properties["thread-id"] == tid]
        assert stream.properties["thread-name"] == f"worker-{index}"
        cpu_rows = [r for r in rows if r[1] in EVENT_TYPES]
        events = decoded.events[stream.stream_id]
        assert [(e["type"], span_name(e)) for e in events] == [(EVENT_TYPES[r[1]], r[2]) for r in cpu_rows]
        for event, row in zip(events, cpu_rows, strict=True):
            if event["type"].startswith(("BeginAsync", "EndAsync")):
                assert event["span_id"] == int(row[3])
                assert (event["parent_span_id"], event["depth"]) == (0, 1)
        # times: each event lies between the wall clock read before it and the one read before
        # the next event of the thread, within 1 ms
        walls = [int(r[4]) for r in rows]
        position = {id(r): i for i, r in enumerate(rows)}
        times = convert([e["time"] for e in events]).tolist()
        for at, row in zip(times, cpu_rows, strict=True):
            i = position[id(row)]
            upper = walls[i + 1] if i + 1 < len(walls) else walls[i] + 10**9
            assert walls[i] - 1_000_000 <= at <= upper + 1_000_000
        for row in rows:
            if row[1] == "log" and row[2].startswith("dynamic"):
                event = dynamic_logs[row[2]]
                assert event["desc"]["level"] == int(row[3]) == 3
                i = position[id(row)]
                (at,) = convert([event["time"]]).tolist()
                assert walls[i] - 1_000_000 <= at <= walls[i + 1] + 1_000_000
    statics = [e for e in log_events if e["type"] == "LogStaticStrEvent"]
    assert len(statics) == threads * iterations
    assert {(e["desc"]["fmt_str"], e["desc"]["level"], e["desc"]["target"]) for e in statics} == {
        ("static message", 4, "emit_threads")
    }
    metrics = collections.Counter((e["type"], e["desc"]["name"], e["value"]) for e in decoded.tagged_events("metrics"))
    want = collections.Counter()
    for row in expected:
        if row[1] == "metric":
            kind = "IntegerMetricEvent" if row[2] == "count" else "FloatMetricEvent"
            want[(kind, row[2], int(row[3]) if row[2] == "count" else float(row[3]))] += 1
    assert metrics == want


def test_c_program_stress_accounts_for_every_event(program, tmp_path):
    threads, iterations = 4, 5000
    stats, items, _ = run_emit_threads(program, tmp_path, threads, iterations, 1024)
    emitted = threads * iterations * 12
    assert stats["emitted"] == emitted
    decoded = decode(items)
    received = sum(1 for tag in ("cpu", "log", "metrics") for e in decoded.tagged_events(tag) if not is_internal(e))
    assert received == stats["recorded"]
    assert received + stats["dropped"] == emitted
    reported = sum(e["value"] for e in decoded.tagged_events("metrics") if is_internal(e))
    assert reported == stats["dropped"]
