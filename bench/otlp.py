"""OTLP receiver throughput: spans, log records and data points per second over gRPC and HTTP/protobuf.

The OTLP service (``sirius.collector.OtlpService``) runs in this process over PostgreSQL and a
local object store. Concurrent real OTel Python exporters (``OTLPSpanExporter`` /
``OTLPLogExporter`` / ``OTLPMetricExporter``, gRPC and HTTP/protobuf: their channels/sessions, retries and compression
settings) run as threads of one separate client process and send distinct batches of 512 items
(the ``BatchSpanProcessor`` default). The SDK's protobuf *encoding* is done before the clock
starts: in Python it costs more than the receiver (printed as ``SDK encode`` for reference) and
on a 2-core machine it would starve the server being measured.

Accepted = answered 200 / OK, i.e. the block is in the object store and its row in PostgreSQL.
Per core = items per second of CPU time used by this (server) process. The baseline is a plain
``Export*ServiceRequest.FromString`` of the same request bytes in one process; ``ratio`` is
baseline rate / accepted rate, ``core ratio`` baseline rate / per-core rate (how much server CPU
the whole service spends per item compared with parsing alone: the goal is at most 6).

Run: ``.venv/bin/python bench/otlp.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import random
import resource
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _postgres import create_database, drop_database, maintenance_dsn
from aiohttp import web
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sirius.collector import HttpServer, OtlpLimits, OtlpService, _otlp_writer
from sirius.lakehouse import create_pool, migrate, open_object_store
from sirius.lakehouse._datalake import DataLake
from sirius.otel_bridge import SIGNALS, split_request_bytes

BATCH = 512
CLIENT_THREADS = 8
REQUEST_TYPES = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}


# -- request bodies (built by the real SDK, before timing) ------------------------------------


def _span_requests(count: int, seed: int) -> list[bytes]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    random.seed(seed)
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench", "service.instance.id": f"bench-{seed}", "host.name": "h"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench.tracer", "1.0")
    bodies = []
    for _ in range(count):
        memory.clear()
        for i in range(BATCH // 4):
            with tracer.start_as_current_span("GET /api/orders", attributes={"http.route": "/api/orders"}) as root:
                root.set_attribute("http.response.status_code", 200)
                for step in ("db.query", "cache.get", "render"):
                    with tracer.start_as_current_span(step, attributes={"step.index": i, "db.system.name": "pg"}):
                        pass
        bodies.append(encode_spans(memory.get_finished_spans()).SerializeToString())
    return bodies


def _log_requests(count: int, seed: int) -> list[bytes]:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench", "service.instance.id": f"b-{seed}"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("bench.logger")
    bodies = []
    for n in range(count):
        memory.clear()
        for i in range(BATCH):
            logger.emit(
                body=f"order {seed}-{n}-{i} processed in {i % 97} ms",
                severity_number=SeverityNumber.INFO,
                attributes={"order.id": i, "customer.tier": "gold", "region": "eu-west-1"},
            )
        bodies.append(encode_logs(memory.get_finished_logs()).SerializeToString())
    return bodies


def _metric_requests(count: int, seed: int) -> list[bytes]:
    """Delta collections of 256 counter points and 256 histogram points (512 data points each)."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
    provider = MeterProvider(
        resource=Resource.create({"service.name": "bench", "service.instance.id": f"m-{seed}"}), metric_readers=[reader]
    )
    meter = provider.get_meter("bench.meter", "1.0")
    orders = meter.create_counter("orders", unit="1")
    latency = meter.create_histogram("latency", unit="ms")
    bodies = []
    for n in range(count):
        for i in range(BATCH // 2):
            attributes = {"route": f"/api/r{i}", "region": "eu-west-1"}
            orders.add(1 + (n + i) % 7, attributes)
            latency.record((n * 31 + i) % 97 + 0.5, attributes)
        request = encode_metrics(reader.get_metrics_data())
        points = sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for r in request.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        )
        assert points == BATCH, points
        bodies.append(request.SerializeToString())
    provider.shutdown()
    return bodies


# -- clients (separate process) ----------------------------------------------------------------


def _client_run(transport: str, signal: str, port: int, bodies: list[bytes]) -> tuple[float, int]:
    """Send ``bodies`` with CLIENT_THREADS real exporters; return (elapsed seconds, failures)."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    message_type = REQUEST_TYPES[signal]
    if transport == "grpc":
        cls = {"traces": GrpcSpans, "logs": GrpcLogs, "metrics": GrpcMetrics}[signal]

        class Exporter(cls):  # type: ignore[misc,valid-type]
            def _translate_data(self, data):  # already an Export*ServiceRequest
                return data

            def _count_data(self, data):
                return BATCH

        def make():
            return Exporter(endpoint=f"localhost:{port}", insecure=True)

        def send(exporter, body):
            return exporter._export(body).name == "SUCCESS"

        bodies = [message_type.FromString(b) for b in bodies]  # gRPC serialises the message itself
    else:
        cls = {"traces": HttpSpans, "logs": HttpLogs, "metrics": HttpMetrics}[signal]

        def make():
            return cls(endpoint=f"http://127.0.0.1:{port}/v1/{signal}")

        def send(exporter, body):
            return exporter._client.export(body).success  # the exporter's own HTTP client (retries, session)

    shares = [bodies[i::CLIENT_THREADS] for i in range(CLIENT_THREADS)]
    exporters = [make() for _ in shares]
    failures = [0]
    lock = threading.Lock()

    def worker(exporter, mine):
        for body in mine:
            if not send(exporter, body):
                with lock:
                    failures[0] += 1

    threads = [threading.Thread(target=worker, args=(e, s)) for e, s in zip(exporters, shares, strict=True)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for exporter in exporters:
        exporter.shutdown()
    return elapsed, failures[0]


# -- bench ------------------------------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parse_rate(signal: str, bodies: list[bytes]) -> float:
    """Items/s of a plain upb parse: the best of 5 passes (other processes share the cores)."""
    message_type = REQUEST_TYPES[signal]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for body in bodies:
            message_type.FromString(body)
        best = min(best, time.perf_counter() - start)
    return len(bodies) * BATCH / best


def _upb_path(signal: object, data: bytes, **_: object) -> None:
    """Stands in for ``split_request_bytes`` with ``--compare-upb``: every request takes the upb path."""


async def _bench(admin_dsn: str, tmp: Path, args: argparse.Namespace) -> None:
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn)
    await migrate(pool)
    objects = tmp / "objects"
    objects.mkdir()
    store = open_object_store(objects.as_uri())
    lake = DataLake(pool)
    service = OtlpService(lake, store, grpc_port=0, http_port=0, limits=OtlpLimits())
    ports = await service.start()
    # "http" is the service's own port (fast lane unless SIRIUS_HTTP_FAST_LANE=0); "http-aio" is the
    # same routes, writer and budget behind aiohttp alone (--transports …,http-aio).
    aio_app = web.Application(client_max_size=OtlpLimits().max_request_bytes, handler_args={"auto_decompress": False})
    service.http_routes().add_to(aio_app)
    aio_server = HttpServer(aio_app, "127.0.0.1", 0, service="OTLP/HTTP", fast_lane=False)
    aio_port = await aio_server.start()
    port_of = {"grpc": ports.grpc, "http": ports.http, "http-aio": aio_port}
    context = multiprocessing.get_context("spawn")
    header = (
        f"{'signal':>7} {'transport':>9} {'path':>4} {'items':>7} {'accepted/s':>11} {'server CPU s':>12} "
        f"{'per core/s':>11} {'parse/s':>10} {'ratio':>6} {'core ratio':>10}"
    )
    try:
        print(f"building {args.requests} requests of {BATCH} items per run with the OTel SDK …", flush=True)
        encode_start = time.perf_counter()
        sample = _span_requests(4, seed=999)
        encode_rate = 4 * BATCH / (time.perf_counter() - encode_start)
        print(f"SDK encode (spans created + encode_spans, reference): {encode_rate:,.0f} spans/s")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(header)
        seed = 0
        builders = {"traces": _span_requests, "logs": _log_requests, "metrics": _metric_requests}
        paths = ("wire", "upb") if args.compare_upb else ("wire",)
        transports = args.transports.split(",") * args.repeat  # interleaved: load changes hit every transport
        for signal in args.signals.split(","):
            for transport, path in itertools.product(transports, paths):
                seed += 1
                build = builders[signal]
                _otlp_writer.split_request_bytes = split_request_bytes if path == "wire" else _upb_path
                with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
                    bodies = await asyncio.wrap_future(executor.submit(build, args.requests, seed))
                    scanned = sum(split_request_bytes(SIGNALS[signal], body) is not None for body in bodies)
                    if scanned != len(bodies):  # the receivers would take the upb path: say so
                        print(f"{signal}: {len(bodies) - scanned} of {len(bodies)} requests need the upb path")
                    blocks_before = await pool.fetchval("SELECT count(*) FROM blocks")
                    cpu_before = _cpu()
                    elapsed, failures = await asyncio.wrap_future(
                        executor.submit(_client_run, transport, signal, port_of[transport], bodies)
                    )
                    cpu = _cpu() - cpu_before
                blocks = await pool.fetchval("SELECT count(*) FROM blocks") - blocks_before
                if failures or blocks != len(bodies):
                    raise SystemExit(f"{signal}/{transport}: {failures} failed exports, {blocks}/{len(bodies)} blocks")
                items = len(bodies) * BATCH
                accepted = items / elapsed
                parse = _parse_rate(signal, bodies)
                print(
                    f"{signal:>7} {transport:>9} {path:>4} {items:>7} {accepted:>11,.0f} {cpu:>12.2f} "
                    f"{items / cpu:>11,.0f} {parse:>10,.0f} {parse / accepted:>5.1f}x {parse * cpu / items:>9.1f}x",
                    flush=True,
                )
        _otlp_writer.split_request_bytes = split_request_bytes
        del sample
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        await aio_server.stop()
        await service.stop()
        await store.close()
        await pool.close()
        await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--requests", type=int, default=200, help="requests of 512 items per run")
    parser.add_argument("--signals", default="traces,logs,metrics", help="comma-separated signals to measure")
    parser.add_argument(
        "--transports",
        default="grpc,http",
        help="comma-separated: grpc, http (the service's port: fast lane unless SIRIUS_HTTP_FAST_LANE=0), "
        "http-aio (the same routes behind aiohttp alone)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the transports, interleaved, per signal")
    parser.add_argument(
        "--compare-upb", action="store_true", help="also run each case with the wire scanner off (the upb path)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        asyncio.run(_bench(admin_dsn, Path(tmp), args))


if __name__ == "__main__":
    main()
