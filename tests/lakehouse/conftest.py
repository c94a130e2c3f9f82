"""Lakehouse test harness: a real PostgreSQL database, a local or moto S3 store, a fake clock.

``lake_env`` yields a ``LakeEnv`` factory running a scenario coroutine against a fresh database
and store; the scenario gets a ``Harness`` that registers processes and streams and inserts
blocks written by the transit writer at the fake clock's time (``insert_time``), exactly as the
ingestion service stores them (payload object first, then the row).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sirius.lakehouse import (
    DataLake,
    Lakehouse,
    LocalObjectStore,
    ObjectStore,
    create_pool,
    migrate,
    open_object_store,
)
from sirius.lakehouse._block_source import block_object_key
from sirius.tracing.transit._wire_format import Block, ProcessInfo, payload_to_cbor
from sirius.tracing.transit._writer import TransitWriter

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
T0_NS = 1_772_445_600_000_000_000
START_TICKS = 5_000
FREQ = 1_000_000_000  # one tick per nanosecond: event time = T0 + (ticks - START_TICKS) ns


class FakeClock:
    """A settable clock; ``advance`` moves it forward."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now

    def set(self, now: dt.datetime) -> None:
        self.now = now


def ticks(offset_ns: int) -> int:
    """Absolute ticks of the instant ``T0 + offset_ns``."""
    return START_TICKS + offset_ns


class Harness:
    """Writes processes, streams and blocks; holds the lakehouse under test.

    Constants for the scenarios: ``T0``/``T0_NS`` (the processes' start), ``ticks(offset_ns)``
    (absolute ticks of ``T0 + offset_ns``; one tick per nanosecond).
    """

    T0 = T0
    T0_NS = T0_NS
    START_TICKS = START_TICKS
    FakeClock = FakeClock
    ticks = staticmethod(ticks)

    def __init__(self, lake: Lakehouse, clock: FakeClock) -> None:
        self.lake = lake
        self.clock = clock
        self.datalake = DataLake(lake.pool, clock=clock)

    @property
    def store(self) -> ObjectStore:
        return self.lake.store

    async def process(self, **overrides: Any) -> ProcessInfo:
        fields: dict[str, Any] = {
            "process_id": uuid.uuid4(),
            "exe": "/usr/bin/app",
            "username": "alice",
            "realname": "Alice",
            "computer": "host-1",
            "distro": "Debian 12",
            "cpu_brand": "EPYC",
            "tsc_frequency": FREQ,
            "start_time_ns": T0_NS,
            "start_ticks": START_TICKS,
            "properties": {"env": "test", "version": "1.0"},
        }
        fields.update(overrides)
        info = ProcessInfo(**fields)
        await self.datalake.insert_process(info)
        return info

    async def stream(self, process: ProcessInfo, kind: str, **properties: str) -> TransitWriter:
        writer = TransitWriter(process, kind, properties=properties or None)
        await self.datalake.insert_stream(writer.stream_info())
        return writer

    async def insert(self, block: Block) -> Block:
        """Store the payload, then the row (insert_time = the clock)."""
        payload = payload_to_cbor(block.payload)
        await self.store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
        await self.datalake.insert_block(block, len(payload))
        return block

    async def seal(self, writer: TransitWriter) -> Block:
        return await self.insert(writer.seal())

    async def sample(self, **options: Any) -> Sample:
        """See ``write_sample``."""
        return await write_sample(self, **options)


LakeEnv = Callable[[Callable[[Harness], Awaitable[Any]]], Any]


def _store_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ObjectStore:
    if kind == "local":
        return LocalObjectStore(tmp_path / "objects", durable=False)
    uri = request.getfixturevalue(f"{kind}_env")  # s3_env (moto) or gcs_env (fake-gcs-server)
    return open_object_store(uri)


@pytest.fixture(params=["local", "s3", "gcs"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Run a test against the local store, moto S3 and the GCS emulator."""
    return request.param


def _make_env(kind: str, pg_dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> LakeEnv:
    def run(scenario: Callable[[Harness], Awaitable[Any]], *, clock: FakeClock | None = None) -> Any:
        async def main() -> Any:
            pool = await create_pool(pg_dsn, max_size=8)
            store = _store_for(kind, tmp_path, request)
            try:
                await migrate(pool)
                fake = clock or FakeClock(T0)
                lake = Lakehouse(pool, store, clock=fake)
                return await scenario(Harness(lake, fake))
            finally:
                await store.close()
                await pool.close()

        return asyncio.run(main())

    return run


@pytest.fixture
def lake_env(store_kind: str, pg_dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> LakeEnv:
    """Run a scenario on the local store, moto S3 and the GCS emulator (parametrised)."""
    return _make_env(store_kind, pg_dsn, tmp_path, request)


@pytest.fixture
def local_lake_env(pg_dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> LakeEnv:
    """Run a scenario on the local store only."""
    return _make_env("local", pg_dsn, tmp_path, request)


class Sample:
    """The ids of a process written by ``Harness.sample``."""

    def __init__(self, process: ProcessInfo, log: TransitWriter, metrics: TransitWriter, cpu: TransitWriter) -> None:
        self.process = process
        self.process_id = str(process.process_id)
        self.log = log
        self.metrics = metrics
        self.cpu = cpu
        self.blocks: list[Block] = []


async def write_sample(h: Harness, *, at_second: float = 10.25, **process_fields: Any) -> Sample:
    """One process with a log, a metrics and a cpu stream, one block each, inserted at T0 + ``at_second``.

    Events (offsets from T0):
      log: static "static message" (app::mod, info) @1 ms; "dynamic" @2 ms; tagged "tagged"
           {target: over, level: warn, k: v} @3 ms; interop static (error, interop::t) @4 ms;
           interop dyn (debug, interop::t2) @5 ms.
      metrics: latency 2e9 ticks (→ 2.0 seconds) @1 µs; temp 21.5 C @2 µs; load 0.5 % {core: 1} @3 µs.
      cpu: outer [100, 600] ns ⊃ inner [200, 300], named [400, 500]; async span 7 [700, 800] ns.
    """
    from sirius.tracing.transit._writer import LogMetadata, MetricMetadata, SpanLocation, SpanMetadata

    p = await h.process(**process_fields)
    log = await h.stream(p, "log")
    desc = LogMetadata("static message", "app::mod", level=4)
    log.log_static(desc, ticks=ticks(1_000_000))
    log.log_string(desc, "dynamic", ticks=ticks(2_000_000))
    log.log_tagged(desc, {"target": "over", "level": "warn", "k": "v"}, "tagged", ticks=ticks(3_000_000))
    log.log_static_interop(2, "interop::t", "interop msg", ticks=ticks(4_000_000))
    log.log_string_interop(5, "interop::t2", "interop dyn", ticks=ticks(5_000_000))
    metrics = await h.stream(p, "metrics")
    metrics.metric_int(MetricMetadata("latency", "ticks", "app"), 2_000_000_000, ticks=ticks(1_000))
    metrics.metric_float(MetricMetadata("temp", "C", "app"), 21.5, ticks=ticks(2_000))
    metrics.metric_tagged_float(MetricMetadata("load", "%", "app"), {"core": "1"}, 0.5, ticks=ticks(3_000))
    cpu = await h.stream(p, "cpu", **{"thread-name": "main", "thread-id": "1"})
    outer = SpanMetadata("outer", "t", file="f.py", line=10)
    inner = SpanMetadata("inner", "t", file="f.py", line=20)
    where = SpanLocation("t", file="g.py", line=5)
    cpu.begin_thread_span(outer, ticks=ticks(100))
    cpu.begin_thread_span(inner, ticks=ticks(200))
    cpu.end_thread_span(inner, ticks=ticks(300))
    cpu.begin_thread_named_span(where, "named", ticks=ticks(400))
    cpu.end_thread_named_span(where, "named", ticks=ticks(500))
    cpu.end_thread_span(outer, ticks=ticks(600))
    cpu.begin_async_span(outer, 7, 3, depth=1, ticks=ticks(700))
    cpu.end_async_span(outer, 7, 3, depth=1, ticks=ticks(800))
    sample = Sample(p, log, metrics, cpu)
    h.clock.set(T0 + dt.timedelta(seconds=at_second))
    for writer in (log, metrics, cpu):
        sample.blocks.append(await h.seal(writer))
    return sample


def spark_micros(table: pa.Table) -> pa.Table:
    """DataFusion's timestamps truncated to Spark's microseconds (Sail's answers carry microseconds)."""
    columns = [
        c.cast(pa.timestamp("us", tz=c.type.tz), safe=False) if pa.types.is_timestamp(c.type) else c
        for c in table.columns
    ]
    return pa.table(columns, names=table.column_names)
