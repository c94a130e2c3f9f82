"""Benchmark: what publishing the views as Iceberg tables adds to each maintenance daemon pass.

A lake of log blocks (``--processes`` processes, one 16 Ki-event block each per second of insert
time) is processed by second passes, then a minute pass that merges them, exactly as the daemon
runs them. Each pass is timed without publishing, then the publish that the daemon runs right
after it (``IcebergPublisher.publish``: reconcile every global view's table with its partitions)
is timed on its own, so "pass + publish" is the pass time with publishing on. An idle publish
(nothing new) is timed too: it is what every second pass costs when no data arrives.

Local store, the PostgreSQL of ``_postgres`` (the catalog lives in the run's database).

Run: ``.venv/bin/python bench/iceberg_publish.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
[--seconds 30] [--processes 2]``
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

from _postgres import create_database, drop_database, maintenance_dsn

from sirius.lakehouse import (
    DataLake,
    IcebergConfig,
    IcebergPublisher,
    Lakehouse,
    LocalObjectStore,
    MaintenanceDaemon,
    PassKind,
    block_object_key,
    create_pool,
    migrate,
)
from sirius.tracing.transit._wire_format import ProcessInfo, payload_to_cbor
from sirius.tracing.transit._writer import LogMetadata, TransitWriter

FREQ = 1_000_000_000
EVENTS_PER_BLOCK = 16_384
BASE = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=dt.UTC)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def _write_lake(lake: Lakehouse, clock: Clock, seconds: int, processes: int) -> int:
    datalake = DataLake(lake.pool, clock=clock)
    descs = [LogMetadata(f"message {i}", f"bench::t{i % 5}", 1 + i % 6, "bench", "b.rs", i) for i in range(16)]
    events = 0
    for p in range(processes):
        process = ProcessInfo(
            uuid.uuid4(), f"/usr/bin/app{p}", "bench", "Bench", "host", "linux", "EPYC", FREQ, BASE_NS, 0, None, {}
        )
        await datalake.insert_process(process)
        writer = TransitWriter(process, "log")
        await datalake.insert_stream(writer.stream_info())
        ticks = 0
        for second in range(seconds):
            for i in range(EVENTS_PER_BLOCK):
                writer.log_string(descs[i % len(descs)], f"request {i} served for user-{i % 113}", ticks=ticks)
                ticks += 1_000
            block = writer.seal()
            payload = payload_to_cbor(block.payload)
            await lake.store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
            clock.now = BASE + dt.timedelta(seconds=10 + second, milliseconds=100 + 10 * p)
            await datalake.insert_block(block, len(payload))
            events += EVENTS_PER_BLOCK
    return events


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e3:.1f} ms, max {max(values) * 1e3:.1f} ms"


async def _bench(admin_dsn: str, tmp: Path, seconds: int, processes: int) -> None:
    dsn = await create_database(admin_dsn)
    try:
        store = LocalObjectStore(tmp / "objects")
        clock = Clock(BASE)
        pool = await create_pool(dsn, max_size=10)
        await migrate(pool)
        lake = Lakehouse(pool, store, clock=clock)
        events = await _write_lake(lake, clock, seconds, processes)
        clock.now = BASE + dt.timedelta(hours=1)
        print(f"lake: {events:,} log events, {processes} process(es) x {seconds} s of insert time", flush=True)
        publisher = IcebergPublisher(IcebergConfig.resolve(dsn, store.uri))
        daemon = MaintenanceDaemon(lake)
        first = await publisher.publish(lake)  # creates the (empty) tables: a one-off
        print(f"first publish (creates {len(first.tables)} tables): {first.elapsed_seconds * 1e3:.0f} ms")
        passes, publishes, idles = [], [], []
        for second in range(10, 10 + seconds):
            started = time.perf_counter()
            await daemon.run_pass(PassKind.SECOND, BASE + dt.timedelta(seconds=second + 2, milliseconds=500))
            passes.append(time.perf_counter() - started)
            report = await publisher.publish(lake)
            assert not report.failures, report.failures
            publishes.append(report.elapsed_seconds)
            idles.append((await publisher.publish(lake)).elapsed_seconds)
        print(f"second pass alone:           {_ms(passes)}")
        share = statistics.median(publishes) / statistics.median(passes)
        print(f"its publish (new partitions): {_ms(publishes)} ({share:.0%} of the pass)")
        print(f"idle publish (nothing new):   {_ms(idles)}")
        started = time.perf_counter()
        await daemon.run_pass(PassKind.MINUTE, BASE + dt.timedelta(seconds=150))
        minute = time.perf_counter() - started
        report = await publisher.publish(lake)
        log = report.tables["log_entries"]
        print(
            f"minute pass (merge) alone: {minute * 1e3:.0f} ms; its publish: {report.elapsed_seconds * 1e3:.0f} ms"
            f" (log_entries: +{log.added} -{log.removed} files)"
        )
        await pool.close()
    finally:
        await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of insert time (second passes)")
    parser.add_argument("--processes", type=int, default=2, help="processes, one 16 Ki-event log block per second each")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="sirius-bench-iceberg-") as tmp,
        maintenance_dsn(args.dsn, Path(tmp)) as dsn,
    ):
        asyncio.run(_bench(dsn, Path(tmp), args.seconds, args.processes))


if __name__ == "__main__":
    main()
