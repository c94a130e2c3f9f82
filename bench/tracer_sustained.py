"""Benchmark: sustained span events from one Python thread into a live ingestion service, default buffers.

One thread emits thread spans (begin + end) through ``tracing.begin_span/end_span`` at a paced
rate (default 1 M events/s for 10 s: batches of 1 000 events, sleeping when ahead; when
descheduled for more than 5 ms it resumes the pace instead of catching up in a burst, so the
achieved rate is printed) with the tracer's **default** buffer settings, while
``sirius ingest`` runs as its own process on loopback (PostgreSQL + a local object store). Each
run reports what ``tracing.stats()`` says (emitted, lost in thread buffers, delivered, dropped,
spooled) and counts the events the lake holds (``sum(blocks.nb_objects)`` of the process).

Baseline, measured in the same run: the same paced loop delivering to an in-process sink that
discards every body (no HTTP, no service): the ratio ``delivered / emitted`` of the live run
against it shows what the network path costs. A third row emits as fast as the loop goes
(a burst of ``--burst`` events) into the live service, where losses are expected and counted.

Run: ``.venv/bin/python bench/tracer_sustained.py [--rate 1000000] [--seconds 10] [--dsn DSN]``
(default PostgreSQL: the local server when it answers, else an embedded one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from _postgres import create_database, drop_database, maintenance_dsn

from sirius import tracing

BATCH = 500  # spans per paced batch: 1 000 events
MAX_LAG = 0.005  # seconds behind schedule past which the pace restarts instead of catching up


class DiscardSink:
    """In-process sink that accepts and forgets every body (the baseline)."""

    def send_encoded(self, kind: str, body: bytes) -> bool:
        del kind, body
        return True

    def flush(self, timeout: float | None = None) -> bool:
        del timeout
        return True

    def shutdown(self, timeout: float = 0.0) -> bool:
        del timeout
        return True


@dataclass
class Run:
    label: str
    seconds: float
    emitted: int
    lost: int
    delivered: int
    dropped: int
    spooled: int
    lake: int | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def emit(rate: float, seconds: float, total: int | None = None) -> float:
    """Emit spans paced at ``rate`` events/s for ``seconds`` (or ``total`` events unpaced); return the wall time."""
    desc = tracing.span_desc("sustained")
    begin, end = tracing.begin_span, tracing.end_span
    start = time.perf_counter()
    if total is not None:
        for _ in range(total // 2):
            begin(desc)
            end(desc)
        return time.perf_counter() - start
    spans = 0
    target = int(rate * seconds) // 2
    anchor, anchored = start, 0  # the schedule: `anchored` spans were due at `anchor`
    while spans < target:
        for _ in range(BATCH):
            begin(desc)
            end(desc)
        spans += BATCH
        ahead = (spans - anchored) * 2 / rate - (time.perf_counter() - anchor)
        if ahead > 0.001:
            time.sleep(ahead)  # gives the GIL to the uploader and the sink's worker
        elif ahead < -MAX_LAG:
            # This thread was descheduled: resume the rate from now rather than catch up in a
            # burst (a burst is the third row's subject, not this one's).
            anchor, anchored = time.perf_counter(), spans
    return time.perf_counter() - start


def run(label: str, url: str | None, spool: Path, pace: tuple[float, float], total: int | None = None) -> Run:
    """One tracer session: init (default buffers), emit, shutdown; its counters."""
    if url is None:
        tracing.init(sink=DiscardSink())
    else:
        tracing.init(url=url, spool_dir=spool)
    wall = emit(*pace, total)
    tracing.shutdown(timeout=60)
    s = tracing.stats()
    return Run(
        label, wall, s.events_emitted, s.events_lost, s.events_delivered, s.events_dropped, s.events_spooled, None
    )


async def lake_events(dsn: str, process_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval("SELECT coalesce(sum(nb_objects), 0) FROM blocks WHERE process_id = $1", process_id)
        )
    finally:
        await conn.close()


def start_ingest(dsn: str, objects: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MICROMEGAS_SQL_CONNECTION_STRING": dsn, "MICROMEGAS_OBJECT_STORE_URI": objects.as_uri()}
    cmd = [sys.executable, "-m", "sirius.admin.cli", "ingest", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    msg = "ingestion service did not start"
    raise RuntimeError(msg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1_000_000, help="events per second (a span is two)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=4_000_000, help="events of the unpaced burst row")
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN (default local, else embedded)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with maintenance_dsn(args.dsn, tmp) as admin:
            dsn = asyncio.run(create_database(admin))
            port = _free_port()
            objects = tmp / "objects"
            objects.mkdir()
            service = start_ingest(dsn, objects, port)
            try:
                url = f"http://127.0.0.1:{port}"
                pace = (args.rate, args.seconds)
                rows = [run("baseline: in-process discarding sink", None, tmp / "spool", pace)]
                live = run("live ingestion service on loopback", url, tmp / "spool", pace)
                live.lake = asyncio.run(lake_events(dsn, _last_process()))
                rows.append(live)
                burst = run(f"burst: {args.burst:,} events unpaced, live", url, tmp / "spool", (0, 0), args.burst)
                burst.lake = asyncio.run(lake_events(dsn, _last_process()))
                rows.append(burst)
            finally:
                service.terminate()
                service.wait(30)
                asyncio.run(drop_database(admin, dsn))
    print(f"python {sys.version.split()[0]}, target {args.rate:,.0f} events/s for {args.seconds:g} s, default buffers")
    header = (
        "run",
        "wall s",
        "events/s",
        "emitted",
        "lost",
        "delivered",
        "dropped",
        "spooled",
        "in lake",
        "vs baseline",
    )
    print(" | ".join(header))
    base = rows[0].delivered / rows[0].emitted if rows[0].emitted else 0.0
    for r in rows:
        share = r.delivered / r.emitted if r.emitted else 0.0
        cells = (
            r.label,
            f"{r.seconds:.2f}",
            f"{r.emitted / r.seconds:,.0f}",
            f"{r.emitted:,}",
            f"{r.lost:,}",
            f"{r.delivered:,}",
            f"{r.dropped:,}",
            f"{r.spooled:,}",
            "" if r.lake is None else f"{r.lake:,}",
            f"{share / base:.3f}" if base else "",
        )
        print(" | ".join(cells))
    return 0


def _last_process() -> uuid.UUID:
    process_id = tracing.process_id()
    assert process_id is not None
    return process_id


if __name__ == "__main__":
    raise SystemExit(main())
