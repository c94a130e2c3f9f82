"""Benchmark: JIT and live ETL of the lakehouse, query speed against DuckDB, bytes per event.

One run measures, on a fresh database and a local object store:

1. JIT latency and events/s of ``view_instance('log_entries', p)`` over a process with 1 M log
   events and ``view_instance('thread_spans', s)`` over a thread with 1 M span events, cold
   (partitions built) and warm (reused);
2. Parquet codec: the 1 M-row ``log_entries`` partition written with LZ4_RAW and with zstd
   (size, encode time, an aggregate through DataFusion);
3. a global aggregate over 10 M ``log_entries`` rows (ten 1-minute partitions materialised by
   the daemon's batch update) through ``SessionFactory`` against DuckDB reading the same
   Parquet files directly (ratio = ours / DuckDB);
4. daemon lag: blocks of log events inserted at a steady 50 k events/s while a
   ``MaintenanceDaemon`` runs on the real clock; lag = first time the block's ``insert_time``
   is covered by a committed global ``log_entries`` partition minus the insert time;
5. bytes per event: raw block payloads, Parquet partitions, and the OTLP protobuf encoding of
   the same events (``opentelemetry-proto``).

Run: ``/work/venv/bin/python bench/etl.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--lag-seconds 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from _postgres import create_database, drop_database, maintenance_dsn

from sirius.lakehouse import (
    DaemonConfig,
    DataLake,
    Lakehouse,
    LocalObjectStore,
    MaintenanceDaemon,
    QueryRange,
    SessionFactory,
    TimeRange,
    create_pool,
    list_partitions,
    materialize_partitions,
    migrate,
)
from sirius.lakehouse._block_source import block_object_key
from sirius.lakehouse._parquet_files import encode_parquet
from sirius.lakehouse.views import LOG_ENTRIES_SCHEMA
from sirius.tracing.transit._wire_format import Block, ProcessInfo, payload_to_cbor
from sirius.tracing.transit._writer import LogMetadata, SpanMetadata, TransitWriter

FREQ = 1_000_000_000
EVENTS_PER_BLOCK = 16_384
BASE = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=dt.UTC)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def process_info(exe: str) -> ProcessInfo:
    return ProcessInfo(
        uuid.uuid4(), exe, "bench", "Bench", "host-1", "linux", "EPYC", FREQ, BASE_NS, 0, None, {"env": "bench"}
    )


def log_blocks(process: ProcessInfo, events: int, start_offset_ns: int = 0) -> tuple[TransitWriter, list[Block]]:
    writer = TransitWriter(process, "log")
    descs = [
        LogMetadata(f"static message {i}", f"bench::log{i % 5}", 1 + i % 6, "bench::log", "log.rs", i)
        for i in range(32)
    ]
    blocks = []
    ticks = start_offset_ns
    for i in range(events):
        desc = descs[i % len(descs)]
        if i % 4 == 3:
            writer.log_static(desc, ticks=ticks)
        else:
            writer.log_string(desc, f"request {i} served in {i % 997} us for user-{i % 113} (status 200)", ticks=ticks)
        ticks += 1_000 + i % 17
        if writer.nb_objects == EVENTS_PER_BLOCK:
            blocks.append(writer.seal())
    if writer.nb_objects:
        blocks.append(writer.seal())
    return writer, blocks


def span_blocks(process: ProcessInfo, events: int) -> tuple[TransitWriter, list[Block]]:
    writer = TransitWriter(process, "cpu", properties={"thread-name": "main"})
    descs = [SpanMetadata(f"span_{i}", "bench::cpu", "bench::cpu::mod", "cpu.rs", i, 0) for i in range(64)]
    blocks = []
    ticks = 1_000
    stack: list[SpanMetadata] = []
    for i in range(events):
        if len(stack) < 6 and (i % 7 != 6 or not stack) and events - i > len(stack):
            stack.append(descs[i % len(descs)])
            writer.begin_thread_span(stack[-1], ticks=ticks)
        else:
            writer.end_thread_span(stack.pop(), ticks=ticks)
        ticks += 37 + i % 11
        if writer.nb_objects == EVENTS_PER_BLOCK:
            blocks.append(writer.seal())
    if writer.nb_objects:
        blocks.append(writer.seal())
    return writer, blocks


async def store_blocks(datalake: DataLake, store: LocalObjectStore, blocks: list[Block]) -> int:
    total = 0
    for block in blocks:
        payload = payload_to_cbor(block.payload)
        total += len(payload)
        await store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
        await datalake.insert_block(block, len(payload))
    return total


async def timed(coro_fn: object) -> float:
    start = time.perf_counter()
    await coro_fn()  # type: ignore[operator]
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------


async def bench_jit(lake: Lakehouse, datalake: DataLake, clock: Clock) -> dict[str, object]:
    print("== JIT: 1 M log events, 1 M span events ==", flush=True)
    process = process_info("/usr/bin/jit-bench")
    await datalake.insert_process(process)
    t0 = time.perf_counter()
    log_writer, logs = log_blocks(process, 1_000_000)
    cpu_writer, spans = span_blocks(process, 1_000_000)
    await datalake.insert_stream(log_writer.stream_info())
    await datalake.insert_stream(cpu_writer.stream_info())
    clock.now = BASE + dt.timedelta(minutes=10)
    raw_log = await store_blocks(datalake, lake.store, logs)
    raw_cpu = await store_blocks(datalake, lake.store, spans)
    print(f"setup (writer + store): {time.perf_counter() - t0:.1f} s, {len(logs)} + {len(spans)} blocks", flush=True)
    factory = SessionFactory(lake)
    await _warm_up(lake, datalake, factory)
    pid, sid = str(process.process_id), str(cpu_writer.stream_id)
    results: dict[str, object] = {"raw_log_bytes": raw_log, "raw_cpu_bytes": raw_cpu, "pid": pid, "sid": sid}
    span_range = QueryRange(BASE, BASE + dt.timedelta(hours=1))
    for name, sql, qrange in (
        ("log_entries", f"SELECT count(*) FROM view_instance('log_entries', '{pid}')", None),
        ("thread_spans", f"SELECT count(*) FROM view_instance('thread_spans', '{sid}')", span_range),
    ):
        for phase in ("cold", "warm", "warm"):
            session = await factory.create(qrange)
            seconds = await timed(lambda s=session, q=sql: s.prepare(q))
            rows = (await session.sql(sql)).to_arrow_table().column(0).to_pylist()[0]
            results[f"{name}_{phase}"] = seconds
            print(
                f"{name:12} {phase}: {seconds * 1000:8.1f} ms"
                f"  {1_000_000 / seconds / 1e6:6.2f} M events/s  ({rows} rows)",
                flush=True,
            )
    return results


async def _warm_up(lake: Lakehouse, datalake: DataLake, factory: SessionFactory) -> None:
    """A small JIT first, so "cold" measures materialisation, not first-call imports and caches."""
    process = process_info("/usr/bin/warm-up")
    await datalake.insert_process(process)
    writer, blocks = log_blocks(process, 20_000)
    await datalake.insert_stream(writer.stream_info())
    await store_blocks(datalake, lake.store, blocks)
    session = await factory.create()
    await session.prepare(f"SELECT * FROM view_instance('log_entries', '{process.process_id}')")


async def bench_codecs(lake: Lakehouse, pid: str) -> None:
    print("== Parquet codec on the 1 M-row log_entries partition ==", flush=True)
    partition = next(p for p in await list_partitions(lake.pool, "log_entries", pid) if p.file_path)
    table = pq.read_table(Path(lake.store.root) / partition.file_path).cast(LOG_ENTRIES_SCHEMA)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        for codec in ("lz4", "zstd"):
            start = time.perf_counter()
            data = encode_parquet(table, codec)
            encode = time.perf_counter() - start
            path = Path(tmp) / f"{codec}.parquet"
            path.write_bytes(data)
            from datafusion import SessionContext

            ctx = SessionContext()
            ctx.register_parquet("t", str(path))
            q = "SELECT target, level, count(*), max(length(msg)) FROM t GROUP BY target, level"
            best = min(_time_sql(ctx, q) for _ in range(5))
            print(
                f"{codec:5} {len(data) / 1e6:7.2f} MB  {len(data) / table.num_rows:5.2f} B/row"
                f"  encode {encode * 1000:6.0f} ms  aggregate {best * 1000:6.1f} ms",
                flush=True,
            )


def _time_sql(ctx: object, sql: str) -> float:
    start = time.perf_counter()
    ctx.sql(sql).to_arrow_table()  # type: ignore[attr-defined]
    return time.perf_counter() - start


async def bench_aggregate(lake: Lakehouse, datalake: DataLake, clock: Clock) -> None:
    print("== 10 M log_entries: our session vs DuckDB on the same Parquet ==", flush=True)
    process = process_info("/usr/bin/agg-bench")
    await datalake.insert_process(process)
    writer, template = log_blocks(process, 1_000_000)
    await datalake.insert_stream(writer.stream_info())
    start_minute = BASE + dt.timedelta(hours=2)
    for minute in range(10):
        clock.now = start_minute + dt.timedelta(minutes=minute, seconds=1)
        copies = [
            Block(
                uuid.uuid4(),
                b.stream_id,
                b.process_id,
                b.begin_time_ns,
                b.begin_ticks,
                b.end_time_ns,
                b.end_ticks,
                b.payload,
                b.object_offset,
                b.nb_objects,
            )
            for b in template
        ]
        await store_blocks(datalake, lake.store, copies)
    begin_ns = int(start_minute.timestamp()) * 1_000_000_000
    start = time.perf_counter()
    await materialize_partitions(
        lake, "log_entries", TimeRange(begin_ns, begin_ns + 10 * 60 * 1_000_000_000), 60 * 1_000_000_000
    )
    etl = time.perf_counter() - start
    print(f"global ETL of 10 M events into 10 partitions: {etl:.1f} s ({10 / etl:.2f} M events/s)", flush=True)
    files = [
        str(Path(lake.store.root) / p.file_path)  # type: ignore[attr-defined]
        for p in await list_partitions(lake.pool, "log_entries", "global")
        if p.file_path and p.begin_insert_ns >= begin_ns
    ]
    queries = {
        "count by level": "SELECT level, count(*) AS n FROM log_entries GROUP BY level ORDER BY level",
        "by target, time bounds": "SELECT target, count(*) AS n, min(time) AS lo, max(time) AS hi"
        " FROM log_entries GROUP BY target ORDER BY target",
        "by process+level": "SELECT process_id, level, count(*) AS n FROM log_entries"
        " GROUP BY process_id, level ORDER BY 1, 2",
        "msg LIKE filter": "SELECT count(*) AS n FROM log_entries WHERE msg LIKE '%user-7 %'",
    }
    con = duckdb.connect()
    con.execute(f"CREATE VIEW log_entries AS SELECT * FROM read_parquet([{', '.join(repr(f) for f in files)}])")
    factory = SessionFactory(lake)
    setups = []
    for _ in range(5):
        t0 = time.perf_counter()
        await factory.create()
        setups.append(time.perf_counter() - t0)
    print(
        f"session creation (partition selection in PostgreSQL + registration): {min(setups) * 1000:.1f} ms", flush=True
    )
    for name, sql in queries.items():
        ours = []
        for _ in range(5):
            session = await factory.create()
            t0 = time.perf_counter()
            table = (await session.sql(sql)).to_arrow_table()
            ours.append(time.perf_counter() - t0)
        theirs = []
        for _ in range(5):
            t0 = time.perf_counter()
            reference = con.sql(sql).to_arrow_table()
            theirs.append(time.perf_counter() - t0)
        assert table.num_rows == reference.num_rows
        a, b = min(ours), min(theirs)
        print(f"{name:24} ours {a * 1000:7.1f} ms  duckdb {b * 1000:7.1f} ms  ratio {a / b:5.2f}x", flush=True)


async def bench_lag(lake: Lakehouse, dsn: str, seconds: int, config: DaemonConfig, label: str) -> float:
    print(f"== daemon lag at 50 k events/s for {seconds} s (real clock), {label} ==", flush=True)
    pool = await create_pool(dsn, max_size=12)
    real = Lakehouse(pool, lake.store)
    datalake = DataLake(pool)
    process = process_info("/usr/bin/lag-bench")
    await datalake.insert_process(process)
    writer, template = log_blocks(process, 5_000)
    await datalake.insert_stream(writer.stream_info())
    daemon = MaintenanceDaemon(real, config)
    await daemon.start()
    inserted: list[tuple[float, int]] = []
    lags: list[float] = []
    stop = asyncio.Event()

    async def produce() -> None:
        period = 0.1  # 10 blocks of 5 000 events per second
        next_at = time.monotonic()
        end_at = next_at + seconds
        while time.monotonic() < end_at:
            b = template[0]
            block = Block(
                uuid.uuid4(),
                b.stream_id,
                b.process_id,
                b.begin_time_ns,
                b.begin_ticks,
                b.end_time_ns,
                b.end_ticks,
                b.payload,
                b.object_offset,
                b.nb_objects,
            )
            await store_blocks(datalake, lake.store, [block])
            row = await pool.fetchval("SELECT insert_time FROM blocks WHERE block_id = $1", block.block_id)
            inserted.append((time.monotonic(), int(row.timestamp() * 1_000_000) * 1000))
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        stop.set()

    async def watch() -> None:
        pending = 0
        while not (stop.is_set() and pending >= len(inserted)):
            covered = await pool.fetchval(
                "SELECT max(end_insert_time) FROM lakehouse_partitions WHERE view_set_name = 'log_entries'"
                " AND view_instance_id = 'global' AND file_path IS NOT NULL"
            )
            now = time.monotonic()
            if covered is not None:
                covered_ns = int(covered.timestamp() * 1_000_000) * 1000
                while pending < len(inserted) and inserted[pending][1] < covered_ns:
                    lags.append(now - inserted[pending][0])
                    pending += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(produce(), watch())
    await daemon.stop()
    await pool.close()
    lags.sort()
    print(
        f"blocks {len(lags)}  lag p50 {statistics.median(lags):.2f} s  p90 {lags[int(0.9 * len(lags))]:.2f} s"
        f"  p99 {lags[int(0.99 * len(lags))]:.2f} s  max {lags[-1]:.2f} s",
        flush=True,
    )
    return statistics.median(lags)


def otlp_sizes(events: int) -> tuple[float, float]:
    """OTLP protobuf bytes per log event and per span event (a span is two of our events)."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="bench"))])
    scope = InstrumentationScope(name="bench")
    records = []
    for i in range(events):
        msg = (
            f"static message {i % 32}"
            if i % 4 == 3
            else f"request {i} served in {i % 997} us for user-{i % 113} (status 200)"
        )
        records.append(
            LogRecord(
                time_unix_nano=BASE_NS + i * 1_008,
                severity_number=9,
                body=AnyValue(string_value=msg),
                attributes=[KeyValue(key="target", value=AnyValue(string_value=f"bench::log{i % 5}"))],
            )
        )
    logs = LogsData(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(scope=scope, log_records=records)])]
    )
    spans = []
    for i in range(events // 2):
        spans.append(
            Span(
                trace_id=uuid.UUID(int=i).bytes,
                span_id=(i + 1).to_bytes(8, "little"),
                parent_span_id=(i // 2 + 1).to_bytes(8, "little"),
                name=f"span_{i % 64}",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=BASE_NS + i * 80,
                end_time_unix_nano=BASE_NS + i * 80 + 40,
                attributes=[
                    KeyValue(key="code.filepath", value=AnyValue(string_value="cpu.rs")),
                    KeyValue(key="code.lineno", value=AnyValue(int_value=i % 64)),
                    KeyValue(key="code.namespace", value=AnyValue(string_value="bench::cpu")),
                ],
            )
        )
    traces = TracesData(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]
    )
    return len(logs.SerializeToString()) / events, len(traces.SerializeToString()) / events


async def bench_sizes(lake: Lakehouse, jit: dict[str, object]) -> None:
    print("== bytes per event ==", flush=True)
    log_parquet = sum(p.file_size for p in await list_partitions(lake.pool, "log_entries", str(jit["pid"])))
    span_parquet = sum(p.file_size for p in await list_partitions(lake.pool, "thread_spans", str(jit["sid"])))
    otlp_log, otlp_span = otlp_sizes(100_000)
    raw_log = int(jit["raw_log_bytes"]) / 1_000_000  # type: ignore[call-overload]
    raw_cpu = int(jit["raw_cpu_bytes"]) / 1_000_000  # type: ignore[call-overload]
    print(
        f"log events : raw blocks {raw_log:6.2f} B  parquet {log_parquet / 1e6:6.2f} B"
        f"  OTLP protobuf {otlp_log:6.2f} B",
        flush=True,
    )
    print(
        f"span events: raw blocks {raw_cpu:6.2f} B  parquet {span_parquet / 1e6:6.2f} B"
        f"  OTLP protobuf {otlp_span:6.2f} B",
        flush=True,
    )


async def _bench(admin_dsn: str, tmp: Path, lag_seconds: int) -> None:
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn, max_size=12)
    await migrate(pool)
    clock = Clock(BASE)
    store = LocalObjectStore(tmp / "objects", durable=False)
    lake = Lakehouse(pool, store, clock=clock)
    datalake = DataLake(pool, clock=clock)
    print(f"Parquet codec of partitions: {lake.settings.parquet_compression}", flush=True)
    jit = await bench_jit(lake, datalake, clock)
    await bench_codecs(lake, str(jit["pid"]))
    await bench_sizes(lake, jit)
    await bench_aggregate(lake, datalake, clock)
    await pool.close()
    lag_runs = (
        ("reference window [T-2 s, T-1 s)", DaemonConfig()),
        ("second_pass_delay_ns=0: [T-1 s, T)", DaemonConfig(second_pass_delay_ns=0)),
        (
            "sirius daemon: guarded [S-2 s, S-1 s) + provisional slices every 500 ms",
            DaemonConfig(second_pass_period_ns=500_000_000, provisional_slices=True),
        ),
        (
            "sirius up: guarded [S-1 s, S) + provisional slices every 250 ms",
            DaemonConfig(second_pass_delay_ns=0, second_pass_period_ns=250_000_000, provisional_slices=True),
        ),
    )
    medians = [await bench_lag(lake, dsn, lag_seconds, config, label) for label, config in lag_runs]
    for (label, _), median in zip(lag_runs[2:], medians[2:], strict=True):
        print(f"lag p50 ratio to the reference window, {label.split(':')[0]}: {median / medians[0]:.2f}", flush=True)
    await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--lag-seconds", type=int, default=20, help="duration of the steady-load lag run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        asyncio.run(_bench(admin_dsn, Path(tmp), args.lag_seconds))


if __name__ == "__main__":
    main()
