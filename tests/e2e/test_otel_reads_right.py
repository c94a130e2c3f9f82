"""OTel data that reads right, end to end: real OTel SDK exporters → Sirius → SQL over FlightSQL.

One service, ``shop``, runs twice without ``service.instance.id`` (two restarts: the
``ProcessResourceDetector`` gives each its ``process.pid``) and exports over OTLP/gRPC and
OTLP/HTTP with the exporters' default cumulative temporality; ``worker`` uses the in-process
``sirius`` exporters (delta histograms) under a native process identity. The first export of
``shop`` lands an hour earlier (its blocks' insert time is moved back), so the daemon builds
two partitions of every view. Then, through the PyPI ``micromegas`` client:

1. ``processes`` has one row per process, and the two runs of ``shop`` are two processes
   (retried exports map to the same ones);
2. ``service_name`` is a column of ``processes``, ``log_entries``, ``measures``,
   ``otel_spans`` and ``histograms``;
3. a failure recorded on a span and logged by the application counts once in
   ``level <= 2``; the span's exception event stays findable by ``target``;
4. ``histogram_quantile(merge_histograms(bounds, delta_counts), q)`` is right over cumulative
   (explicit and exponential, across partitions and a restart) and delta points alike;
5. ``micromegas.perfetto.write_process_trace`` of an OTel process holds its spans.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import micromegas
import micromegas.perfetto
import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import ProcessResourceDetector, Resource, get_aggregated_resources
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

FLIGHT_TESTS = str(Path(__file__).resolve().parents[1] / "flight")
if FLIGHT_TESTS not in sys.path:
    sys.path.insert(0, FLIGHT_TESTS)

from perfetto_reader import parse_trace  # noqa: E402

from sirius.lakehouse import MaintenanceDaemon, PassKind  # noqa: E402
from sirius.lakehouse._sql_bucket_histograms import histogram_quantile  # noqa: E402
from sirius.otel_bridge import SiriusLogRecordExporter, SiriusMetricExporter, SiriusSpanExporter  # noqa: E402
from sirius.tracing import SinkConfig, TelemetrySink, current_process_info  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

HOUR_NS = 3_600_000_000_000
NEVER_MS = 10**9  # periodic readers that only export on force_flush
BOUNDS = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0]


def shop_resource(pid: int) -> Resource:
    """What the SDK's ProcessResourceDetector gives, with the pid of one run, and no service.instance.id."""
    detected = get_aggregated_resources([ProcessResourceDetector()])
    attributes = {**detected.attributes, "process.pid": pid, "service.name": "shop", "host.name": "e2e"}
    return Resource.create(attributes)


class App:
    """One instrumented run: tracer, logger and meter providers over the given exporters."""

    def __init__(self, resource: Resource, spans: Any, logs: Any, metrics: Any, name: str) -> None:
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        self.tracer = self.tracer_provider.get_tracer(f"{name}.tracer")
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        self.logger = logging.getLogger(f"sirius.tests.reads_right.{name}")
        self.logger.propagate = False
        self.handler = LoggingHandler(logger_provider=self.logger_provider)
        self.logger.addHandler(self.handler)
        reader = PeriodicExportingMetricReader(metrics, export_interval_millis=NEVER_MS)
        exponential = View(instrument_name="queue.wait", aggregation=ExponentialBucketHistogramAggregation())
        self.meter_provider = MeterProvider(metric_readers=[reader], resource=resource, views=[exponential])
        meter = self.meter_provider.get_meter(f"{name}.meter")
        self.duration = meter.create_histogram("http.duration", unit="ms")
        self.wait = meter.create_histogram("queue.wait", unit="ms")

    def fail_once(self, order: int) -> None:
        """A request that fails: the exception is recorded on the span and the app logs it."""
        with self.tracer.start_as_current_span("checkout") as span:
            try:
                raise ValueError(f"card declined for order {order}")
            except ValueError as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, "declined"))
                self.logger.error("payment failed for order %d", order)

    def overlapping_spans(self, start_ns: int) -> None:
        """Two concurrent requests whose spans overlap without nesting."""
        first = self.tracer.start_span("request A", start_time=start_ns)
        second = self.tracer.start_span("request B", start_time=start_ns + 5_000_000)
        first.end(end_time=start_ns + 10_000_000)
        second.end(end_time=start_ns + 20_000_000)

    def flush_metrics(self) -> None:
        assert self.meter_provider.force_flush()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            provider.shutdown()


def grpc_app(url: str, resource: Resource, name: str) -> App:
    options = {"endpoint": url.removeprefix("http://"), "insecure": True}
    return App(resource, GrpcSpanExporter(**options), GrpcLogExporter(**options), GrpcMetricExporter(**options), name)


def http_app(url: str, resource: Resource, name: str) -> App:
    return App(
        resource,
        HttpSpanExporter(endpoint=f"{url}/v1/traces"),
        HttpLogExporter(endpoint=f"{url}/v1/logs"),
        HttpMetricExporter(endpoint=f"{url}/v1/metrics"),
        name,
    )


def explicit_counts(values: list[float]) -> list[float]:
    """The SDK's default explicit buckets of ``values``: ``(b[k-1], b[k]]``."""
    return np.bincount(np.searchsorted(BOUNDS, values, side="left"), minlength=len(BOUNDS) + 1).astype(float).tolist()


def test_otel_data_reads_right(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(daemon=False)
    urls = {e.name: e.url for e in stack.endpoints}
    lake = stack.stack.lakehouse

    # run 1 of shop (pid 111, OTLP/gRPC): a first cumulative export, an hour "ago"
    run1 = grpc_app(urls["otlp-grpc"], shop_resource(111), "shop")
    for value in (3.0, 40.0, 700.0):
        run1.duration.record(value)
    for value in (1.5, 2.5):
        run1.wait.record(value)
    run1.fail_once(1)
    run1.flush_metrics()
    first_blocks = [r["block_id"] for r in stack.call(lake.pool.fetch("SELECT block_id FROM blocks"))]
    # ... then more values: the second cumulative point holds both exports' (the wider range
    # lowers the exponential scale)
    for value in (5.0, 50.0):
        run1.duration.record(value)
    for value in (100.0, 1000.0):
        run1.wait.record(value)
    run1.overlapping_spans(lake.now_ns())
    run1.flush_metrics()
    run1.close()

    # run 2 of shop (pid 222, OTLP/HTTP): a restart, so a new process
    run2 = http_app(urls["otlp-http"], shop_resource(222), "shop")
    run2.duration.record(60.0)
    run2.fail_once(2)
    run2.flush_metrics()
    run2.close()
    # a retry of run 2's resource from the same process maps to the same process id
    retry = http_app(urls["otlp-http"], shop_resource(222), "shop")
    retry.logger.warning("retried")
    retry.close()

    # worker: the in-process sirius exporters (delta histograms), native identity
    native = current_process_info({"service.name": "worker"})
    sink = TelemetrySink(SinkConfig(url=stack.url))
    worker = App(
        Resource.create({"service.name": "worker"}),
        SiriusSpanExporter(sink, native),
        SiriusLogRecordExporter(sink, native),
        SiriusMetricExporter(sink, native),
        "worker",
    )
    for value in (7.0, 8.0, 9.0, 300.0):
        worker.duration.record(value)
    worker.fail_once(3)
    with worker.tracer.start_as_current_span("poll", attributes={"thread.id": 42, "thread.name": "poller"}):
        pass
    worker.flush_metrics()
    worker.close()
    assert sink.shutdown(timeout=30)
    assert sink.stats().rejected_items == 0

    async def shift_and_materialise() -> None:
        await lake.pool.execute(
            "UPDATE blocks SET insert_time = insert_time - interval '1 hour' WHERE block_id = ANY($1::uuid[])",
            first_blocks,
        )
        report = await MaintenanceDaemon(lake).run_pass(PassKind.HOUR, lake.now_ns() + HOUR_NS)
        assert not report.failures, report.failures

    stack.call(shift_and_materialise())
    client = micromegas.connect(urls["flightsql"])

    # 1. one row per process; the two runs of shop are two processes, the retry is not a third
    processes = client.query("SELECT process_id, exe, service_name, last_update_time FROM processes")
    assert processes["process_id"].is_unique, processes
    assert client.query("SELECT stream_id FROM streams")["stream_id"].is_unique
    assert sorted(processes["service_name"]) == ["shop", "shop", "worker"]
    partitions = client.query("SELECT count(*) AS n FROM list_partitions() WHERE view_set_name = 'processes'")
    assert partitions["n"][0] >= 2  # shop's process is in two partitions, yet listed once
    shop_pids = set(processes[processes["service_name"] == "shop"]["process_id"])
    run1_pid = client.query("SELECT DISTINCT process_id FROM log_entries WHERE msg = 'payment failed for order 1'")
    (run1_pid,) = run1_pid["process_id"]
    assert run1_pid in shop_pids

    # 2. service_name on every OTel view
    for view in ("log_entries", "measures", "histograms"):
        names = client.query(f"SELECT DISTINCT service_name FROM {view} ORDER BY service_name")
        assert list(names["service_name"]) == ["shop", "worker"], view
    spans = client.query(f"SELECT service_name, name FROM view_instance('otel_spans', '{run1_pid}') ORDER BY name")
    assert set(spans["service_name"]) == {"shop"}
    assert list(spans["name"]) == ["checkout", "request A", "request B"]

    # 3. three failures, each counted once by a plain level filter; exception events still there
    errors = client.query(
        "SELECT service_name, count(*) AS n FROM log_entries WHERE level <= 2 GROUP BY service_name ORDER BY 1"
    )
    assert list(zip(errors["service_name"], errors["n"], strict=True)) == [("shop", 2), ("worker", 1)]
    exceptions = client.query(
        "SELECT service_name, level, msg FROM log_entries WHERE target = 'otel.span.exception' ORDER BY msg"
    )
    assert list(exceptions["msg"]) == [f"ValueError: card declined for order {i}" for i in (1, 2, 3)]
    assert set(exceptions["level"]) == {3}

    # 4. one SQL for quantiles over any temporality: shop (cumulative, two runs, two partitions)
    # and worker (delta) -- the merge holds exactly the values each service recorded
    merged = client.query(
        "SELECT service_name, merge_histograms(bounds, delta_counts) AS h,"
        " histogram_quantile(merge_histograms(bounds, delta_counts), 0.5) AS p50,"
        " histogram_quantile(merge_histograms(bounds, delta_counts), 0.99) AS p99"
        " FROM histograms WHERE name = 'http.duration' GROUP BY service_name ORDER BY service_name"
    )
    recorded = {"shop": [3.0, 40.0, 700.0, 5.0, 50.0, 60.0], "worker": [7.0, 8.0, 9.0, 300.0]}
    for row in merged.to_dict("records"):
        values = recorded[row["service_name"]]
        assert list(row["h"]["bounds"]) == BOUNDS
        assert list(row["h"]["counts"]) == explicit_counts(values)
        expected = histogram_quantile(
            pa.array([BOUNDS] * 2), pa.array([explicit_counts(values)] * 2), pa.array([0.5, 0.99])
        ).to_pylist()
        assert [row["p50"], row["p99"]] == expected
    cumulative = client.query(
        "SELECT temporality, count(*) AS n FROM histograms WHERE name = 'http.duration' GROUP BY 1 ORDER BY 1"
    )
    assert list(cumulative["temporality"]) == ["cumulative", "delta"]  # both kinds went into that one merge
    # exponential buckets whose scale went down between the cumulative points
    wait = client.query("SELECT count(DISTINCT scale) AS scales FROM histograms WHERE name = 'queue.wait'")
    assert wait["scales"][0] == 2
    wait = client.query(
        "SELECT merge_histograms(bounds, delta_counts) AS h,"
        " histogram_quantile(merge_histograms(bounds, delta_counts), 0.25) AS q25,"
        " histogram_quantile(merge_histograms(bounds, delta_counts), 1.0) AS q100"
        " FROM histograms WHERE name = 'queue.wait'"
    )
    counts, bounds = wait["h"][0]["counts"], wait["h"][0]["bounds"]
    assert sum(counts) == pytest.approx(4.0)  # 1.5, 2.5, 100, 1000: each once
    assert 1.0 < wait["q25"][0] <= 2.5
    assert 512.0 <= wait["q100"][0] <= 1024.0 * 1.01
    assert len(counts) == len(bounds) + 1

    # 5. Perfetto: the OTel process's spans, on nesting tracks named after the service
    path = tmp_path / "shop.pftrace"
    begin, end = processes["last_update_time"].min() - np.timedelta64(2, "h"), processes["last_update_time"].max()
    micromegas.perfetto.write_process_trace(client, run1_pid, begin, end + np.timedelta64(1, "h"), str(path))
    trace = parse_trace(path.read_bytes())
    assert trace.process_name == "shop"
    assert sorted(t["thread_name"] for t in trace.thread_tracks.values()) == ["shop", "shop #2"]
    assert trace.slices == 3
    # the in-process exporters' process: spans carrying a thread go to that thread's track
    path = tmp_path / "worker.pftrace"
    micromegas.perfetto.write_process_trace(client, native.process_id, begin, end + np.timedelta64(1, "h"), str(path))
    trace = parse_trace(path.read_bytes())
    tracks = sorted((t["thread_name"], t["tid"]) for t in trace.thread_tracks.values())
    assert [name for name, _ in tracks] == ["poller", "worker"]
    assert (trace.process_name, dict(tracks)["poller"], trace.slices) == (native.exe, 42, 2)
