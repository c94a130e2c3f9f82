"""OTel SDK → Sirius → SQL: everything real OTel exporters send is queryable, with the right values.

Two services share one trace: ``frontend`` exports over OTLP/gRPC, ``payments`` over
OTLP/HTTP-protobuf (the trace context travels in a W3C ``traceparent`` carrier, as between two
processes), and a third process uses the in-process ``sirius`` exporters through the ingestion
service under a native process identity. Every span, log record and data point is then read
back with ``SessionFactory`` and, for the cross-service trace, with the PyPI ``micromegas``
client against the stack's FlightSQL endpoint. Retried exports (the same batch sent again)
change nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import micromegas
import pyarrow as pa
import pytest
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from sirius.lakehouse import MaintenanceDaemon, PassKind, QueryRange, SessionFactory
from sirius.lakehouse._sql_jsonb import decode_jsonb
from sirius.otel_bridge import SiriusLogRecordExporter, SiriusMetricExporter, SiriusSpanExporter
from sirius.tracing import SinkConfig, TelemetrySink, current_process_info

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

HOUR_NS = 3_600_000_000_000


def resource(service: str) -> Resource:
    return Resource.create({"service.name": service, "service.instance.id": f"{service}-1", "host.name": "e2e"})


class Recording:
    """Forwards to an exporter and remembers each batch, so a retry can send exactly the same."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self.batches: list[Any] = []

    def export(self, batch: Any, **kwargs: Any) -> Any:
        self.batches.append(batch if not isinstance(batch, (list, tuple)) else list(batch))
        return self.exporter.export(batch, **kwargs)

    def retry(self) -> None:
        for batch in self.batches:
            self.exporter.export(batch)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self.exporter.shutdown(*args, **kwargs)


class Service:
    """One instrumented service: traces, logs and metrics through the given exporters."""

    def __init__(self, name: str, span_exporter: Any, log_exporter: Any, metric_exporter: Any) -> None:
        self.name = name
        span_exporter, log_exporter = Recording(span_exporter), Recording(log_exporter)
        metric_exporter = Recording(metric_exporter)
        self.span_exporter, self.log_exporter, self.metric_exporter = span_exporter, log_exporter, metric_exporter
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource(name))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        self.tracer = self.tracer_provider.get_tracer(f"{name}.tracer", "1.0")
        self.logs = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider(resource=resource(name))
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        self.logger = logging.getLogger(f"sirius.tests.e2e.{name}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.handler = LoggingHandler(logger_provider=self.logger_provider)
        self.logger.addHandler(self.handler)
        self.reader = InMemoryMetricReader()  # cumulative, the OTLP exporters' default
        self.meter_provider = MeterProvider(metric_readers=[self.reader], resource=resource(name))
        self.meter = self.meter_provider.get_meter(f"{name}.meter")

    def export_metrics(self) -> None:
        assert self.metric_exporter.export(self.reader.get_metrics_data()) is MetricExportResult.SUCCESS

    def retry_everything(self) -> None:
        """What an exporter retry does: every batch sent so far, again."""
        for exporter in (self.span_exporter, self.log_exporter, self.metric_exporter):
            exporter.retry()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            provider.shutdown()


def grpc_service(name: str, url: str) -> Service:
    options = {"endpoint": url.removeprefix("http://"), "insecure": True}
    return Service(name, GrpcSpanExporter(**options), GrpcLogExporter(**options), GrpcMetricExporter(**options))


def http_service(name: str, url: str) -> Service:
    return Service(
        name,
        HttpSpanExporter(endpoint=f"{url}/v1/traces"),
        HttpLogExporter(endpoint=f"{url}/v1/logs"),
        HttpMetricExporter(endpoint=f"{url}/v1/metrics"),
    )


def run_shop(frontend: Service, payments: Service) -> str:
    """A checkout crossing both services; returns the trace id (hex)."""
    requests = frontend.meter.create_counter("http.requests", unit="{request}")
    latency = frontend.meter.create_histogram("http.duration", unit="ms")
    in_flight = frontend.meter.create_up_down_counter("http.in_flight")
    charged = payments.meter.create_counter("payments.charged", unit="USD")
    with frontend.tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/checkout")
        frontend.logger.info("checkout started for order %d", 7)
        with frontend.tracer.start_as_current_span("call payments", kind=SpanKind.CLIENT):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            with payments.tracer.start_as_current_span(
                "charge card", context=propagate.extract(carrier), kind=SpanKind.SERVER
            ) as charge:
                charge.set_attribute("amount", 12.5)
                charge.record_exception(ValueError("card declined"))
                charge.set_status(Status(StatusCode.ERROR, "declined"))
                payments.logger.error("payment failed for order %d", 7)
                charged.add(12, {"currency": "EUR"})
        for value in (3.0, 40.0, 700.0):
            latency.record(value, {"http.route": "/checkout"})
        requests.add(1, {"http.route": "/checkout"})
        in_flight.add(2)
    frontend.export_metrics()
    payments.export_metrics()
    requests.add(4, {"http.route": "/checkout"})  # a second cumulative point: 5 in total, delta 4
    in_flight.add(-1)
    frontend.export_metrics()
    return format(root.get_span_context().trace_id, "032x")


def test_otel_exporters_to_sql(stack_factory) -> None:
    stack = stack_factory(daemon=False)
    urls = {e.name: e.url for e in stack.endpoints}
    frontend = grpc_service("frontend", urls["otlp-grpc"])
    payments = http_service("payments", urls["otlp-http"])
    try:
        trace_hex = run_shop(frontend, payments)
        frontend.retry_everything()
        payments.retry_everything()
    finally:
        frontend.close()
        payments.close()

    # the in-process exporters, under a native process identity, through the ingestion service
    native = current_process_info({"app": "worker"})
    sink = TelemetrySink(SinkConfig(url=stack.url))
    worker = Service(
        "worker",
        SiriusSpanExporter(sink, native),
        SiriusLogRecordExporter(sink, native),
        SiriusMetricExporter(sink, native),
    )
    try:
        with worker.tracer.start_as_current_span("nightly job"):
            worker.logger.warning("job is slow")
        worker.meter.create_counter("jobs.done").add(3)
        worker.export_metrics()
        worker.retry_everything()
    finally:
        worker.close()
    assert sink.shutdown(timeout=30)
    assert sink.stats().rejected_items == 0

    lake = stack.stack.lakehouse

    async def read() -> dict[str, pa.Table]:
        # an hour pass covers every insert of the last hour, whatever the wall clock says
        report = await MaintenanceDaemon(lake).run_pass(PassKind.HOUR, lake.now_ns() + HOUR_NS)
        assert not report.failures, report.failures
        session = await SessionFactory(lake).create(QueryRange(None, None))
        out = {}
        for name, sql in {
            "spans": "SELECT exe, name, kind, status, status_message, trace_id, span_id, parent_span_id, duration,"
            " properties, events FROM otel_spans",
            "trace": f"SELECT exe, name FROM otel_spans WHERE trace_id = X'{trace_hex}' ORDER BY start_time",
            "logs": "SELECT exe, level, msg, target, trace_id, span_id, properties FROM log_entries",
            "measures": "SELECT exe, name, unit, value, delta, properties FROM measures",
            "histograms": "SELECT exe, name, count, sum, min, max, bounds, counts,"
            " histogram_quantile(bounds, counts, 0.5) AS p50 FROM histograms",
        }.items():
            out[name] = (await session.sql(sql)).to_arrow_table()
        jit = await session.sql(
            f"SELECT arrow_cast(name, 'Utf8') AS text FROM view_instance('otel_spans', '{native.process_id}') UNION ALL "
            f"SELECT msg FROM view_instance('log_entries', '{native.process_id}')"
        )
        out["jit"] = jit.to_arrow_table()
        return out

    tables = stack.call(read())

    # every span, once (retries did not duplicate), with its values
    sent = {
        s.name: s
        for svc in (frontend, payments, worker)
        for s in svc.spans.get_finished_spans()  # the SDK's own record of what was exported
    }
    spans = {r["name"]: r for r in tables["spans"].to_pylist()}
    assert len(tables["spans"]) == len(sent) == 4
    for name, span in sent.items():
        row = spans[name]
        assert row["trace_id"] == span.context.trace_id.to_bytes(16, "big")
        assert row["span_id"] == span.context.span_id.to_bytes(8, "big")
        parent = span.parent.span_id.to_bytes(8, "big") if span.parent else None
        assert row["parent_span_id"] == parent
        assert row["duration"] == span.end_time - span.start_time
    assert {n: spans[n]["exe"] for n in sent} == {
        "POST /checkout": "frontend",
        "call payments": "frontend",
        "charge card": "payments",
        "nightly job": native.exe,
    }
    charge = spans["charge card"]
    assert (charge["kind"], charge["status"], charge["status_message"]) == ("SERVER", "ERROR", "declined")
    assert decode_jsonb(charge["properties"])["amount"] == "12.5"
    assert [e["name"] for e in decode_jsonb(charge["events"])] == ["exception"]

    # one query by trace id: the whole trace, both services
    assert tables["trace"].to_pylist() == [
        {"exe": "frontend", "name": "POST /checkout"},
        {"exe": "frontend", "name": "call payments"},
        {"exe": "payments", "name": "charge card"},
    ]

    # every log record, once, plus the exception event (a Warn copy with target otel.span.exception)
    logs = sorted((r["exe"], r["level"], r["msg"]) for r in tables["logs"].to_pylist())
    assert logs == sorted(
        [
            ("frontend", 4, "checkout started for order 7"),
            ("payments", 3, "ValueError: card declined"),
            ("payments", 2, "payment failed for order 7"),
            (native.exe, 3, "job is slow"),
        ]
    )
    by_msg = {r["msg"]: r for r in tables["logs"].to_pylist()}
    assert by_msg["payment failed for order 7"]["trace_id"] == bytes.fromhex(trace_hex)
    assert by_msg["payment failed for order 7"]["span_id"] == charge["span_id"]
    assert by_msg["ValueError: card declined"]["span_id"] == charge["span_id"]
    assert by_msg["ValueError: card declined"]["target"] == "otel.span.exception"
    assert by_msg["payment failed for order 7"]["target"] == "sirius.tests.e2e.payments"
    assert decode_jsonb(by_msg["job is slow"]["properties"])["otel.severity_text"] == "WARN"

    # every data point, once; cumulative counters also as deltas
    measures = sorted(((r["exe"], r["name"], r["value"], r["delta"]) for r in tables["measures"].to_pylist()), key=repr)
    assert measures == sorted(
        [
            ("frontend", "http.duration_count", 3.0, 3.0),
            ("frontend", "http.duration_count", 3.0, 0.0),
            ("frontend", "http.duration_max", 700.0, None),
            ("frontend", "http.duration_max", 700.0, None),
            ("frontend", "http.duration_min", 3.0, None),
            ("frontend", "http.duration_min", 3.0, None),
            ("frontend", "http.duration_sum", 743.0, 0.0),
            ("frontend", "http.duration_sum", 743.0, 743.0),
            ("frontend", "http.in_flight", 1.0, None),
            ("frontend", "http.in_flight", 2.0, None),
            ("frontend", "http.requests", 1.0, 1.0),
            ("frontend", "http.requests", 5.0, 4.0),
            (native.exe, "jobs.done", 3.0, 3.0),
            ("payments", "payments.charged", 12.0, 12.0),
        ],
        key=repr,
    )
    histograms = tables["histograms"].to_pylist()
    assert len(histograms) == 2  # two cumulative exports of one series
    for h in histograms:
        assert (h["exe"], h["name"], h["count"], h["sum"], h["min"], h["max"]) == (
            "frontend",
            "http.duration",
            3,
            743.0,
            3.0,
            700.0,
        )
        assert sum(h["counts"]) == 3
        assert len(h["counts"]) == len(h["bounds"]) + 1
        assert h["p50"] == 37.5  # the middle value (40) lies in (25, 50]: interpolated at half of it

    # the shared identity: OTel spans and logs of the native process are found by its id
    assert sorted(tables["jit"].column(0).to_pylist()) == ["job is slow", "nightly job"]

    # the PyPI micromegas client, over FlightSQL
    client = micromegas.connect(urls["flightsql"])
    trace = client.query(
        f"SELECT exe, name, encode(span_id, 'hex') AS span FROM otel_spans WHERE trace_id = X'{trace_hex}'"
        " ORDER BY start_time"
    )
    assert list(trace["name"]) == ["POST /checkout", "call payments", "charge card"]
    assert list(trace["exe"]) == ["frontend", "frontend", "payments"]
    assert trace["span"][2] == charge["span_id"].hex()
    p50 = client.query("SELECT histogram_quantile(bounds, counts, 0.5) AS p50 FROM histograms")
    assert list(p50["p50"]) == [37.5, 37.5]
    for view, count in (("otel_spans", 4), ("histograms", 2), ("log_entries", 4), ("measures", 14)):
        assert len(client.query(f"SELECT * FROM {view}")) == count  # every column type crosses FlightSQL
    errors = client.query("SELECT msg FROM log_entries WHERE level <= 2 ORDER BY msg")
    assert list(errors["msg"]) == ["payment failed for order 7"]  # the failure, once
