"""A lake of ``log_entries``, ``measures`` and ``otel_spans`` partitions for the DuckDB comparison.

``build_lake`` writes, through the same paths as production (transit blocks stored as the
ingestion service stores them, OTLP requests split like the receivers split them, then
``materialize_partitions`` — the daemon's batch update — into one-minute global partitions):

* ``processes`` native processes over ``exes`` executables, each with a log stream and a
  metrics stream. The events are written once into template blocks and each process gets a copy
  (new block ids, its own start time), so a 10 M-row lake costs the writer 10 M / processes
  events; a process's events spread over about a minute, the processes over ``minutes``;
* log events: 8 targets, levels 1 to 6 (≈ 9 % errors or worse), three message shapes (formatted
  text, static text, and tagged events with a ``tenant`` property);
* metric events: 6 names, floats, integers and tagged floats (``delta`` is null for native
  metrics: a column with nulls);
* OTLP spans of ``services`` services: traces of 2 spans per service they cross (a root with a
  null ``parent_span_id`` and a child), 2 % with an ``ERROR`` status, attributes with an
  ``http.route``.

Event times are whole microseconds, so DuckDB and DataFusion order equal instants the same way.
Used by ``bench/aggregates.py`` (millions of rows) and ``tests/lakehouse/test_duckdb_parity.py``
(thousands).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _query_set import VIEWS, QueryParameters
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from sirius.lakehouse import (
    DataLake,
    Lakehouse,
    TimeRange,
    block_object_key,
    list_partitions,
    materialize_partitions,
)
from sirius.otel_bridge import TRACES, split_request
from sirius.tracing.transit._wire_format import Block, ProcessInfo, StreamInfo, payload_to_cbor
from sirius.tracing.transit._writer import LogMetadata, MetricMetadata, TransitWriter

__all__ = ["BASE", "Clock", "LakeShape", "ObservabilityLake", "build_lake"]

BASE = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=dt.UTC)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000
S = 1_000_000_000
MINUTE = 60 * S
EVENTS_PER_BLOCK = 16_384
SPAN_TRACES_PER_REQUEST = 2_000


class Clock:
    """The lakehouse clock of a benchmark: starts at ``BASE``, moved only by ``set``."""

    def __init__(self) -> None:
        self.now = BASE

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        self.now = now


@dataclass(frozen=True, slots=True)
class LakeShape:
    """How big the lake is.

    Attributes:
        processes: native processes (log + metrics streams each).
        exes: distinct executables among them.
        log_events: log events per process.
        metric_events: metric events per process.
        services: OTLP services.
        traces: traces in all (each crosses 3 services, or all when fewer: 2 spans per service).
        minutes: insert minutes (= one-minute partitions per view).
    """

    processes: int
    exes: int
    log_events: int
    metric_events: int
    services: int
    traces: int
    minutes: int = 10


@dataclass(frozen=True, slots=True)
class ObservabilityLake:
    """What the queries need to know about a built lake.

    Attributes:
        files: absolute paths of each view's global partition files.
        rows: rows per view.
        parameters: values for the query set (window, a trace id, a route).
    """

    files: dict[str, list[str]]
    rows: dict[str, int]
    parameters: QueryParameters


def _log_template(events: int) -> tuple[TransitWriter, list[Block]]:
    template = ProcessInfo(uuid.uuid4(), "template", "u", "U", "h", "linux", "EPYC", S, BASE_NS, 0)
    writer = TransitWriter(template, "log")
    # Levels by call site: mostly info, some debug/trace/warn, errors and fatal ≈ 9 %.
    levels = [4, 4, 5, 4, 3, 4, 2, 4, 6, 4, 5, 4, 4, 3, 4, 1]
    descs = [
        LogMetadata(f"static message {i}", f"app::mod{i % 8}", levels[i % len(levels)], "app", "app.rs", i)
        for i in range(32)
    ]
    step = max(1, 60_000_000 // max(events, 1)) * 1_000  # whole µs, a process spans ≈ 1 minute
    blocks: list[Block] = []
    for i in range(events):
        desc = descs[i % len(descs)]
        ticks = i * step
        if i % 4 == 3:
            writer.log_static(desc, ticks=ticks)
        elif i % 50 == 1:
            writer.log_tagged(desc, {"tenant": f"t{i % 5}"}, f"tagged {i} for user-{i % 113} ", ticks=ticks)
        else:
            text = f"request {i} served in {i % 997} us for user-{i % 113} (status 200)"
            writer.log_string(desc, text, ticks=ticks)
        if writer.nb_objects == EVENTS_PER_BLOCK:
            blocks.append(writer.seal())
    if writer.nb_objects:
        blocks.append(writer.seal())
    return writer, blocks


def _metric_template(events: int) -> tuple[TransitWriter, list[Block]]:
    template = ProcessInfo(uuid.uuid4(), "template", "u", "U", "h", "linux", "EPYC", S, BASE_NS, 0)
    writer = TransitWriter(template, "metrics")
    names = [("cpu.usage", "%"), ("latency", "ms"), ("queue.depth", "items"), ("heap", "bytes")]
    names += [("frame.time", "ms"), ("requests", "count")]
    descs = [MetricMetadata(n, u, "app::metrics") for n, u in names]
    rng = np.random.default_rng(7)
    values = rng.gamma(2.0, 20.0, events)
    step = max(1, 60_000_000 // max(events, 1)) * 1_000
    blocks: list[Block] = []
    for i in range(events):
        desc = descs[i % len(descs)]
        if desc.name in ("queue.depth", "requests"):
            writer.metric_int(desc, int(values[i]), ticks=i * step)
        elif i % 10 == 3:
            writer.metric_tagged_float(desc, {"core": str(i % 4)}, float(values[i]), ticks=i * step)
        else:
            writer.metric_float(desc, round(float(values[i]), 3), ticks=i * step)
        if writer.nb_objects == EVENTS_PER_BLOCK:
            blocks.append(writer.seal())
    if writer.nb_objects:
        blocks.append(writer.seal())
    return writer, blocks


def _kv(key: str, value: str | int) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, int):
        out.value.int_value = value
    else:
        out.value.string_value = value
    return out


def _span_request(service: str, traces: list[bytes], rng: np.random.Generator, t0: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend([_kv("service.name", service), _kv("host.name", "bench")])
    scope = resource.scope_spans.add()
    scope.scope.name = "bench.http"
    durations = rng.integers(20, 200_000, 2 * len(traces)) * 1_000
    for i, trace in enumerate(traces):
        root = rng.bytes(8)
        for j in range(2):
            route = f"/api/v1/items/{i % 20}"
            op = f"GET {route}" if j == 0 else f"SELECT items_{i % 7}"
            span = scope.spans.add(trace_id=trace, span_id=rng.bytes(8) if j else root, name=op, kind=2 + j)
            if j:
                span.parent_span_id = root
            span.start_time_unix_nano = t0 + (i * 1_000 + j * 100) * 1_000
            span.end_time_unix_nano = span.start_time_unix_nano + int(durations[2 * i + j])
            if i % 50 == 7:
                span.status.code = 2
                span.status.message = "boom"
            span.attributes.extend([_kv("http.route", route), _kv("http.status_code", 500 if i % 50 == 7 else 200)])
    return request


async def _store(lake: Lakehouse, datalake: DataLake, block: Block) -> None:
    payload = payload_to_cbor(block.payload)
    await lake.store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
    await datalake.insert_block(block, len(payload))


async def _copy_streams(
    lake: Lakehouse,
    datalake: DataLake,
    set_clock: Callable[[dt.datetime], None],
    shape: LakeShape,
    templates: list[tuple[TransitWriter, list[Block]]],
) -> None:
    spacing = shape.minutes * MINUTE // shape.processes // 1_000 * 1_000
    for p in range(shape.processes):
        start_ns = BASE_NS + p * spacing
        process = ProcessInfo(
            uuid.uuid4(),
            f"/usr/bin/svc-{p % shape.exes}",
            "bench",
            "Bench",
            f"host-{p % 3}",
            "linux",
            "EPYC",
            S,
            start_ns,
            0,
            None,
            {"env": "bench"},
        )
        await datalake.insert_process(process)
        minute = min(shape.minutes - 1, p * shape.minutes // shape.processes)
        set_clock(BASE + dt.timedelta(minutes=minute, seconds=1 + p % 50))
        for writer, blocks in templates:
            info: StreamInfo = dataclasses.replace(
                writer.stream_info(), process_id=process.process_id, stream_id=uuid.uuid4()
            )
            await datalake.insert_stream(info)
            shift = start_ns - BASE_NS
            for b in blocks:
                copy = dataclasses.replace(
                    b,
                    block_id=uuid.uuid4(),
                    stream_id=info.stream_id,
                    process_id=process.process_id,
                    begin_time_ns=b.begin_time_ns + shift,
                    end_time_ns=b.end_time_ns + shift,
                )
                await _store(lake, datalake, copy)


async def _spans(
    lake: Lakehouse, datalake: DataLake, set_clock: Callable[[dt.datetime], None], shape: LakeShape
) -> str:
    rng = np.random.default_rng(11)
    per_trace = min(3, shape.services)
    requests = max(shape.minutes, -(-shape.traces // SPAN_TRACES_PER_REQUEST))
    wanted = ""
    for r in range(requests):
        count = shape.traces // requests + (1 if r < shape.traces % requests else 0)
        traces = [rng.bytes(16) for _ in range(count)]
        wanted = wanted or traces[len(traces) // 2].hex()
        per_service: list[list[bytes]] = [[] for _ in range(shape.services)]
        for trace in traces:
            for s in rng.choice(shape.services, size=per_trace, replace=False).tolist():
                per_service[s].append(trace)
        minute = r * shape.minutes // requests
        set_clock(BASE + dt.timedelta(minutes=minute, seconds=30))
        for s, ids in enumerate(per_service):
            if not ids:
                continue
            request = _span_request(f"svc-{s:02d}", ids, rng, BASE_NS + minute * MINUTE)
            for item in split_request(TRACES, request, clock=lambda m=minute: BASE_NS + m * MINUTE).blocks:
                await datalake.insert_process(item.process)
                await datalake.insert_stream(item.stream, format=TRACES.format)
                await _store(lake, datalake, item.block)
    return wanted


async def build_lake(
    lake: Lakehouse,
    set_clock: Callable[[dt.datetime], None],
    shape: LakeShape,
    *,
    log: Callable[[str], None] = lambda _: None,
) -> ObservabilityLake:
    """Write the blocks of ``shape``, materialise one-minute global partitions, describe them.

    Args:
        lake: a migrated lakehouse on a local object store, whose clock ``set_clock`` moves.
        set_clock: sets the lakehouse clock (blocks get it as ``insert_time``).
        shape: sizes.
        log: progress lines.
    """
    datalake = DataLake(lake.pool, clock=lake.clock)
    templates = [_log_template(shape.log_events), _metric_template(shape.metric_events)]
    log(f"templates written: {shape.log_events:,} log + {shape.metric_events:,} metric events")
    await _copy_streams(lake, datalake, set_clock, shape, templates)
    log(f"blocks of {shape.processes} processes stored")
    trace_id = await _spans(lake, datalake, set_clock, shape)
    log(f"{shape.traces:,} traces stored")
    set_clock(BASE + dt.timedelta(minutes=shape.minutes + 5))
    span = TimeRange(BASE_NS, BASE_NS + shape.minutes * MINUTE)
    root = Path(lake.store.root)  # type: ignore[attr-defined]
    files: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    for view in VIEWS:
        await materialize_partitions(lake, view, span, MINUTE)
        partitions = [p for p in await list_partitions(lake.pool, view, "global") if p.file_path]
        files[view] = [str(root / p.file_path) for p in partitions]  # type: ignore[operator]
        rows[view] = sum(p.num_rows for p in partitions)
        log(f"{view}: {rows[view]:,} rows in {len(partitions)} partitions")
    # The per-minute pre-aggregates of log_entries, measures and otel_spans (their own update
    # group, after their sources), and the processes view (update group 2000), which the daemon materialises too.
    await materialize_partitions(lake, "log_stats", span, MINUTE)
    await materialize_partitions(lake, "measure_stats", span, MINUTE)
    await materialize_partitions(lake, "span_stats", span, MINUTE)
    await materialize_partitions(lake, "processes", span, MINUTE)
    parameters = QueryParameters(
        window_begin=(BASE + dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        window_end=(BASE + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        trace_id=trace_id,
        route="/api/v1/items/3",
    )
    return ObservabilityLake(files, rows, parameters)
