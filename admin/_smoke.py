"""``sirius up --smoke``: prove the running stack end to end, then stop.

A sample process sends one log, one metrics and one thread-span block through the telemetry
sink over HTTP, exactly as an instrumented application would; the smoke then reads the rows
back from PostgreSQL and the payloads from the object store, decodes them with the transit
reader and prints what it found. Exit code 0 only when every event came back intact.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from ..collector import ApiKeys, block_object_key
from ..lakehouse import TickConverter, decode_block
from ..tracing import (
    Block,
    Level,
    LogMetadata,
    MetricMetadata,
    ProcessInfo,
    SinkConfig,
    SpanMetadata,
    StreamInfo,
    TelemetrySink,
    TransitWriter,
    current_process_info,
    decode_udts,
    payload_from_cbor,
)
from ._stack import Stack

_LEVEL_NAMES = {int(level): level.name for level in Level}


@dataclass(frozen=True, slots=True)
class _Sample:
    process: ProcessInfo
    streams: list[StreamInfo]
    blocks: list[Block]
    delivered: bool


def _send_sample(url: str, api_key: str | None) -> _Sample:
    """Emit a small, realistic sample through the HTTP sink (runs in a worker thread)."""
    process = current_process_info({"sirius.sample": "smoke"}, exe="sirius-smoke")
    now = time.monotonic_ns
    log = TransitWriter(process, "log")
    metrics = TransitWriter(process, "metrics")
    cpu = TransitWriter(process, "cpu", properties={"thread-id": "1", "thread-name": "main"})

    request = SpanMetadata("handle_request", target="smoke", file="smoke.py", line=10)
    query = SpanMetadata("query_db", target="smoke", file="smoke.py", line=20)
    cpu.begin_thread_span(request, ticks=now())
    log.log_static(LogMetadata("service started", target="smoke", level=Level.INFO), ticks=now())
    cpu.begin_thread_span(query, ticks=now())
    log.log_string(LogMetadata("{}", target="smoke.db", level=Level.WARN), "slow query: 12 ms", ticks=now())
    metrics.metric_float(MetricMetadata("query_latency", unit="ms", target="smoke"), 12.5, ticks=now())
    cpu.end_thread_span(query, ticks=now())
    metrics.metric_int(MetricMetadata("requests", unit="count", target="smoke"), 1, ticks=now())
    cpu.end_thread_span(request, ticks=now())
    log.log_string(LogMetadata("{}", target="smoke", level=Level.ERROR), "sample error (expected)", ticks=now())

    writers = (log, metrics, cpu)
    streams = [w.stream_info() for w in writers]
    blocks = [w.seal() for w in writers]
    sink = TelemetrySink(SinkConfig(url=url, api_key=api_key))
    sink.register_process(process)
    for stream in streams:
        sink.register_stream(stream)
    for block in blocks:
        sink.send_block(block)
    delivered = sink.flush(timeout=30)
    sink.shutdown(timeout=5)
    return _Sample(process, streams, blocks, delivered and sink.stats().sent_blocks == len(blocks))


def _as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _describe(kind: str, events: list[dict[str, object]], converter: TickConverter) -> list[str]:
    lines = []
    for event in events:
        ns = int(converter.ticks_to_ns([int(event["time"])])[0])  # type: ignore[call-overload]
        stamp = time.strftime("%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000 // 1000:06d}"
        name = str(event["type"])
        if kind == "log":
            desc = _as_dict(event["desc"])
            text = event.get("msg") or desc["fmt_str"]
            lines.append(f"{stamp}  {_LEVEL_NAMES.get(int(desc['level']), '?'):<5} {desc['target']}: {text}")
        elif kind == "metrics":
            desc = _as_dict(event["desc"])
            lines.append(f"{stamp}  {desc['name']} = {event['value']} {desc['unit']}")
        else:
            desc = _as_dict(event["thread_span_desc"])
            lines.append(f"{stamp}  {name.removesuffix('ThreadSpanEvent').lower():<5} {desc['name']}")
    return lines


async def run_smoke(stack: Stack) -> int:
    """Send the sample through the running stack, read it back, print it; 0 when all is intact."""
    keys = ApiKeys.from_env()
    api_key = keys.keys[0][1] if keys.enabled else None
    sample = await asyncio.to_thread(_send_sample, stack.endpoints[0].url, api_key)
    if not sample.delivered:
        print("smoke: FAILED - the ingestion service did not acknowledge every block")
        return 1
    lake = stack.lake
    if lake is None:
        return 1
    process = await lake.get_process(sample.process.process_id)
    if process is None:
        print("smoke: FAILED - the process row is missing")
        return 1
    converter = TickConverter.for_process(sample.process)
    print(f"smoke: process {process.process_id} ({process.exe} on {process.computer}) is in PostgreSQL")
    total = 0
    for stream, block in zip(sample.streams, sample.blocks, strict=True):
        record = await lake.get_stream(stream.stream_id)
        row = await lake.get_block(block.block_id)
        if record is None or row is None:
            print(f"smoke: FAILED - stream {stream.stream_id} or its block is missing")
            return 1
        key = block_object_key(block.process_id, block.stream_id, block.block_id)
        payload = payload_from_cbor(await stack.store.get(key))
        decoded = decode_block(decode_udts(record.dependencies_metadata), decode_udts(record.objects_metadata), payload)
        events = decoded.to_events()
        if len(events) != block.nb_objects:
            print(f"smoke: FAILED - {stream.tags[0]} block decoded {len(events)} of {block.nb_objects} events")
            return 1
        total += len(events)
        kind = record.tags[0]
        stored = f"{len(events)} events, {row.payload_size} bytes stored"
        print(f"  {kind:<8} block {uuid.UUID(str(row.block_id))}: {stored}")
        for line in _describe(kind, events, converter):
            print(f"           {line}")
    print(f"smoke: OK - {len(sample.streams)} streams, {len(sample.blocks)} blocks, {total} events stored and decoded")
    return 0
