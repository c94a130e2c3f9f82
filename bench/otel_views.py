"""Benchmark: OTLP blocks into views (decode throughput) and the lookup of a trace by id.

1. Decode: the table makers of ``otel_spans``, ``log_entries`` (OTel logs), ``measures`` and
   ``histograms`` over one block of realistic OTLP data each (spans with 5 attributes, 10 % with
   an event, 75 % with a parent; log records with a formatted body, 3 attributes, half inside a
   span; sums, gauges and explicit histograms over 200 attribute sets), in items per second,
   against a plain ``Resource*.FromString`` of the same payload (ratio = parse / maker).
2. Trace lookup: 400 k spans of 20 services (each trace crosses 3 of them) inserted over ten
   minutes, the global ``otel_spans`` materialised in two 5-minute partitions; the median time of
   ``SELECT * FROM otel_spans WHERE trace_id = X'…'`` (session included) for random traces,
   against (a) the same global view written unsorted with 128 Ki-row groups and (b) what
   Micromegas offers: a ``UNION ALL`` of ``view_instance('otel_spans', <process>)`` over every
   process (JIT partitions already built).

Run: ``/work/venv/bin/python bench/otel_views.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from _postgres import create_database, drop_database, maintenance_dsn
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from sirius.lakehouse import (
    DataLake,
    Lakehouse,
    LocalObjectStore,
    SessionFactory,
    TimeRange,
    create_pool,
    materialize_partitions,
    migrate,
)
from sirius.lakehouse._block_source import SourceBatch, SourceBlock, SourceProcess, SourceStream, block_object_key
from sirius.lakehouse.views import (
    HISTOGRAMS_SCHEMA,
    LOG_ENTRIES_SCHEMA,
    MEASURES_SCHEMA,
    OTEL_SPANS_SCHEMA,
    OtelSpansView,
)
from sirius.lakehouse.views._otel_histograms import otlp_histograms
from sirius.lakehouse.views._otel_logs import otlp_log_entries
from sirius.lakehouse.views._otel_metrics import otlp_measures
from sirius.lakehouse.views._otel_spans import otlp_spans
from sirius.otel_bridge import LOGS, METRICS, TRACES, split_request
from sirius.tracing import payload_to_cbor

BASE = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=dt.UTC)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000
S = 1_000_000_000


def kv(key: str, value: str | int) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, int):
        out.value.int_value = value
    else:
        out.value.string_value = value
    return out


def resource_attributes(service: str) -> list[KeyValue]:
    return [kv("service.name", service), kv("service.instance.id", f"{service}-1"), kv("host.name", "bench")]


# ---------------------------------------------------------------------------------------------
# data


def span_request(service: str, traces: list[bytes], rng: np.random.Generator, t0: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(resource_attributes(service))
    scope = resource.scope_spans.add()
    scope.scope.name, scope.scope.version = "bench.http", "1.0"
    for i, trace in enumerate(traces):
        root = rng.bytes(8)
        for j in range(2):
            route = f"/api/v1/items/{i % 20}"
            s = scope.spans.add(trace_id=trace, span_id=rng.bytes(8) if j else root, name=f"GET {route}", kind=2)
            if j:
                s.parent_span_id = root
            s.start_time_unix_nano = t0 + i * 1_000 + j * 100
            s.end_time_unix_nano = s.start_time_unix_nano + 50_000 + int(rng.integers(0, 1_000_000))
            s.attributes.extend(
                [
                    kv("http.method", "GET"),
                    kv("http.route", route),
                    kv("http.status_code", 200 if i % 50 else 500),
                    kv("user.id", f"user-{i % 997}"),
                    kv("net.peer.name", "db-1"),
                ]
            )
            if i % 10 == 0:
                event = s.events.add(name="cache miss", time_unix_nano=s.start_time_unix_nano + 10)
                event.attributes.append(kv("cache.key", f"k{i}"))
    return request


def log_request(count: int, rng: np.random.Generator) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend(resource_attributes("logs"))
    scope = resource.scope_logs.add()
    scope.scope.name = "bench.logger"
    for i in range(count):
        record = scope.log_records.add(time_unix_nano=BASE_NS + i * 1_000, severity_number=9 + 4 * (i % 3))
        record.body.string_value = f"order {i} processed in {i % 97} ms"
        record.attributes.extend([kv("code.file.path", "app.py"), kv("code.line.number", 10 + i % 30)])
        record.attributes.append(kv("code.function.name", f"handler_{i % 5}"))
        if i % 2:
            record.trace_id, record.span_id = rng.bytes(16), rng.bytes(8)
    return request


def metrics_request(series: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(resource_attributes("metrics"))
    scope = resource.scope_metrics.add()
    scope.scope.name = "bench.meter"
    counter, gauge, histogram = scope.metrics.add(), scope.metrics.add(), scope.metrics.add()
    counter.name, gauge.name, histogram.name = "http.requests", "queue.depth", "http.duration"
    counter.sum.aggregation_temporality, counter.sum.is_monotonic = 2, True
    histogram.histogram.aggregation_temporality = 1
    bounds = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 1000.0]
    for i in range(series):
        attributes = [kv("http.route", f"/r/{i}"), kv("http.method", "GET")]
        point = counter.sum.data_points.add(start_time_unix_nano=BASE_NS, time_unix_nano=BASE_NS + S, as_int=i)
        point.attributes.extend(attributes)
        gauge.gauge.data_points.add(time_unix_nano=BASE_NS + S, as_double=i / 3).attributes.extend(attributes)
        h = histogram.histogram.data_points.add(start_time_unix_nano=BASE_NS, time_unix_nano=BASE_NS + S, count=55)
        h.sum, h.min, h.max = 1234.0, 1.0, 900.0
        h.explicit_bounds.extend(bounds)
        h.bucket_counts.extend(range(11))
        h.attributes.extend(attributes)
    return request


def batch_of(item: Any) -> SourceBatch:
    b, p = item.block, item.process
    return SourceBatch(
        [
            SourceBlock(
                b.block_id, b.stream_id, b.process_id, b.begin_time_ns, 0, b.end_time_ns, 0, b.nb_objects, 0, 0, 0
            )
        ],
        {b.stream_id: SourceStream(b.stream_id, b.process_id, b"", b"", ("x",), {}, 0, item.signal.format)},
        {p.process_id: SourceProcess(p.process_id, p.exe, "", "", "", "", "", 1, 0, 0, 0, "", {}, 1)},
        [payload_to_cbor(b.payload)],
    )


def best(fn: Callable[[], Any], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_decode() -> None:
    rng = np.random.default_rng(1)
    spans = split_request(TRACES, span_request("svc", [rng.bytes(16) for _ in range(10_000)], rng, BASE_NS))
    logs = split_request(LOGS, log_request(20_000, rng))
    metrics = split_request(METRICS, metrics_request(2_000))
    cases = [
        ("otel_spans", spans, ResourceSpans, lambda b: otlp_spans(b, schema=OTEL_SPANS_SCHEMA), 20_000),
        (
            "log_entries (OTel logs)",
            logs,
            ResourceLogs,
            lambda b: otlp_log_entries(b, schema=LOG_ENTRIES_SCHEMA),
            20_000,
        ),
        (
            "measures (OTel metrics)",
            metrics,
            ResourceMetrics,
            lambda b: otlp_measures(b, schema=MEASURES_SCHEMA),
            6_000,
        ),
        ("histograms", metrics, ResourceMetrics, lambda b: otlp_histograms(b, schema=HISTOGRAMS_SCHEMA), 2_000),
    ]
    print("\n## decode: one block, best of 5")
    print("| view | items | protobuf parse/s | view rows/s | µs/item | parse / view |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, split, message, maker, items in cases:
        (item,) = split.blocks
        batch = batch_of(item)
        objects = item.block.payload.objects
        parse = best(lambda: message.FromString(objects))  # noqa: B023 - evaluated in the loop
        build = best(lambda: maker(batch))  # noqa: B023
        rows = maker(batch).num_rows
        print(
            f"| {name} | {items} | {items / parse:,.0f} | {rows / build:,.0f} | {build / rows * 1e6:.2f} |"
            f" {build / parse:.1f}x |"
        )


# ---------------------------------------------------------------------------------------------
# trace lookup


class UnsortedSpans(OtelSpansView):
    """The same view without the trace-id layout: insertion order, 128 Ki-row groups."""

    name: ClassVar[str] = "otel_spans_unsorted"
    row_group_rows: ClassVar[int | None] = None
    sort_order: ClassVar[tuple[str, ...]] = ("insert_time",)

    def transform_batch(self, batch: SourceBatch) -> pa.Table:
        return super(OtelSpansView, self).transform_batch(batch)

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        return super(OtelSpansView, self).merge(tables)


class Clock:
    def __init__(self) -> None:
        self.now = BASE

    def __call__(self) -> dt.datetime:
        return self.now


async def bench_lookup(admin_dsn: str, tmp: Path) -> None:
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn, max_size=12)
    try:
        await migrate(pool)
        clock = Clock()
        lake = Lakehouse(pool, LocalObjectStore(tmp / "objects", durable=False), clock=clock)
        lake.views = lake.views.with_view(UnsortedSpans())
        datalake = DataLake(pool, clock=clock)
        rng = np.random.default_rng(2)
        services, minutes, traces_per_block = 20, 10, 2_000  # 2 spans per trace and service
        pids: list[str] = []
        wanted: list[bytes] = []
        start = time.perf_counter()
        for minute in range(minutes):
            traces = [rng.bytes(16) for _ in range(services * traces_per_block // 3)]
            wanted.append(traces[0])
            per_service: list[list[bytes]] = [[] for _ in range(services)]
            for trace in traces:  # each trace crosses 3 services
                for s in rng.choice(services, size=3, replace=False).tolist():
                    per_service[s].append(trace)
            clock.now = BASE + dt.timedelta(minutes=minute, seconds=30)
            for s, ids in enumerate(per_service):
                request = span_request(f"svc-{s:02d}", ids, rng, BASE_NS + minute * 60 * S)
                for item in split_request(TRACES, request).blocks:
                    await datalake.insert_process(item.process)
                    await datalake.insert_stream(item.stream, format=TRACES.format)
                    payload = payload_to_cbor(item.block.payload)
                    await lake.store.put_if_absent(
                        block_object_key(item.block.process_id, item.block.stream_id, item.block.block_id), payload
                    )
                    await datalake.insert_block(item.block, len(payload))
                    if minute == 0:
                        pids.append(str(item.process.process_id))
        total = int(await pool.fetchval("SELECT sum(nb_objects) FROM blocks"))
        print(f"\n## trace lookup: {total:,} spans, {services} services, {minutes} minutes")
        print(f"generated and stored in {time.perf_counter() - start:.1f} s")
        span = TimeRange(BASE_NS, BASE_NS + minutes * 60 * S)
        for view in ("otel_spans", "otel_spans_unsorted"):
            start = time.perf_counter()
            await materialize_partitions(lake, view, span, 5 * 60 * S)
            print(f"materialised {view} (two 5-minute partitions) in {time.perf_counter() - start:.1f} s")
        union = " UNION ALL ".join(
            f"SELECT * FROM view_instance('otel_spans', '{p}') WHERE trace_id = X'{{t}}'" for p in pids
        )
        factory = SessionFactory(lake)
        start = time.perf_counter()
        session = await factory.create()
        await session.prepare(union)  # JIT partitions of every process, built once
        print(f"JIT over {len(pids)} processes built in {time.perf_counter() - start:.1f} s")

        async def lookup(sql: str) -> tuple[float, float, int]:
            begin = time.perf_counter()
            session = await factory.create()
            ready = time.perf_counter()
            frame = await session.sql(sql)  # runs the JIT checks of view_instance calls first
            table = await asyncio.to_thread(frame.to_arrow_table)
            end = time.perf_counter()
            return end - begin, end - ready, table.num_rows

        by_id = "SELECT * FROM {view} WHERE trace_id = X'{t}'"
        rows = {
            "global otel_spans, sorted by trace_id, 16 Ki-row groups (Sirius)": by_id.replace("{view}", "otel_spans"),
            "global, unsorted, 128 Ki-row groups": by_id.replace("{view}", "otel_spans_unsorted"),
            "UNION ALL of per-process view_instance (Micromegas)": union,
        }
        results: dict[str, tuple[float, float]] = {}
        for label, template in rows.items():
            totals, queries = [], []
            for trace in wanted * 2:
                total_s, query_s, found = await lookup(template.replace("{t}", trace.hex()))
                assert found == 6, found
                totals.append(total_s)
                queries.append(query_s)
            results[label] = (statistics.median(totals), statistics.median(queries))
        baseline = results["UNION ALL of per-process view_instance (Micromegas)"][0]
        print("| query | median ms (session + query) | of which query | UNION / this |")
        print("| --- | --- | --- | --- |")
        for label, (total_s, query_s) in results.items():
            print(f"| {label} | {total_s * 1e3:.1f} | {query_s * 1e3:.1f} | {baseline / total_s:.1f}x |")
    finally:
        await pool.close()
        await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    bench_decode()
    with tempfile.TemporaryDirectory(prefix="sirius-bench-") as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        asyncio.run(bench_lookup(admin_dsn, Path(tmp)))


if __name__ == "__main__":
    main()
