"""``bench/ingest.py --rss``: server RSS per byte admitted in flight, under a flood of large blocks.

``sirius ingest`` runs in its own process (its memory is read from ``/proc/<pid>/status``). After a
warm-up block the peak is reset (``/proc/<pid>/clear_refs``), N client threads each POST one
large block to ``/ingestion/insert_block`` at once, retrying a 429 immediately (the harshest
client), and the peak (``VmHWM``) minus the RSS before the flood is the flood's growth.

Two runs, same flood, fresh database and object store each:

* baseline, unbounded: in-flight limits far above the flood, so every request is admitted at
  once; growth / bytes in flight is the memory each request costs per byte of its body;
* bounded: the in-flight byte budget given (default 256 MiB, the service's default); growth /
  bytes admitted in flight (at most ``budget // body`` bodies) is the bound's figure.

The ratio printed is baseline growth / bounded growth.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from _postgres import create_database, drop_database

from sirius.tracing import Block, StreamInfo, block_to_cbor, process_info_to_cbor, stream_info_to_cbor
from sirius.tracing._process import current_process_info
from sirius.tracing.transit._layouts import CPU

__all__ = ["run_rss_bench"]

MIB = 1024 * 1024
_UNBOUNDED = 1 << 40

BlockFactory = Callable[[uuid.UUID, uuid.UUID, int, int], Block]


@dataclass
class _Run:
    label: str
    budget: int
    bodies: int = 0
    offered: int = 0
    admitted_peak: int = 0
    growth: int = 0
    refusals: int = 0
    seconds: float = 0.0
    statuses: set[int] = field(default_factory=set)


def _memory(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) * 1024
    return values


def _client(url: str, body: bytes, out: list[int]) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        while True:
            conn.request("POST", "/ingestion/insert_block", body=body)
            response = conn.getresponse()
            response.read()
            out.append(response.status)
            if response.status != 429:
                return
    finally:
        conn.close()


def _post(url: str, route: str, body: bytes) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("POST", f"/ingestion/{route}", body=body)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{route}: HTTP {response.status}")
    finally:
        conn.close()


async def _flood(admin_dsn: str, tmp: Path, run: _Run, flood: tuple[int, int], make_block: BlockFactory) -> None:
    clients, block_mib = flood
    dsn = await create_database(admin_dsn)
    objects = tmp / f"objects-{run.label}"
    objects.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIRIUS_INGESTION_")}
    env["SIRIUS_INGESTION_MAX_INFLIGHT_BYTES"] = str(run.budget)
    env["SIRIUS_INGESTION_MAX_INFLIGHT_REQUESTS"] = str(max(64, clients))
    command = [sys.executable, "-m", "sirius.admin.cli", "ingest", "--host", "127.0.0.1", "--port", "0"]
    command += ["--sql-connection-string", dsn, "--object-store-uri", objects.as_uri()]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        process = current_process_info({"bench": "ingest-rss"})
        stream = StreamInfo(process.process_id, uuid.uuid4(), CPU.dependencies_metadata, CPU.objects_metadata, CPU.tags)
        _post(url, "insert_process", process_info_to_cbor(process))
        _post(url, "insert_stream", stream_info_to_cbor(stream))
        _post(url, "insert_block", block_to_cbor(make_block(process.process_id, stream.stream_id, block_mib * MIB, 0)))
        bodies = [
            block_to_cbor(make_block(process.process_id, stream.stream_id, block_mib * MIB, i))
            for i in range(1, clients + 1)
        ]
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _memory(server.pid)["VmRSS"]
        statuses: list[list[int]] = [[] for _ in bodies]
        threads = [threading.Thread(target=_client, args=(url, b, s)) for b, s in zip(bodies, statuses, strict=True)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run.seconds = time.perf_counter() - start
        run.growth = _memory(server.pid)["VmHWM"] - before
        run.bodies = len(bodies)
        run.offered = sum(len(b) for b in bodies)
        fit = max(1, run.budget // min(len(b) for b in bodies))
        run.admitted_peak = min(len(bodies), fit) * max(len(b) for b in bodies)
        run.statuses = {s for per_client in statuses for s in per_client}
        run.refusals = sum(per_client.count(429) for per_client in statuses)
    finally:
        server.terminate()
        server.wait(60)
        await drop_database(admin_dsn, dsn)


async def run_rss_bench(admin_dsn: str, tmp: Path, flood: tuple[int, int, int], make_block: BlockFactory) -> None:
    """Run the unbounded baseline and the bounded flood; print RSS growth per admitted byte and the ratio."""
    clients, block_mib, budget_mib = flood
    runs = [_Run("unbounded", _UNBOUNDED), _Run("bounded", budget_mib * MIB)]
    for run in runs:
        await _flood(admin_dsn, tmp, run, (clients, block_mib), make_block)
    print(f"{clients} clients x {block_mib} MiB blocks to /ingestion/insert_block, sirius ingest in its own process")
    header = f"{'run':>10} {'budget':>9} {'offered':>9} {'admitted':>9} {'RSS growth':>11} {'growth/adm':>10}"
    print(f"{header} {'429s':>6} {'seconds':>8}  statuses")
    for run in runs:
        budget = "none" if run.budget == _UNBOUNDED else f"{run.budget / MIB:.0f} MiB"
        print(
            f"{run.label:>10} {budget:>9} {run.offered / MIB:>5.0f} MiB {run.admitted_peak / MIB:>5.0f} MiB"
            f" {run.growth / MIB:>7.0f} MiB {run.growth / run.admitted_peak:>9.2f}x"
            f" {run.refusals:>6} {run.seconds:>8.2f}  {sorted(run.statuses)}"
        )
    baseline, bounded = runs
    print(f"ratio (unbounded growth / bounded growth): {baseline.growth / bounded.growth:.2f}x")
