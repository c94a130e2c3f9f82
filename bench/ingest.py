"""Ingestion throughput: HTTP service with 8 concurrent clients vs. the same stores written in-process.

For 16 KiB and 1 MiB blocks it sends N valid transit blocks through ``POST /ingestion/insert_block``
(8 keep-alive client threads in a separate process, ``_lean_http_client.py``) and, as the baseline,
writes the same blocks straight into the object store and PostgreSQL from the process (8
concurrent tasks). The ratio is the service's
overhead: HTTP, CBOR decoding, payload validation and the handler.

``--replicas 1,2`` compares one and two ``sirius ingest`` processes over one database and store
(``_ingest_replicas.py``): the same client load spread over the replicas.

``--rss`` measures memory instead (``_ingest_rss.py``): a flood of large blocks against
``sirius ingest`` in its own process, RSS growth per byte admitted in flight, bounded budget vs.
unbounded baseline.

Run: ``.venv/bin/python bench/ingest.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--rss]``
(default: the local PostgreSQL when it answers, else an embedded one).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _lean_http_client import post_all
from _postgres import create_database, drop_database, maintenance_dsn

from sirius.admin import event_loop_name, run_service_loop
from sirius.admin._stack import Stack, StackOptions
from sirius.collector import HttpServer, IngestionService, block_object_key
from sirius.lakehouse import open_object_store
from sirius.lakehouse._datalake import DataLake
from sirius.tracing import (
    Block,
    BlockPayload,
    StreamInfo,
    block_to_cbor,
    compress_queue,
    payload_to_cbor,
    process_info_to_cbor,
    stream_info_to_cbor,
)
from sirius.tracing._process import current_process_info
from sirius.tracing.transit._layouts import CPU

CLIENTS = 8


def cpu_block(process_id: uuid.UUID, stream_id: uuid.UUID, payload_bytes: int, index: int) -> Block:
    """A valid ``cpu`` block of about ``payload_bytes``: end-span events with random bodies (LZ4 cannot shrink them)."""
    n_events = max(1, payload_bytes // 17)  # 1 type byte + 16-byte EndThreadSpanEvent body
    events = np.frombuffer(os.urandom(17 * n_events), np.uint8).reshape(n_events, 17).copy()
    events[:, 0] = 1
    return Block(
        block_id=uuid.uuid4(),
        stream_id=stream_id,
        process_id=process_id,
        begin_time_ns=time.time_ns(),
        begin_ticks=index,
        end_time_ns=time.time_ns(),
        end_ticks=index + 1,
        payload=BlockPayload(compress_queue(b""), compress_queue(events.tobytes())),
        object_offset=index * n_events,
        nb_objects=n_events,
    )


def _blocks(process_id: uuid.UUID, stream_id: uuid.UUID, payload_bytes: int, count: int) -> list[Block]:
    return [cpu_block(process_id, stream_id, payload_bytes, i) for i in range(count)]


_BODIES: list[bytes] = []
"""In the client process: the bodies of the next run, sent ahead so that pickling them is not timed."""


def _load_bodies(bodies: list[bytes]) -> None:
    _BODIES[:] = bodies


def _http_run(url: str, client: str = "lean") -> tuple[float, float]:
    """POST the loaded bodies from CLIENTS keep-alive threads; (seconds, client CPU seconds)."""
    return post_all(url, "/ingestion/insert_block", _BODIES, CLIENTS, client)


def _cpu_seconds() -> float:
    """CPU time of this process so far, every thread (user + system)."""
    times = os.times()
    return times.user + times.system


async def _in_process_run(lake: DataLake, store_uri: str, blocks: list[Block]) -> float:
    store = open_object_store(store_uri)
    queue = list(blocks)

    async def worker() -> None:
        while queue:
            block = queue.pop()
            payload = payload_to_cbor(block.payload)
            await store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
            await lake.insert_block(block, len(payload))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - start
    await store.close()
    return elapsed


def _post(url: str, path: str, body: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", path, body=body)
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--small-count", type=int, default=2000, help="16 KiB blocks per run")
    parser.add_argument("--large-count", type=int, default=96, help="1 MiB blocks per run")
    parser.add_argument(
        "--client",
        choices=("lean", "stdlib"),
        default="lean",
        help="HTTP client of the load generator: lean (_lean_http_client.py) or http.client (before 2026-12-07)",
    )
    parser.add_argument(
        "--daemon", action="store_true", help="run the maintenance daemon in the service's process (as sirius up)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved HTTP / in-process rounds per block size")
    parser.add_argument(
        "--compare-fast-lane",
        action="store_true",
        help="each round also posts to the same routes behind aiohttp alone (HTTP-aio); HTTP is the fast lane "
        "unless SIRIUS_HTTP_FAST_LANE=0",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop of the process (both paths): as sirius runs services (auto: uvloop when installed)",
    )
    parser.add_argument("--rss", action="store_true", help="measure RSS per admitted byte instead (_ingest_rss.py)")
    parser.add_argument("--rss-clients", type=int, default=64, help="--rss: concurrent clients, one block each")
    parser.add_argument("--rss-block-mib", type=int, default=16, help="--rss: block size")
    parser.add_argument("--rss-budget-mib", type=int, default=256, help="--rss: in-flight byte budget")
    parser.add_argument(
        "--replicas",
        help="compare sirius ingest processes over one database and store instead, e.g. 1,2 (_ingest_replicas.py)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        if args.replicas:
            from _ingest_replicas import run_replicas_bench

            counts = [int(n) for n in args.replicas.split(",")]
            sizes = [("16 KiB", 16 * 1024, args.small_count), ("1 MiB", 1024 * 1024, args.large_count)]
            asyncio.run(run_replicas_bench(admin_dsn, Path(tmp), counts, sizes, cpu_block))
            return
        if args.rss:
            from _ingest_rss import run_rss_bench

            flood = (args.rss_clients, args.rss_block_mib, args.rss_budget_mib)
            asyncio.run(run_rss_bench(admin_dsn, Path(tmp), flood, cpu_block))
            return
        run_service_loop(_bench(admin_dsn, Path(tmp), args), args.loop)


async def _round(
    stack: Stack,
    url: str,
    pool: ProcessPoolExecutor,
    *,
    process_id: uuid.UUID,
    stream_id: uuid.UUID,
    args: argparse.Namespace,
    label: str,
    size: int,
    count: int,
    aio_url: str | None = None,
) -> float:
    """One HTTP and one in-process run of ``count`` fresh blocks; print both, return HTTP / in-process throughput.

    With ``aio_url`` (``--compare-fast-lane``) an HTTP run against aiohttp alone comes first (``HTTP-aio``).
    """
    if aio_url is not None:
        aio_blocks = _blocks(process_id, stream_id, size, count)
        await _http_round(pool, aio_url, args, label=label, path="HTTP-aio", blocks=aio_blocks)
    http_blocks = _blocks(process_id, stream_id, size, count)
    t_http = await _http_round(pool, url, args, label=label, path="HTTP", blocks=http_blocks)
    direct_blocks = _blocks(process_id, stream_id, size, count)
    megabytes = sum(len(payload_to_cbor(b.payload)) for b in direct_blocks) / 1e6
    assert stack.lake is not None
    cpu_start = _cpu_seconds()
    t_direct = await _in_process_run(stack.lake, Path(args.direct_objects).as_uri(), direct_blocks)
    direct_cpu = _cpu_seconds() - cpu_start
    # CPU per block (PostgreSQL's own excluded, the same statement on both paths): steadier than
    # throughput when other work shares the cores.
    print(
        f"{label:>10} {'in-proc':>10} {count / t_direct:>10.0f} {megabytes / t_direct:>8.1f}  {t_http / t_direct:.2f}x"
        f"  CPU/block: {direct_cpu / count * 1e6:.0f} us"
    )
    return t_direct / t_http


async def _http_round(
    pool: ProcessPoolExecutor, url: str, args: argparse.Namespace, *, label: str, path: str, blocks: list[Block]
) -> float:
    """POST ``blocks`` to ``url``; print throughput and CPU per block; return the seconds taken."""
    bodies = [block_to_cbor(b) for b in blocks]
    megabytes = sum(len(payload_to_cbor(b.payload)) for b in blocks) / 1e6
    await asyncio.wrap_future(pool.submit(_load_bodies, bodies))
    cpu_start = _cpu_seconds()
    t_http, client_cpu = await asyncio.wrap_future(pool.submit(_http_run, url, args.client))
    service_cpu = _cpu_seconds() - cpu_start
    count = len(blocks)
    # CPU per block (PostgreSQL's own excluded, the same statement on both paths): steadier than
    # throughput when other work shares the cores.
    print(
        f"{label:>10} {path:>10} {count / t_http:>10.0f} {megabytes / t_http:>8.1f}"
        f"  CPU/block: service {service_cpu / count * 1e6:.0f} us + client {client_cpu / count * 1e6:.0f} us"
    )
    return t_http


async def _bench(admin_dsn: str, tmp: Path, args: argparse.Namespace) -> None:
    dsn = await create_database(admin_dsn)
    http_objects = tmp / "http-objects"
    direct_objects = tmp / "direct-objects"
    http_objects.mkdir()
    direct_objects.mkdir()
    args.direct_objects = str(direct_objects)
    stack = Stack(
        StackOptions(
            data_dir=tmp,
            # every port free-picked: the other services must not collide with a running stack
            ingestion_port=0,
            otlp_grpc_port=0,
            otlp_http_port=0,
            flight_port=0,
            gateway_port=0,
            sql_connection_string=dsn,
            object_store_uri=http_objects.as_uri(),
            # As `sirius ingest` runs: no maintenance daemon (live ETL every 250 ms) in the process
            # under test, unless asked for (the rows before 2026-12-07 ran with it).
            daemon=args.daemon,
        )
    )
    endpoints = await stack.start()
    url = endpoints[0].url
    aio_server = aio_url = None
    if args.compare_fast_lane:  # the same routes over the same lake and store, behind aiohttp alone
        assert stack.lake is not None
        aio_service = IngestionService(stack.lake, open_object_store(http_objects.as_uri()))
        aio_server = HttpServer(aio_service.make_app(), "127.0.0.1", 0, fast_lane=False)
        aio_url = f"http://127.0.0.1:{await aio_server.start()}"
    try:
        process = current_process_info({"bench": "ingest"})
        stream = StreamInfo(
            process_id=process.process_id,
            stream_id=uuid.uuid4(),
            dependencies_metadata=CPU.dependencies_metadata,
            objects_metadata=CPU.objects_metadata,
            tags=CPU.tags,
        )
        await asyncio.to_thread(_post, url, "/ingestion/insert_process", process_info_to_cbor(process))
        await asyncio.to_thread(_post, url, "/ingestion/insert_stream", stream_info_to_cbor(stream))
        print(
            f"{'block size':>10} {'path':>10} {'blocks/s':>10} {'MB/s':>8}  ratio (in-process / HTTP)"
            f"; {args.client} client, {event_loop_name(asyncio.get_running_loop())} loop"
        )
        # The clients run in another process so they do not compete with the service for the GIL.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            for label, size, count in (
                ("16 KiB", 16 * 1024, args.small_count),
                ("1 MiB", 1024 * 1024, args.large_count),
            ):
                ratios = []
                for _ in range(args.repeat):  # interleaved: a load change on a shared machine hits both paths
                    ratios.append(
                        await _round(
                            stack,
                            url,
                            pool,
                            process_id=process.process_id,
                            stream_id=stream.stream_id,
                            args=args,
                            label=label,
                            size=size,
                            count=count,
                            aio_url=aio_url,
                        )
                    )
                if args.repeat > 1:
                    print(
                        f"{label:>10} median HTTP / in-process throughput over {args.repeat} rounds:"
                        f" {statistics.median(ratios):.2f}"
                    )
    finally:
        if aio_server is not None:
            await aio_server.stop()
        await stack.stop()
        await drop_database(admin_dsn, dsn)


if __name__ == "__main__":
    main()
