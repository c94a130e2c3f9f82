"""Benchmark: what a second (standby) maintenance daemon holds in PostgreSQL while the first works.

Two ``MaintenanceDaemon`` objects, each with its own connection pool (``application_name``
``daemon-a`` / ``daemon-b``, as two processes would have), run the same second passes at the
same time over a lake of log blocks, then the same minute pass. A sampler reads
``pg_stat_activity`` every few milliseconds and records, per daemon, its connections that are
not idle (running a statement or idle in a transaction) and those waiting on a lock.

Without the pass lease both daemons enter every pass; the second one blocks on each
partition's advisory lock inside an open transaction, holding a pooled connection while the
first computes. With the lease (``pg_try_advisory_lock`` per pass kind) the second skips the
pass at once and holds nothing.

Run: ``.venv/bin/python bench/daemon_standby.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
[--seconds 12] [--blocks-per-second 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from _postgres import create_database, drop_database, maintenance_dsn

from sirius.lakehouse import DataLake, Lakehouse, LocalObjectStore, MaintenanceDaemon, PassKind, create_pool, migrate
from sirius.lakehouse._block_source import block_object_key
from sirius.tracing.transit._wire_format import ProcessInfo, payload_to_cbor
from sirius.tracing.transit._writer import LogMetadata, TransitWriter

FREQ = 1_000_000_000
EVENTS_PER_BLOCK = 16_384
BASE = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=dt.UTC)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000
APPS = ("daemon-a", "daemon-b")


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Usage:
    """Samples of one daemon's connections."""

    busy: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    open: list[int] = field(default_factory=list)

    def line(self, name: str) -> str:
        n = max(len(self.busy), 1)
        return (
            f"{name}: open {max(self.open, default=0)} max | not idle {sum(self.busy) / n:.2f} mean, "
            f"{max(self.busy, default=0)} max | waiting on a lock {sum(self.waiting) / n:.2f} mean, "
            f"{max(self.waiting, default=0)} max | samples with any waiting "
            f"{sum(1 for w in self.waiting if w) / n:.0%}"
        )


async def _write_lake(lake: Lakehouse, clock: Clock, seconds: int, blocks_per_second: int) -> int:
    datalake = DataLake(lake.pool, clock=clock)
    descs = [LogMetadata(f"message {i}", f"bench::t{i % 5}", 1 + i % 6, "bench", "b.rs", i) for i in range(16)]
    events = 0
    for p in range(blocks_per_second):
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


async def _sample(dsn: str, usage: dict[str, Usage], done: asyncio.Event) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "bench-sampler"})
    try:
        while not done.is_set():
            rows = await conn.fetch(
                "SELECT application_name AS app, count(*) AS open,"
                " count(*) FILTER (WHERE state <> 'idle') AS busy,"
                " count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting"
                " FROM pg_stat_activity WHERE datname = current_database() AND application_name = ANY($1)"
                " GROUP BY application_name",
                list(APPS),
            )
            seen = {r["app"]: r for r in rows}
            for app in APPS:
                row = seen.get(app)
                usage[app].open.append(row["open"] if row else 0)
                usage[app].busy.append(row["busy"] if row else 0)
                usage[app].waiting.append(row["waiting"] if row else 0)
            await asyncio.sleep(0.005)  # sampling period, not synchronisation
    finally:
        await conn.close()


async def _bench(admin_dsn: str, tmp: Path, seconds: int, blocks_per_second: int) -> None:
    dsn = await create_database(admin_dsn)
    try:
        store = LocalObjectStore(tmp / "objects")
        clock = Clock(BASE)
        pools = [await create_pool(dsn, max_size=10, application_name=app) for app in APPS]
        await migrate(pools[0])
        lakes = [Lakehouse(pool, store, clock=clock) for pool in pools]
        events = await _write_lake(lakes[0], clock, seconds, blocks_per_second)
        clock.now = BASE + dt.timedelta(hours=1)
        print(f"lake: {events:,} log events in {seconds} seconds of insert time", flush=True)
        daemons = [MaintenanceDaemon(lake) for lake in lakes]
        usage = {app: Usage() for app in APPS}
        done = asyncio.Event()
        sampler = asyncio.create_task(_sample(dsn, usage, done))
        started = time.perf_counter()
        skipped = [0, 0]
        for second in range(10, 10 + seconds):
            scheduled = BASE + dt.timedelta(seconds=second + 2, milliseconds=500)
            reports = await asyncio.gather(*(d.run_pass(PassKind.SECOND, scheduled) for d in daemons))
            for i, report in enumerate(reports):
                skipped[i] += report.skipped
        reports = await asyncio.gather(
            *(d.run_pass(PassKind.MINUTE, BASE + dt.timedelta(seconds=150)) for d in daemons)
        )
        for i, report in enumerate(reports):
            skipped[i] += report.skipped
        elapsed = time.perf_counter() - started
        done.set()
        await sampler
        written = [lake.stats.partitions_written for lake in lakes]
        print(f"{seconds} second passes + 1 minute pass on both daemons: {elapsed:.2f} s", flush=True)
        print(f"partitions written: a {written[0]}, b {written[1]}; passes skipped: a {skipped[0]}, b {skipped[1]}")
        for app in APPS:
            print(usage[app].line(app), flush=True)
        for pool in pools:
            await pool.close()
    finally:
        await drop_database(admin_dsn, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--seconds", type=int, default=12, help="seconds of insert time (second passes)")
    parser.add_argument("--blocks-per-second", type=int, default=4, help="16 Ki-event log blocks per second")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="sirius-bench-standby-") as tmp,
        maintenance_dsn(args.dsn, Path(tmp)) as dsn,
    ):
        asyncio.run(_bench(dsn, Path(tmp), args.seconds, args.blocks_per_second))


if __name__ == "__main__":
    main()
