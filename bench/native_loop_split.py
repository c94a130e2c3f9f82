"""Native ``insert_block`` over HTTP against in-process writes: the event loop's CPU per block, alternating.

Issue 14 goal 4 compares the ingestion service's HTTP route with ``bench/ingest.py``'s in-process
writer (the same object put and block-row batch, no HTTP, no decode, no validation). This script
runs both in one uvloop process over the same ``DataLake`` and object store, rounds alternating
(order swapped every round) so a shared machine's load hits both, and reads per block:

* the loop thread's CPU (``time.thread_time``) split into user and system time
  (``getrusage(RUSAGE_THREAD)``), the figure the HTTP side's extra work lands on;
* the whole process's CPU (every thread: the object store's C writers included).

HTTP: 8 keep-alive lean clients in a separate process post fresh 16 KiB blocks to the service's
port (fast lane on). In-process: 8 coroutines ``payload_to_cbor`` + ``put_if_absent`` +
``insert_block``, as ``bench/ingest.py`` does. ``--profile http|inproc`` prints a cProfile
(``time.thread_time``) of the loop in that side's rounds, sorted by cumulative time: cProfile
inflates many small calls (3-4x here), so read its shares, not its microseconds.

Run: ``.venv/bin/python bench/native_loop_split.py [--rounds 6] [--blocks 300] [--profile http]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import resource
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _postgres import create_database, drop_database, maintenance_dsn
from fast_lane import _client, _load, _native_bodies, _post, _process_cpu
from ingest import cpu_block

from sirius.admin import run_service_loop
from sirius.collector import HttpServer, IngestionService, block_object_key
from sirius.lakehouse import ObjectStore, create_pool, migrate, open_object_store
from sirius.lakehouse._datalake import DataLake
from sirius.tracing import StreamInfo, payload_to_cbor, process_info_to_cbor, stream_info_to_cbor
from sirius.tracing._process import current_process_info
from sirius.tracing.transit._layouts import CPU

BLOCK_BYTES = 16 * 1024
WRITERS = 8


async def _in_process(lake: DataLake, store: ObjectStore, process_id: uuid.UUID, stream_id: uuid.UUID, n: int) -> None:
    """Write ``n`` fresh blocks as ``bench/ingest.py``'s in-process path does (blocks built first, untimed)."""
    queue = [cpu_block(process_id, stream_id, BLOCK_BYTES, i) for i in range(n)]

    async def writer() -> None:
        while queue:
            block = queue.pop()
            payload = payload_to_cbor(block.payload)
            await store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
            await lake.insert_block(block, len(payload))

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def _bench(admin_dsn: str, tmp: Path, args: argparse.Namespace) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn)
    await migrate(pool)
    (tmp / "objects").mkdir()
    store = open_object_store((tmp / "objects").as_uri())
    lake = DataLake(pool)
    service = IngestionService(lake, store)
    process = current_process_info({"bench": "native_loop_split"})
    stream = StreamInfo(
        process_id=process.process_id,
        stream_id=uuid.uuid4(),
        dependencies_metadata=CPU.dependencies_metadata,
        objects_metadata=CPU.objects_metadata,
        tags=CPU.tags,
    )
    server = HttpServer(service.make_app(), "127.0.0.1", 0, fast_lane=True)
    await server.start()
    clients = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    results: dict[str, list[tuple[float, float, float, float]]] = {"http": [], "inproc": []}
    n = args.blocks
    try:
        for route, body in (
            ("insert_process", process_info_to_cbor(process)),
            ("insert_stream", stream_info_to_cbor(stream)),
        ):
            await asyncio.to_thread(_post, server.port, f"/ingestion/{route}", body)
        for round_ in range(args.rounds):
            for side in ("http", "inproc") if round_ % 2 == 0 else ("inproc", "http"):
                if side == "http":
                    future = clients.submit(_native_bodies, process.process_id, stream.stream_id, n, BLOCK_BYTES)
                    await asyncio.wrap_future(clients.submit(_load, await asyncio.wrap_future(future)))
                profile = cProfile.Profile(time.thread_time) if args.profile == side else None
                loop0, proc0 = time.thread_time(), _process_cpu()
                usage0 = resource.getrusage(resource.RUSAGE_THREAD)
                if profile is not None:
                    profile.enable()
                if side == "http":
                    path = "/ingestion/insert_block"
                    await asyncio.wrap_future(clients.submit(_client, server.port, path, "application/cbor"))
                else:
                    await _in_process(lake, store, process.process_id, stream.stream_id, n)
                if profile is not None:
                    profile.disable()
                    pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
                usage = resource.getrusage(resource.RUSAGE_THREAD)
                row = (
                    (time.thread_time() - loop0) / n * 1e6,
                    (usage.ru_utime - usage0.ru_utime) / n * 1e6,
                    (usage.ru_stime - usage0.ru_stime) / n * 1e6,
                    (_process_cpu() - proc0) / n * 1e6,
                )
                results[side].append(row)
                print(
                    f"{side:>6} round {round_ + 1}: loop {row[0]:5.0f} us/block (user {row[1]:4.0f}, "
                    f"system {row[2]:4.0f}), process {row[3]:5.0f} us/block",
                    flush=True,
                )
        for side, rows in results.items():
            loop, user, system, proc = (statistics.median(r[i] for r in rows) for i in range(4))
            print(
                f"{side:>6} median: loop {loop:.0f} us/block (user {user:.0f}, system {system:.0f}), "
                f"process {proc:.0f} us/block",
                flush=True,
            )
    finally:
        clients.shutdown()
        await server.stop()
        await store.close()
        await pool.close()
        await drop_database(admin_dsn, dsn)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each side once per round")
    parser.add_argument("--blocks", type=int, default=300, help="16 KiB blocks per side per round")
    parser.add_argument("--profile", choices=("http", "inproc"), help="cProfile the loop in that side's rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        run_service_loop(_bench(admin_dsn, Path(tmp), args), "auto")


if __name__ == "__main__":
    main()
