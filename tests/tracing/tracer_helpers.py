"""Helpers shared by the native tracer tests: an observable in-memory sink and block decoding."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sirius import tracing
from sirius.lakehouse import TickConverter, decode_block
from sirius.tracing import Block, InMemoryBlockSink, ProcessInfo, StreamInfo


class WatchedSink(InMemoryBlockSink):
    """An ``InMemoryBlockSink`` whose waiters are woken on every item (no sleeps in tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def send_encoded(self, kind: str, body: bytes) -> bool:
        with self.cond:
            ok = super().send_encoded(kind, body)
            self.cond.notify_all()
            return ok

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True


@dataclass
class Decoded:
    """Everything a sink received, decoded: per stream, events in stream order."""

    processes: list[ProcessInfo]
    streams: dict[uuid.UUID, StreamInfo]
    blocks: list[Block]
    events: dict[uuid.UUID, list[dict[str, Any]]] = field(default_factory=dict)

    def streams_tagged(self, tag: str) -> list[StreamInfo]:
        return [s for s in self.streams.values() if tag in s.tags]

    def tagged_events(self, tag: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for stream in self.streams_tagged(tag):
            out.extend(self.events.get(stream.stream_id, []))
        return out

    def thread_events(self, native_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for stream in self.streams_tagged("cpu"):
            if stream.properties.get("thread-id") == str(native_id):
                out.extend(self.events.get(stream.stream_id, []))
        return out

    def converter(self) -> TickConverter:
        (process,) = self.processes
        return TickConverter.for_process(process)


def decode_items(processes, streams, blocks) -> Decoded:
    """Decode blocks with the lakehouse transit reader, in ``object_offset`` order per stream."""
    by_id = {s.stream_id: s for s in streams}
    per_stream: dict[uuid.UUID, list[Block]] = collections.defaultdict(list)
    for block in blocks:
        per_stream[block.stream_id].append(block)
    events: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for stream_id, stream_blocks in per_stream.items():
        stream = by_id[stream_id]
        out: list[dict[str, Any]] = []
        expected_offset = 0
        for block in sorted(stream_blocks, key=lambda b: b.object_offset):
            assert block.object_offset == expected_offset, "gap or duplicate in the stream's blocks"
            decoded = decode_block(stream.dependencies_metadata, stream.objects_metadata, block.payload).to_events()
            assert len(decoded) == block.nb_objects
            expected_offset += block.nb_objects
            out.extend(decoded)
        events[stream_id] = out
    return Decoded(list(processes), by_id, list(blocks), events)


def decode_sink(sink: InMemoryBlockSink) -> Decoded:
    return decode_items(sink.processes, sink.streams, sink.blocks)


def span_name(event: dict[str, Any]) -> str:
    for key in ("thread_span_desc", "span_desc"):
        if key in event:
            return event[key]["name"]
    return event["name"]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(type, span name)`` per cpu event."""
    return [(e["type"], span_name(e)) for e in events]


def is_internal(event: dict[str, Any]) -> bool:
    desc = event.get("desc") or {}
    return desc.get("target") == "sirius.tracing"


def hammer_spans(threads: int, spans: int) -> None:
    """``spans`` begin/end pairs of a span named "hot" from each of ``threads`` threads (joined)."""
    desc = tracing.span_desc("hot")
    begin, end = tracing.begin_span, tracing.end_span

    def run() -> None:
        for _ in range(spans):
            begin(desc)
            end(desc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
