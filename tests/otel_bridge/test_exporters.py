"""The in-process OTel SDK exporters: real SDK pipelines into an in-memory sink."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from sirius import otel_bridge, tracing
from sirius.otel_bridge import (
    DELTA_PREFERRED_TEMPORALITY,
    STREAM_FORMAT_PROPERTY,
    SiriusLogExporter,
    SiriusLogRecordExporter,
    SiriusMetricExporter,
    SiriusSpanExporter,
    bridge_process_info,
    set_process_info,
    stream_id_for,
)
from sirius.tracing import InMemoryBlockSink, current_process_info

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

RESOURCE = Resource.create({"service.name": "unit", "service.instance.id": "i-1"})


@pytest.fixture(autouse=True)
def _no_explicit_identity():
    set_process_info(None)
    yield
    set_process_info(None)


def traced(exporter) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_spans_become_otlp_trace_blocks_of_the_given_process() -> None:
    sink = InMemoryBlockSink()
    process = current_process_info()
    provider = traced(SiriusSpanExporter(sink, process_info=process))
    tracer = provider.get_tracer("unit.tests", "1.0")
    with tracer.start_as_current_span("outer") as outer:
        outer.set_attribute("answer", 42)
        with tracer.start_as_current_span("inner"):
            pass
    provider.shutdown()
    assert sink.processes == [process]
    assert len(sink.streams) == 1
    stream = sink.streams[0]
    assert stream.process_id == process.process_id
    assert stream.stream_id == stream_id_for(process.process_id, "traces")
    assert stream.tags == ("trace",)
    assert stream.properties == {STREAM_FORMAT_PROPERTY: "otlp/v1/traces"}
    assert len(sink.blocks) == 2  # SimpleSpanProcessor: one export per span
    names = []
    for block in sink.blocks:
        assert block.process_id == process.process_id
        assert block.stream_id == stream.stream_id
        assert block.payload.dependencies == b""
        decoded = ResourceSpans.FromString(block.payload.objects)
        assert {kv.key: kv.value.string_value for kv in decoded.resource.attributes}["service.name"] == "unit"
        for scope in decoded.scope_spans:
            assert (scope.scope.name, scope.scope.version) == ("unit.tests", "1.0")
            names += [s.name for s in scope.spans]
            assert block.begin_time_ns == min(s.start_time_unix_nano for s in scope.spans)
    assert names == ["inner", "outer"]


def test_log_records_become_otlp_log_blocks() -> None:
    sink = InMemoryBlockSink()
    process = current_process_info()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(SiriusLogRecordExporter(sink, process_info=process)))
    logger = logging.getLogger("sirius.tests.exporters")
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("disk %s is full", "/var")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    assert sink.streams[0].tags == ("log",)
    assert sink.streams[0].properties == {STREAM_FORMAT_PROPERTY: "otlp/v1/logs"}
    (block,) = sink.blocks
    record = ResourceLogs.FromString(block.payload.objects).scope_logs[0].log_records[0]
    assert record.body.string_value == "disk /var is full"
    assert record.severity_number == SeverityNumber.WARN.value
    assert block.nb_objects == 1


def test_metrics_prefer_delta_for_counters_and_histograms() -> None:
    sink = InMemoryBlockSink()
    exporter = SiriusMetricExporter(sink, process_info=current_process_info())
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("unit.metrics")
    meter.create_counter("requests").add(3)
    meter.create_up_down_counter("queue").add(5)
    meter.create_histogram("latency", unit="ms").record(12.5)
    provider.force_flush()
    provider.shutdown()
    assert sink.streams[0].tags == ("metrics",)
    metrics = {}
    for block in sink.blocks:
        for scope in ResourceMetrics.FromString(block.payload.objects).scope_metrics:
            for metric in scope.metrics:
                metrics.setdefault(metric.name, metric)
    assert metrics["requests"].sum.aggregation_temporality == AggregationTemporality.DELTA.value
    assert metrics["requests"].sum.data_points[0].as_int == 3
    assert metrics["queue"].sum.aggregation_temporality == AggregationTemporality.CUMULATIVE.value
    assert metrics["latency"].histogram.aggregation_temporality == AggregationTemporality.DELTA.value
    assert metrics["latency"].histogram.data_points[0].sum == 12.5
    assert DELTA_PREFERRED_TEMPORALITY[Counter] is AggregationTemporality.DELTA
    assert DELTA_PREFERRED_TEMPORALITY[Histogram] is AggregationTemporality.DELTA
    assert DELTA_PREFERRED_TEMPORALITY[UpDownCounter] is AggregationTemporality.CUMULATIVE


def test_deprecated_log_exporter_name_still_works() -> None:
    with pytest.warns(DeprecationWarning, match="SiriusLogRecordExporter"):
        exporter = SiriusLogExporter(InMemoryBlockSink(), process_info=current_process_info())
    assert isinstance(exporter, SiriusLogRecordExporter)


def test_identity_is_shared_and_follows_set_process_info() -> None:
    sink = InMemoryBlockSink()
    native = current_process_info({"native": "yes"})
    set_process_info(native)
    spans = traced(SiriusSpanExporter(sink))
    spans.get_tracer("t").start_span("s").end()
    spans.shutdown()
    assert {b.process_id for b in sink.blocks} == {native.process_id}
    assert sink.processes == [native]


def test_identity_comes_from_the_native_tracer_when_it_exposes_one(monkeypatch) -> None:
    native = current_process_info({"tracer": "native"})
    monkeypatch.setattr(tracing, "current_process", lambda: native, raising=False)
    assert bridge_process_info() is native
    monkeypatch.setattr(tracing, "current_process", lambda: None, raising=False)
    generated = bridge_process_info({"service.name": "x"})
    assert generated.process_id != native.process_id
    assert bridge_process_info() is generated  # stable for the life of the process


def test_exporters_never_raise_into_the_sdk() -> None:
    class BrokenSink(InMemoryBlockSink):
        def send_block(self, block):
            raise RuntimeError("boom")

    exporter = SiriusSpanExporter(BrokenSink(), process_info=current_process_info())
    provider = TracerProvider(resource=RESOURCE)
    span = provider.get_tracer("t").start_span("s")
    span.end()
    assert exporter.export([span]) is SpanExportResult.FAILURE
    ok = SiriusSpanExporter(InMemoryBlockSink(), process_info=current_process_info())
    assert ok.export([span]) is SpanExportResult.SUCCESS
    ok.shutdown()
    assert ok.export([span]) is SpanExportResult.FAILURE  # after shutdown


def test_entry_points_name_the_exporters() -> None:
    expected = {
        "opentelemetry_traces_exporter": SiriusSpanExporter,
        "opentelemetry_logs_exporter": SiriusLogRecordExporter,
        "opentelemetry_metrics_exporter": SiriusMetricExporter,
    }
    for group, cls in expected.items():
        (entry,) = [e for e in entry_points(group=group) if e.name == "sirius"]
        assert entry.load() is cls
    assert otel_bridge.SiriusSpanExporter is SiriusSpanExporter
