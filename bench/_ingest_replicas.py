"""``bench/ingest.py --replicas 1,2``: throughput of one vs several ``sirius ingest`` processes.

For each replica count, a fresh database and local object store; that many ``sirius ingest``
processes run against them (nothing shared but the two), and the same client load as the main
benchmark (8 keep-alive client threads in a separate process, valid ``cpu`` blocks of 16 KiB and
1 MiB) is spread round-robin over the replicas: client ``i`` talks to replica ``i % n``, as a
load balancer with sticky connections would. The figure is blocks/s and MB/s per replica count;
the ratio is against one replica.

On a machine with few cores the replicas, the clients and PostgreSQL compete for the same CPUs:
the scale curve measured there says how much one more process buys on that machine, not on a
cluster.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from _lean_http_client import post_spread
from _postgres import create_database, drop_database

from sirius.tracing import (
    Block,
    StreamInfo,
    block_to_cbor,
    current_process_info,
    process_info_to_cbor,
    stream_info_to_cbor,
)
from sirius.tracing.transit import CPU

__all__ = ["run_replicas_bench"]

CLIENTS = 8

BlockFactory = Callable[[uuid.UUID, uuid.UUID, int, int], Block]


@contextmanager
def _replicas(n: int, dsn: str, objects: Path) -> Iterator[list[str]]:
    """Start ``n`` ``sirius ingest`` processes on free loopback ports; yield their URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}
    env |= {
        "MICROMEGAS_SQL_CONNECTION_STRING": dsn,
        "MICROMEGAS_OBJECT_STORE_URI": objects.as_uri(),
        "SIRIUS_SELF_TELEMETRY": "0",
    }
    argv = [sys.executable, "-m", "sirius.admin.cli", "ingest", "--host", "127.0.0.1", "--port", "0"]
    procs: list[subprocess.Popen[str]] = []
    urls = []
    try:
        for _ in range(n):
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(proc)
            assert proc.stdout is not None
            for line in proc.stdout:  # each line arrives when printed
                words = line.split()
                if words[:1] == ["ingestion"]:
                    urls.append(words[1])
                    break
            else:
                raise SystemExit(f"sirius ingest ended before listening (exit {proc.wait()})")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _post(url: str, path: str, body: bytes) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/cbor"})
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"{path}: HTTP {response.status}")


def _http_run(urls: list[str], bodies: list[bytes]) -> float:
    """Post ``bodies`` from CLIENTS keep-alive threads, client ``i`` to ``urls[i % len(urls)]``; seconds taken.

    With ``http.client``, as these figures were first measured (``bench/ingest.py --client`` is not applied here).
    """
    return post_spread(urls, "/ingestion/insert_block", bodies, CLIENTS, "stdlib")[0]


async def run_replicas_bench(
    admin_dsn: str, tmp: Path, replica_counts: list[int], sizes: list[tuple[str, int, int]], make_block: BlockFactory
) -> None:
    """Print blocks/s and MB/s of each block size for each replica count."""
    print(f"{'replicas':>8} {'block size':>10} {'blocks/s':>10} {'MB/s':>8}  vs 1 replica", flush=True)
    baseline: dict[str, float] = {}
    for run, n in enumerate(replica_counts):
        dsn = await create_database(admin_dsn)
        objects = tmp / f"objects-{run}"
        objects.mkdir()
        try:
            with _replicas(n, dsn, objects) as urls:
                process = current_process_info({"bench": "ingest-replicas"})
                stream = StreamInfo(
                    process_id=process.process_id,
                    stream_id=uuid.uuid4(),
                    dependencies_metadata=CPU.dependencies_metadata,
                    objects_metadata=CPU.objects_metadata,
                    tags=CPU.tags,
                )
                _post(urls[0], "/ingestion/insert_process", process_info_to_cbor(process))
                _post(urls[0], "/ingestion/insert_stream", stream_info_to_cbor(stream))
                for label, size, count in sizes:
                    blocks = [make_block(process.process_id, stream.stream_id, size, i) for i in range(count)]
                    bodies = [block_to_cbor(b) for b in blocks]
                    megabytes = sum(len(b) for b in bodies) / 1e6
                    # The clients run in another process so they do not compete with us for the GIL.
                    context = multiprocessing.get_context("spawn")
                    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                        seconds = pool.submit(_http_run, urls, bodies).result()
                    rate = count / seconds
                    ratio = rate / baseline.setdefault(label, rate)
                    print(f"{n:>8} {label:>10} {rate:>10.0f} {megabytes / seconds:>8.1f}  {ratio:.2f}x", flush=True)
        finally:
            await drop_database(admin_dsn, dsn)
