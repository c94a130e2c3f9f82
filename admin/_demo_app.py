"""The sample service ``sirius demo`` runs: a small "shop" instrumented two ways.

* OpenTelemetry SDK, exported over OTLP/gRPC: two services (``shop-frontend`` and
  ``shop-payments``) whose spans form cross-service traces, log records (some errors, with
  exceptions recorded on spans), a request counter and a latency histogram.
* Sirius's native tracer, over the Micromegas ingestion route: thread spans around real work,
  logs and metrics from the same process as the frontend's OTel data.

Run as ``python -m sirius.admin._demo_app --otlp URL --ingestion URL [--requests N] [--seed S]
[--run-id ID]``. Every process of one run carries the run id (:data:`RUN_PROPERTY`: a native
process property, an OTel resource attribute), so ``sirius demo`` reports only its own run when
a data directory holds several.
OTel times are synthetic so the demo is fast and its results are reproducible: the requests
arrive at seeded random times over the last :data:`WINDOW_S` seconds (ending a little before
now, never in the future), with seeded random latencies. Everything of one request is timed
inside its span: the exception event (``record_exception(..., timestamp=...)``) and the log
records, emitted through the OTel Logs API with explicit timestamps and the span as context
(the SDK's ``LoggingHandler`` would stamp them with the wall clock). The native spans, logs and
metrics time real work, as they happen.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

from .. import tracing

MS = 1_000_000
S = 1_000_000_000
WINDOW_S = 600
"""The requests' start times are spread over this many seconds before now (sparklines get a shape)."""
MARGIN_S = 2
"""The last request starts this long before now: its span (tens of ms) ends in the past."""
ROUTES = ("GET /products", "GET /cart", "POST /checkout")
RUN_PROPERTY = "sirius.demo.run"
"""Process property (native) and resource attribute (OTel, ``otel.resource.`` + it as a property)."""


class _Service:
    """One OTel-instrumented service: its own resource, tracer, logger and meter providers."""

    def __init__(self, name: str, otlp: str, instance: str, run_id: str) -> None:
        resource = Resource.create(
            {
                "service.name": name,
                "service.namespace": "sirius-demo",
                "service.instance.id": instance,
                RUN_PROPERTY: run_id,
            }
        )
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp, insecure=True)))
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=otlp, insecure=True))
        )
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=otlp, insecure=True), export_interval_millis=3_600_000
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        self.tracer = self.tracer_provider.get_tracer("sirius.demo")
        self.logger = self.logger_provider.get_logger(f"demo.{name}")  # the scope: log_entries' target

    def log(self, span: Span, time_ns: int, level: int, message: str) -> None:
        """One log record at ``time_ns`` (inside ``span``'s window), carrying ``span``'s trace context."""
        severity = SeverityNumber.ERROR if level >= logging.ERROR else SeverityNumber.INFO
        self.logger.emit(
            LogRecord(
                timestamp=time_ns,
                context=trace.set_span_in_context(span),
                severity_number=severity,
                severity_text=logging.getLevelName(level),
                body=message,
            )
        )

    def shutdown(self) -> None:
        # force_flush before shutdown: every record is exported before the process exits. The
        # meter provider is only shut down: its final collection exports the metrics once (a
        # force_flush too would export every cumulative point twice).
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


@tracing.span
def _price_cart(items: int, seed: int) -> str:
    # Real work, timed by the native tracer.
    digest = hashlib.sha256(str(seed).encode())
    for _ in range(items * 200):
        digest = hashlib.sha256(digest.digest())
    return digest.hexdigest()


def arrivals(requests: int, seed: int, now_ns: int) -> list[int]:
    """Start times of the requests: seeded uniform draws over the :data:`WINDOW_S` s before now, sorted.

    A random generator of their own, so the requests' draws (latency, failure, amount) stay
    those of ``random.Random(seed)`` alone, which tests replay to know the failures in advance.
    """
    rng = random.Random(f"arrivals-{seed}")  # noqa: S311 - reproducible demo data, not security
    last_ns = now_ns - MARGIN_S * S
    return sorted(last_ns - int(rng.uniform(0, WINDOW_S) * S) for _ in range(requests))


def _request(front: _Service, pay: _Service, rng: random.Random, i: int, start_ns: int) -> int:
    route = ROUTES[i % len(ROUTES)]
    latency_ms = rng.lognormvariate(3.0, 0.6)  # ~20 ms median with a long tail
    failed = route == "POST /checkout" and rng.random() < 0.25
    latency_ns = int(latency_ms * MS)

    def at(fraction: float) -> int:  # a time inside the request, as a fraction of its latency
        return start_ns + int(latency_ns * fraction)

    span = front.tracer.start_span(route, start_time=start_ns, kind=trace.SpanKind.SERVER)
    span.set_attribute("http.route", route)
    ctx = trace.set_span_in_context(span)
    if route == "POST /checkout":
        child = pay.tracer.start_span("charge_card", context=ctx, start_time=at(0.2))
        child.set_attribute("payment.amount", round(rng.uniform(5, 500), 2))
        if failed:
            child.record_exception(RuntimeError("card declined by issuer"), timestamp=at(0.8))
            child.set_status(Status(StatusCode.ERROR, "card declined"))
            pay.log(child, at(0.85), logging.ERROR, f"payment failed for order {i}: card declined")
        child.end(end_time=at(0.9))
    if failed:
        span.set_status(Status(StatusCode.ERROR, "checkout failed"))
        front.log(span, at(0.95), logging.ERROR, f"checkout {i} failed")
    else:
        front.log(span, at(0.95), logging.INFO, f"{route} served in {latency_ms:.1f} ms")
    span.end(end_time=start_ns + latency_ns)
    return latency_ns


def run(otlp: str, ingestion: str, requests: int, seed: int, run_id: str = "") -> None:
    """Emit the demo's telemetry and flush it all before returning."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    properties = {"service.name": "shop-frontend", "demo": "sirius", RUN_PROPERTY: run_id}
    process_id = tracing.init(url=ingestion, properties=properties, exe="shop-frontend (native)")
    # The frontend's OTel resource carries the native tracer's process id as service.instance.id,
    # so the OTLP-derived process and the native one join on it. The payments instance is named
    # after the run: OTLP process ids derive from the resource, and each run has its own process.
    front = _Service("shop-frontend", otlp, str(process_id), run_id)
    pay = _Service("shop-payments", otlp, f"payments-{run_id or 1}", run_id)
    requests_counter = front.meter_provider.get_meter("sirius.demo").create_counter("http.server.requests")
    duration = front.meter_provider.get_meter("sirius.demo").create_histogram(
        "http.server.duration", unit="ms", description="request latency"
    )
    tracing.info("demo shop starting")
    for i, start_ns in enumerate(arrivals(requests, seed, time.time_ns())):
        with tracing.span("handle_request"):
            items = 1 + i % 5
            _price_cart(items, i)
            tracing.metric("cart_items", items, unit="count")
            latency_ns = _request(front, pay, rng, i, start_ns)
        route = ROUTES[i % len(ROUTES)]
        requests_counter.add(1, {"http.route": route})
        duration.record(latency_ns / MS, {"http.route": route})
    tracing.error("demo shop: simulated disk-full warning escalated")
    front.shutdown()
    pay.shutdown()
    if not tracing.flush(30.0):
        sys.exit("native tracer did not deliver everything")
    tracing.shutdown(10.0)


def main() -> None:
    """Command-line entry of the sample service."""
    parser = argparse.ArgumentParser(description="Sirius demo sample service")
    parser.add_argument("--otlp", required=True, help="OTLP/gRPC endpoint, e.g. http://127.0.0.1:4317")
    parser.add_argument("--ingestion", required=True, help="Micromegas ingestion URL, e.g. http://127.0.0.1:9000")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--run-id", default="", help=f"tags every process of this run ({RUN_PROPERTY})")
    args = parser.parse_args()
    run(args.otlp, args.ingestion, args.requests, args.seed, args.run_id)


if __name__ == "__main__":
    main()
