"""The ``sirius`` OTel exporters end to end: SDK → telemetry sink → ingestion service → lake.

* ``OTEL_{TRACES,LOGS,METRICS}_EXPORTER=sirius opentelemetry-instrument python app.py`` works
  with no code change (a real subprocess);
* a process running the native tracer and the exporters is **one** process: the exporters write
  under the tracer's ``ProcessInfo``, next to its transit streams.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from sirius.collector import block_object_key
from sirius.lakehouse import decode_block
from sirius.otel_bridge import SiriusSpanExporter, set_process_info
from sirius.tracing import (
    Level,
    LogMetadata,
    SinkConfig,
    TelemetrySink,
    TransitWriter,
    current_process_info,
    decode_udts,
    payload_from_cbor,
)

APP = textwrap.dedent(
    """
    import logging

    from opentelemetry import metrics, trace

    tracer = trace.get_tracer("instrumented.app")
    with tracer.start_as_current_span("handle job") as span:
        span.set_attribute("job.id", 7)
        logging.getLogger("instrumented.app").warning("job %d is slow", 7)
    metrics.get_meter("instrumented.app").create_counter("jobs.done").add(2)
    print("app done")
    """
)


def _stored(stack) -> dict:
    """Streams by format → decoded resource messages of their blocks, plus the process rows."""

    async def read():
        pool = stack.stack.lake.pool
        processes = await pool.fetch("SELECT * FROM processes")
        streams = await pool.fetch("SELECT * FROM streams")
        out = {"processes": processes, "streams": streams, "blocks": {}}
        for row in await pool.fetch("SELECT * FROM blocks"):
            stream = next(s for s in streams if s["stream_id"] == row["stream_id"])
            key = block_object_key(row["process_id"], row["stream_id"], row["block_id"])
            out["blocks"].setdefault(stream["format"], []).append((row, await stack.stack.store.get(key)))
        return out

    return stack.call(read())


def test_opentelemetry_instrument_with_sirius_exporters(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory()
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "sirius",
        "OTEL_LOGS_EXPORTER": "sirius",
        "OTEL_METRICS_EXPORTER": "sirius",
        "OTEL_SERVICE_NAME": "instrumented",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "MICROMEGAS_TELEMETRY_URL": stack.url,
    }
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    result = subprocess.run(
        [str(instrument), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "app done" in result.stdout
    assert "Traceback" not in result.stderr, result.stderr

    stored = _stored(stack)
    (process,) = stored["processes"]
    assert process["exe"] == str(app)
    properties = {p["key"]: p["value"] for p in process["properties"]}
    assert properties["otel.resource.service.name"] == "instrumented"
    formats = {s["format"]: s for s in stored["streams"]}
    assert set(formats) == {"otlp/v1/traces", "otlp/v1/logs", "otlp/v1/metrics"}
    assert {tuple(s["tags"]) for s in stored["streams"]} == {("trace",), ("log",), ("metrics",)}
    assert all(s["process_id"] == process["process_id"] for s in stored["streams"])

    spans = [
        s
        for _, obj in stored["blocks"]["otlp/v1/traces"]
        for scope in ResourceSpans.FromString(payload_from_cbor(obj).objects).scope_spans
        for s in scope.spans
    ]
    assert [s.name for s in spans] == ["handle job"]
    records = [
        r
        for _, obj in stored["blocks"]["otlp/v1/logs"]
        for scope in ResourceLogs.FromString(payload_from_cbor(obj).objects).scope_logs
        for r in scope.log_records
    ]
    assert [r.body.string_value for r in records] == ["job 7 is slow"]
    assert records[0].trace_id == spans[0].trace_id  # logged inside the span
    points = [
        p
        for _, obj in stored["blocks"]["otlp/v1/metrics"]
        for scope in ResourceMetrics.FromString(payload_from_cbor(obj).objects).scope_metrics
        for m in scope.metrics
        if m.name == "jobs.done"
        for p in m.sum.data_points
    ]
    assert sum(p.as_int for p in points) == 2


def test_native_tracer_and_sirius_exporters_share_one_process(stack_factory) -> None:
    stack = stack_factory()
    native = current_process_info({"app": "mixed"})  # the identity the native tracer registers
    sink = TelemetrySink(SinkConfig(url=stack.url))
    # the native side: a transit log stream of that process
    log = TransitWriter(native, "log")
    log.log_static(LogMetadata("native hello", target="app", level=Level.INFO), ticks=native.start_ticks + 1_000)
    sink.register_process(native)
    sink.register_stream(log.stream_info())
    assert sink.send_block(log.seal())
    # the OTel side, through the hook the tracer integration calls
    set_process_info(native)
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "mixed"}))
        provider.add_span_processor(SimpleSpanProcessor(SiriusSpanExporter(sink)))
        with provider.get_tracer("mixed").start_as_current_span("otel span"):
            pass
        provider.shutdown()
    finally:
        set_process_info(None)
    assert sink.shutdown(timeout=30)
    assert sink.stats().rejected_items == 0

    stored = _stored(stack)
    (process,) = stored["processes"]
    assert process["process_id"] == native.process_id
    formats = sorted((s["format"], tuple(s["tags"])) for s in stored["streams"])
    assert formats == [("micromegas-transit", ("log",)), ("otlp/v1/traces", ("trace",))]
    ((row, obj),) = stored["blocks"]["otlp/v1/traces"]
    assert row["process_id"] == native.process_id
    spans = ResourceSpans.FromString(payload_from_cbor(obj).objects).scope_spans[0].spans
    assert [s.name for s in spans] == ["otel span"]
    ((_, transit),) = stored["blocks"]["micromegas-transit"]
    stream = next(s for s in stored["streams"] if s["format"] == "micromegas-transit")
    events = decode_block(
        decode_udts(stream["dependencies_metadata"]),
        decode_udts(stream["objects_metadata"]),
        payload_from_cbor(transit),
    ).to_events()
    assert [e["desc"]["fmt_str"] for e in events] == ["native hello"]


def test_running_native_tracer_is_the_exporters_process(stack_factory) -> None:
    from sirius import tracing

    stack = stack_factory()
    process_id = tracing.init(url=stack.url, properties={"test": "otel-bridge"})
    try:
        tracing.info("native side says hello")
        native = tracing.current_process()
        assert native is not None
        assert native.process_id == process_id
        sink = TelemetrySink(SinkConfig(url=stack.url))
        provider = TracerProvider(resource=Resource.create({"service.name": "both"}))
        provider.add_span_processor(SimpleSpanProcessor(SiriusSpanExporter(sink)))  # no identity given
        with provider.get_tracer("both").start_as_current_span("otel side"):
            pass
        provider.shutdown()
        assert sink.shutdown(timeout=30)
    finally:
        assert tracing.shutdown(timeout=30)

    stored = _stored(stack)
    (process,) = stored["processes"]
    assert process["process_id"] == process_id
    assert {s["process_id"] for s in stored["streams"]} == {process_id}
    formats = {s["format"] for s in stored["streams"]}
    assert {"micromegas-transit", "otlp/v1/traces"} <= formats
    ((row, obj),) = stored["blocks"]["otlp/v1/traces"]
    (span,) = ResourceSpans.FromString(payload_from_cbor(obj).objects).scope_spans[0].spans
    assert span.name == "otel side"
    # block ticks follow the native process's clock: relative to start_ticks at tsc_frequency
    begin_ns = int(row["begin_time"].timestamp() * 1e9)
    expected = (begin_ns - native.start_time_ns) * native.tsc_frequency / 1e9
    assert abs(row["begin_ticks"] - expected) <= native.tsc_frequency / 1e5  # within 10 µs (µs-precision column)
