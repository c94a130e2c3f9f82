"""An instrumented process → telemetry sink → HTTP ingestion → PostgreSQL + object store → transit reader.

The sink is started while the service is down: events queue, and everything is delivered once
the service comes up on that port. What the lake holds decodes to exactly what was emitted.
"""

from __future__ import annotations

import socket

from sirius.collector import block_object_key
from sirius.lakehouse import decode_block, open_object_store
from sirius.tracing import (
    Level,
    LogMetadata,
    MetricMetadata,
    SinkConfig,
    SpanLocation,
    SpanMetadata,
    TelemetrySink,
    TransitWriter,
    current_process_info,
    decode_udts,
    payload_from_cbor,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _emit(process):
    ticks = iter(range(process.start_ticks + 1_000, process.start_ticks + 10**9, 1_000))
    log = TransitWriter(process, "log")
    metrics = TransitWriter(process, "metrics")
    cpu = TransitWriter(process, "cpu", properties={"thread-id": "42", "thread-name": "worker"})
    info = LogMetadata("started", target="app", level=Level.INFO, file="app.py", line=3)
    log.log_static(info, ticks=next(ticks))
    log.log_string(LogMetadata("{}", target="app.db", level=Level.WARN), "slow: 12 ms", ticks=next(ticks))
    log.log_static_interop(Level.ERROR, "interop", "static interop", ticks=next(ticks))
    log.log_string_interop(Level.DEBUG, "interop", "dynamic interop", ticks=next(ticks))
    log.log_tagged(LogMetadata("{}", target="app"), {"user": "bob"}, "tagged", ticks=next(ticks))
    latency = MetricMetadata("latency", unit="ms", target="app")
    count = MetricMetadata("requests", unit="count", target="app")
    metrics.metric_float(latency, 1.5, ticks=next(ticks))
    metrics.metric_int(count, 7, ticks=next(ticks))
    metrics.metric_tagged_float(latency, {"route": "/a"}, 2.5, ticks=next(ticks))
    metrics.metric_tagged_int(count, {"route": "/a"}, 3, ticks=next(ticks))
    outer, inner = SpanMetadata("outer", target="app"), SpanMetadata("inner", target="app")
    where = SpanLocation(target="app", file="app.py", line=9)
    cpu.begin_thread_span(outer, ticks=next(ticks))
    cpu.begin_thread_named_span(where, "named-inner", ticks=next(ticks))
    cpu.end_thread_named_span(where, "named-inner", ticks=next(ticks))
    cpu.begin_async_span(inner, span_id=5, parent_span_id=1, depth=1, ticks=next(ticks))
    cpu.end_async_span(inner, span_id=5, parent_span_id=1, depth=1, ticks=next(ticks))
    cpu.begin_async_named_span(where, "task", span_id=6, parent_span_id=5, depth=2, ticks=next(ticks))
    cpu.end_async_named_span(where, "task", span_id=6, parent_span_id=5, depth=2, ticks=next(ticks))
    cpu.end_thread_span(outer, ticks=next(ticks))
    writers = (log, metrics, cpu)
    return [w.stream_info() for w in writers], [w.seal() for w in writers]


def test_events_queue_while_the_service_is_down_and_arrive_intact(stack_factory, tmp_path) -> None:
    port = _free_port()
    objects = tmp_path / "objects"
    objects.mkdir()
    process = current_process_info({"test": "e2e"})
    streams, blocks = _emit(process)
    sink = TelemetrySink(SinkConfig(url=f"http://127.0.0.1:{port}", initial_backoff=0.005, max_backoff=0.05))
    sink.register_process(process)
    for stream in streams:
        sink.register_stream(stream)
    for block in blocks:
        assert sink.send_block(block)
    assert not sink.flush(timeout=0.2)  # nobody listens yet: nothing can be delivered
    assert sink.stats().sent_blocks == 0
    assert sink.stats().queued_items == 1 + len(streams) + len(blocks)

    stack = stack_factory(object_store_uri=objects.as_uri(), ingestion_port=port)
    assert sink.flush(timeout=60)
    stats = sink.stats()
    assert (stats.sent_processes, stats.sent_streams, stats.sent_blocks, stats.dropped_blocks) == (1, 3, 3, 0)
    assert stats.retries > 0
    assert sink.shutdown(timeout=5)

    async def read_back():
        lake = stack.stack.lake
        store = open_object_store(objects.as_uri())
        decoded = []
        try:
            for stream, block in zip(streams, blocks, strict=True):
                record = await lake.get_stream(stream.stream_id)
                payload = payload_from_cbor(
                    await store.get(block_object_key(process.process_id, stream.stream_id, block.block_id))
                )
                decoded.append(
                    decode_block(
                        decode_udts(record.dependencies_metadata), decode_udts(record.objects_metadata), payload
                    ).to_events()
                )
        finally:
            await store.close()
        return decoded

    stored = stack.call(read_back())
    for stream, block, events in zip(streams, blocks, stored, strict=True):
        expected = decode_block(stream.dependencies_metadata, stream.objects_metadata, block.payload).to_events()
        assert events == expected
        assert len(events) == block.nb_objects
    log_events, metric_events, span_events = stored
    assert [e.get("msg") or e["desc"]["fmt_str"] for e in log_events[:2]] == ["started", "slow: 12 ms"]
    assert [e["value"] for e in metric_events] == [1.5, 7, 2.5, 3]
    assert span_events[0]["type"] == "BeginThreadSpanEvent"
    assert span_events[-1]["thread_span_desc"]["name"] == "outer"


def test_full_queue_drops_are_counted_and_the_rest_is_delivered(stack_factory, tmp_path) -> None:
    port = _free_port()
    process = current_process_info()
    streams, blocks = _emit(process)
    sizes = sorted(len(b.payload.objects) + len(b.payload.dependencies) for b in blocks)
    budget = sum(sizes[:1]) + 600  # room for metadata bodies and about one block
    sink = TelemetrySink(SinkConfig(url=f"http://127.0.0.1:{port}", max_queue_bytes=budget, initial_backoff=0.005))
    sink.register_process(process)
    for stream in streams:
        sink.register_stream(stream)
    accepted = [sink.send_block(b) for b in blocks]
    stats = sink.stats()
    assert accepted.count(False) == stats.dropped_blocks >= 1
    stack_factory(ingestion_port=port)
    assert sink.flush(timeout=60)
    assert sink.stats().sent_blocks == accepted.count(True)
    assert sink.shutdown(timeout=5)
