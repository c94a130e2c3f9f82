"""Fixtures of the Explore API tests: one real stack per module, fed with known telemetry.

The stack (``sirius.admin`` Stack: ingestion, OTLP receivers, FlightSQL, gateway with Explore,
daemon) runs in a background thread over its own PostgreSQL database. It is fed the way users
feed it:

* ``checkout-api`` (OTel SDK over OTLP/gRPC) and ``inventory`` (OTel SDK over OTLP/HTTP) share
  ``ORDERS`` traces of six spans each, with known start and end times, ``FAILED`` of them
  failing in ``inventory`` (an exception event, ERROR status, error logs in both services), plus
  ``HEALTH`` one-span ``GET /health`` traces; an ``orders.created`` counter by region and an
  ``order.latency`` histogram, exported twice (cumulative);
* ``batch-worker`` (the native tracer, in a subprocess: ``_native_worker.py``): thread spans,
  logs with errors and a metric.

Then the global views are built over what was inserted (as ``sirius demo`` does) and the
fixture waits (polling with a deadline) until FlightSQL answers with all of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _native_worker as native
from pg_databases import admin_execute, with_database  # tests/ is on sys.path (tests/conftest.py)
from waiting import wait_until

MS = 1_000_000
S = 1_000_000_000
ORDERS = 8
FAILED = (1, 4, 6)
HEALTH = 4
SPANS_PER_ORDER = 6
REGIONS = ("us", "eu")


@dataclass
class Fed:
    """What the fixture sent, for the tests to compare with."""

    base_ns: int
    order_traces: list[str] = field(default_factory=list)
    failed_traces: list[str] = field(default_factory=list)
    health_traces: list[str] = field(default_factory=list)
    span_ids: dict[str, dict[str, str]] = field(default_factory=dict)  # trace → span name → id


@dataclass
class ExploreLake:
    """A running stack with the fed data, and how to reach it."""

    gateway: str  # http://127.0.0.1:port (the gateway's root)
    flightsql: str
    fed: Fed
    stack: Any

    def url(self, path: str) -> str:
        return self.gateway + path


class _StackThread:
    """A Stack on its own event loop in a thread (as tests/conftest.py's StackThread)."""

    def __init__(self, options: Any) -> None:
        from sirius.admin._stack import Stack

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="explore-stack", daemon=True)
        self._thread.start()
        self.stack = Stack(options)
        self.endpoints = {e.name: e.url for e in self.call(self.stack.start())}

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.stack.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def _resource(name: str) -> Any:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": name, "service.instance.id": f"{name}-1", "deployment.environment": "test"})


class _OtelService:
    def __init__(self, name: str, exporters: tuple[Any, Any, Any]) -> None:
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        spans, logs, metrics = exporters
        self.tracer_provider = TracerProvider(resource=_resource(name))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        self.tracer = self.tracer_provider.get_tracer(f"{name}.tracer")
        self.logger_provider = LoggerProvider(resource=_resource(name))
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        self.handler = LoggingHandler(logger_provider=self.logger_provider)
        self.log = logging.getLogger(f"explore.tests.{name}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(self.handler)
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], resource=_resource(name))
        self.meter = self.meter_provider.get_meter(f"{name}.meter")
        self.metric_exporter = metrics

    def export_metrics(self) -> None:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        assert self.metric_exporter.export(self.reader.get_metrics_data()) is MetricExportResult.SUCCESS

    def close(self) -> None:
        self.log.removeHandler(self.handler)
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            provider.shutdown()


def _grpc(name: str, url: str) -> _OtelService:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    options = {"endpoint": url.removeprefix("http://"), "insecure": True}
    return _OtelService(name, (OTLPSpanExporter(**options), OTLPLogExporter(**options), OTLPMetricExporter(**options)))


def _http(name: str, url: str) -> _OtelService:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return _OtelService(
        name,
        (
            OTLPSpanExporter(endpoint=f"{url}/v1/traces"),
            OTLPLogExporter(endpoint=f"{url}/v1/logs"),
            OTLPMetricExporter(endpoint=f"{url}/v1/metrics"),
        ),
    )


def _feed_otel(grpc_url: str, http_url: str, fed: Fed) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    checkout, inventory = _grpc("checkout-api", grpc_url), _http("inventory", http_url)
    orders = checkout.meter.create_counter("orders.created", unit="1")
    latency = checkout.meter.create_histogram("order.latency", unit="ms")
    try:
        for i in range(ORDERS):
            t0 = fed.base_ns + i * 10 * S
            failed = i in FAILED
            root = checkout.tracer.start_span(
                "POST /orders",
                kind=SpanKind.SERVER,
                start_time=t0,
                attributes={"http.route": "POST /orders", "order.id": str(i)},
            )
            ctx = trace.set_span_in_context(root)
            cache = checkout.tracer.start_span("cache.get", context=ctx, start_time=t0 + 12 * MS)
            cache.end(end_time=t0 + 30 * MS)
            reserve = checkout.tracer.start_span("reserve", kind=SpanKind.CLIENT, context=ctx, start_time=t0 + 10 * MS)
            inv = inventory.tracer.start_span(
                "inventory.reserve",
                kind=SpanKind.SERVER,
                context=trace.set_span_in_context(reserve),
                start_time=t0 + 15 * MS,
            )
            db = inventory.tracer.start_span(
                "db.query", context=trace.set_span_in_context(inv), start_time=t0 + 20 * MS
            )
            db.end(end_time=t0 + 50 * MS)
            if failed:
                inv.record_exception(RuntimeError("out of stock"), timestamp=t0 + 54 * MS)
                inv.set_status(Status(StatusCode.ERROR, "out of stock"))
                with trace.use_span(inv, end_on_exit=False):
                    inventory.log.error("reserve %d failed: out of stock", i)
            inv.end(end_time=t0 + 55 * MS)
            reserve.end(end_time=t0 + 60 * MS)
            render = checkout.tracer.start_span("render", context=ctx, start_time=t0 + 70 * MS)
            render.end(end_time=t0 + 95 * MS)
            with trace.use_span(root, end_on_exit=False):
                if failed:
                    root.set_status(Status(StatusCode.ERROR, "order failed"))
                    checkout.log.error("order %d failed", i)
                else:
                    checkout.log.info("order %d placed", i)
            root.end(end_time=t0 + 100 * MS)
            trace_id = format(root.get_span_context().trace_id, "032x")
            fed.order_traces.append(trace_id)
            if failed:
                fed.failed_traces.append(trace_id)
            fed.span_ids[trace_id] = {
                name: format(span.get_span_context().span_id, "016x")
                for name, span in (
                    ("POST /orders", root),
                    ("cache.get", cache),
                    ("reserve", reserve),
                    ("inventory.reserve", inv),
                    ("db.query", db),
                    ("render", render),
                )
            }
            orders.add(1, {"region": REGIONS[i % 2]})
            latency.record(100.0 + i, {"http.route": "POST /orders"})
            if i == ORDERS // 2 - 1:
                checkout.export_metrics()  # a first cumulative point half way
        for j in range(HEALTH):
            t0 = fed.base_ns + j * 10 * S + 5 * S
            health = checkout.tracer.start_span("GET /health", kind=SpanKind.SERVER, start_time=t0)
            health.end(end_time=t0 + 1 * MS)
            fed.health_traces.append(format(health.get_span_context().trace_id, "032x"))
        checkout.export_metrics()
    finally:
        checkout.close()
        inventory.close()


@pytest.fixture(scope="module")
def explore_lake(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExploreLake]:
    """A stack holding the fed telemetry (see the module docstring)."""
    from sirius.admin._demo import materialize_run
    from sirius.admin._stack import StackOptions
    from sirius.flight import query_table

    name = f"sirius_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin_execute(pg_admin_dsn, f'CREATE DATABASE "{name}"'))
    dsn = with_database(pg_admin_dsn, name)
    data_dir = tmp_path_factory.mktemp("explore-stack")
    ports = dict.fromkeys(("ingestion_port", "otlp_grpc_port", "otlp_http_port", "flight_port", "gateway_port"), 0)
    with pytest.MonkeyPatch.context() as env:
        for var in ("MICROMEGAS_API_KEYS", "MICROMEGAS_SQL_CONNECTION_STRING", "MICROMEGAS_OBJECT_STORE_URI"):
            env.delenv(var, raising=False)
        env.setenv("SIRIUS_SPOOL_DIR", str(tmp_path_factory.mktemp("explore-spool")))
        stack = _StackThread(StackOptions(data_dir=data_dir, sql_connection_string=dsn, **ports))
        try:
            since = time.time_ns()
            fed = Fed(base_ns=time.time_ns() - 10 * 60 * S)
            with warnings.catch_warnings():  # the SDK's LoggingHandler is deprecated, and what users run
                warnings.simplefilter("ignore", DeprecationWarning)
                _feed_otel(stack.endpoints["otlp-grpc"], stack.endpoints["otlp-http"], fed)
            worker = subprocess.run(
                [sys.executable, native.__file__, stack.endpoints["ingestion"]],
                capture_output=True,
                text=True,
                timeout=120,
                env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MICROMEGAS_"))},
                check=False,
            )
            assert worker.returncode == 0, worker.stderr
            flightsql = stack.endpoints["flightsql"]
            lakehouse = stack.stack.lakehouse

            def ready() -> bool:
                stack.call(materialize_run(lakehouse, since))
                counts = query_table(
                    "SELECT (SELECT count(*) FROM otel_spans) AS spans, "
                    "(SELECT count(*) FROM log_entries WHERE service_name = 'batch-worker') AS native_logs, "
                    "(SELECT count(*) FROM histograms) AS histograms",
                    uri=flightsql,
                    begin="1h",
                ).to_pylist()[0]
                expected_spans = ORDERS * SPANS_PER_ORDER + HEALTH
                return counts == {
                    "spans": expected_spans,
                    "native_logs": native.JOBS + native.ERRORS,
                    "histograms": 2,
                }

            wait_until("the fed telemetry to be queryable", ready)
            gateway = stack.endpoints["gateway"].removesuffix("/gateway")
            yield ExploreLake(gateway=gateway, flightsql=flightsql, fed=fed, stack=stack)
        finally:
            stack.close()
            asyncio.run(admin_execute(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
