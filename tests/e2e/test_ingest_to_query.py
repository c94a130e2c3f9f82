"""From the HTTP ingestion service to SQL: what an app sends through the sink is queryable.

JIT (``view_instance``) and the daemon's global views both answer, over the blocks the real
service stored, with the values the app emitted.
"""

from __future__ import annotations

import time

from sirius.lakehouse import MaintenanceDaemon, PassKind, QueryRange, SessionFactory
from sirius.tracing import (
    Level,
    LogMetadata,
    MetricMetadata,
    SinkConfig,
    SpanMetadata,
    TelemetrySink,
    TransitWriter,
    current_process_info,
)


def _send(url: str) -> tuple[str, list[str]]:
    process = current_process_info({"test": "ingest-to-query"})
    now = time.monotonic_ns
    log = TransitWriter(process, "log")
    metrics = TransitWriter(process, "metrics")
    cpu = TransitWriter(process, "cpu", properties={"thread-id": "3", "thread-name": "main"})
    messages = [f"message {i}" for i in range(5)]
    span = SpanMetadata("work", target="app")
    cpu.begin_thread_span(span, ticks=now())
    for i, message in enumerate(messages):
        log.log_string(LogMetadata("{}", target="app", level=Level.WARN if i % 2 else Level.INFO), message, ticks=now())
        metrics.metric_float(MetricMetadata("latency", unit="ms", target="app"), float(i), ticks=now())
    cpu.end_thread_span(span, ticks=now())
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    for writer in (log, metrics, cpu):
        sink.register_stream(writer.stream_info())
    for writer in (log, metrics, cpu):
        sink.send_block(writer.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return str(process.process_id), messages


def test_ingested_events_are_queryable_by_jit_and_after_a_daemon_pass(stack_factory) -> None:
    stack = stack_factory(daemon=False)
    process_id, messages = _send(stack.url)

    async def jit():
        session = await SessionFactory(stack.stack.lakehouse).create()
        logs = (
            await session.sql(f"SELECT msg, level FROM view_instance('log_entries', '{process_id}') ORDER BY time")
        ).to_arrow_table()
        values = (
            await session.sql(f"SELECT value FROM view_instance('measures', '{process_id}') ORDER BY time")
        ).to_arrow_table()
        return logs.to_pydict(), values.column("value").to_pylist()

    logs, values = stack.call(jit())
    assert logs["msg"] == messages
    assert logs["level"] == [4, 3, 4, 3, 4]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]

    async def daemon_then_query():
        lake = stack.stack.lakehouse
        daemon = MaintenanceDaemon(lake)
        # A minute pass scheduled a minute from now covers every insert made so far.
        await daemon.run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)
        session = await SessionFactory(lake).create(QueryRange(None, None))
        table = (
            await session.sql(f"SELECT msg FROM log_entries WHERE process_id = '{process_id}' ORDER BY time")
        ).to_arrow_table()
        return table.column("msg").to_pylist()

    assert stack.call(daemon_then_query()) == messages
