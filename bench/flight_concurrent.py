"""Benchmark: N concurrent FlightSQL clients each streaming 10 M rows; server RSS over time.

1. Writes ``--files`` Parquet partitions shaped like ``log_entries`` (time, level, target, msg,
   value; ``bench/flight.py``'s writer) holding ``--rows`` rows in all.
2. Starts the FlightSQL server (``FlightSqlService``) in its own process over a real socket,
   with a session provider that registers the partition directory as table ``bench`` through
   the per-query session (``new_session_context`` with the server's
   ``query_memory_limit_bytes`` as its fair spill pool, as a lakehouse session gets it).
3. Starts ``--clients`` client processes (the unmodified ``micromegas`` client, so no client
   shares the server's GIL); once all are connected they are released together and each
   streams ``SELECT * FROM bench`` with ``query_stream``, counting rows and Arrow bytes and
   dropping each batch. Aggregate throughput = all rows / (last end - first start).
4. While they stream, the server's ``VmRSS`` (``/proc/PID/status``) is sampled every 50 ms;
   the idle RSS (after a warm-up query) and the peak are reported, with the timeline.
5. Baseline, same run: the same number of processes each reading the same partitions directly
   with ``pyarrow.parquet`` (``ParquetFile.iter_batches``, 65 536-row batches, batches dropped).

Run: ``.venv/bin/python bench/flight_concurrent.py [--clients 10] [--rows 10000000]
[--memory-limit-mib 4096] [--max-batch-mib 2]`` (``--clients 1,10``: one server run per count)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from flight import write_parquet

BATCH_ROWS = 65_536


def serve(directory: str, memory_limit: int | None, max_batch_bytes: int) -> None:
    """Child: a FlightSQL server over the partitions; prints its port, serves until stdin closes."""
    from sirius.flight import FlightSqlConfig, FlightSqlService
    from sirius.lakehouse._sql_functions import new_session_context, register_sql_functions

    class PartitionProvider:
        partitions = None

        async def session(self, request):
            ctx = new_session_context(memory_limit_bytes=request.memory_limit_bytes, batch_size=BATCH_ROWS)
            ctx.register_parquet("bench", directory)
            register_sql_functions(ctx, **request.function_context)
            return ctx

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    config = FlightSqlConfig(
        port=0, query_memory_limit_bytes=memory_limit, max_concurrent_queries=64, max_batch_bytes=max_batch_bytes
    )
    service = FlightSqlService(PartitionProvider(), config=config, loop=loop)
    port = asyncio.run_coroutine_threadsafe(service.start(), loop).result()
    print(port, flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    asyncio.run_coroutine_threadsafe(service.stop(), loop).result()


def client(port: int) -> None:
    """Child: connect, wait for "go", stream the table, print JSON figures."""
    import micromegas

    conn = micromegas.connect(f"grpc://127.0.0.1:{port}")
    print("ready", flush=True)
    sys.stdin.readline()
    start, cpu = time.time(), _cpu_seconds()
    rows = nbytes = 0
    for batch in conn.query_stream("SELECT * FROM bench"):
        rows += batch.num_rows
        nbytes += batch.nbytes
    _report(start, cpu, rows, nbytes)


def _report(start: float, cpu: float, rows: int, nbytes: int) -> None:
    """A child's figures as one JSON line: wall-clock start/end, rows, Arrow bytes, CPU seconds."""
    print(json.dumps({"start": start, "end": time.time(), "rows": rows, "bytes": nbytes, "cpu": _cpu_seconds() - cpu}))


def reader(directory: str) -> None:
    """Child (baseline): wait for "go", read every partition with pyarrow.parquet, print JSON figures."""
    files = sorted(Path(directory).glob("*.parquet"))
    print("ready", flush=True)
    sys.stdin.readline()
    start, cpu = time.time(), _cpu_seconds()
    rows = nbytes = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            rows += batch.num_rows
            nbytes += batch.nbytes
    _report(start, cpu, rows, nbytes)


def _cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing for {pid}")


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every ``period`` seconds until stopped."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int]] = []
        self.file_kib = 0  # peak RssFile: file-backed pages (mapped files), shared between streams
        self._stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.time()
        while not self._stop_event.is_set():
            self.samples.append((time.time() - t0, rss_kib(self.pid)))
            self.file_kib = max(self.file_kib, rss_kib(self.pid, "RssFile"))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_group(commands: list[list[str]], sample_pid: int | None = None) -> tuple[list[dict], RssSampler | None]:
    """Start the processes, release them together once all are ready, collect their JSON lines."""
    procs = [subprocess.Popen(c, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for c in commands]
    for p in procs:
        if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise SystemExit("a child failed to start")
    sampler = RssSampler(sample_pid) if sample_pid is not None else None
    if sampler is not None:
        sampler.start()
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"a child failed (exit {p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    if sampler is not None:
        sampler.stop()
    return results, sampler


def summary(label: str, results: list[dict], server_cpu: float | None = None) -> tuple[float, float, float]:
    rows = sum(r["rows"] for r in results)
    nbytes = sum(r["bytes"] for r in results)
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    slowest = max(r["end"] - r["start"] for r in results)
    server = f", server {server_cpu:.1f}" if server_cpu else ""
    print(
        f"{label:34} {len(results):3} procs  {rows / 1e6:7.0f} M rows  {wall:7.2f} s  "
        f"{rows / wall / 1e6:7.2f} M rows/s  {nbytes / wall / 1e6:7.0f} MB/s  (slowest process {slowest:.2f} s; "
        f"CPU s: processes {sum(r['cpu'] for r in results):.1f}{server})",
        flush=True,
    )
    return wall, rows / wall, nbytes / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10", help="comma-separated client counts (one server run each)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows each client streams")
    parser.add_argument("--files", type=int, default=10, help="partitions holding those rows")
    parser.add_argument("--memory-limit-mib", type=int, default=4096, help="query_memory_limit_bytes (MiB)")
    parser.add_argument("--max-batch-mib", type=float, default=2.0, help="max_batch_bytes (MiB)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    memory_limit = args.memory_limit_mib * 1024**2
    max_batch = int(args.max_batch_mib * 1024**2)
    if args.serve:
        serve(args.serve, memory_limit, max_batch)
    elif args.client:
        client(args.client)
    elif args.read:
        reader(args.read)
    else:
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """The parent: write the partitions, run the servers, clients and baseline readers."""

    me = [sys.executable, __file__]
    with tempfile.TemporaryDirectory(prefix="sirius-bench-flightc-") as tmp:
        directory = Path(tmp) / "bench"
        directory.mkdir()
        t0 = time.perf_counter()
        for i in range(args.files):
            write_parquet(directory / f"{i:04d}.parquet", args.rows // args.files)
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        seconds = time.perf_counter() - t0
        print(f"wrote {args.rows:,} rows in {args.files} partitions ({size:.0f} MB) in {seconds:.1f} s")
        print(
            f"cores {os.cpu_count()}, load average {os.getloadavg()}, query_memory_limit_bytes "
            f"{args.memory_limit_mib} MiB, max_batch_bytes {args.max_batch_mib} MiB"
        )
        for count in (int(c) for c in args.clients.split(",")):
            server = subprocess.Popen(
                [
                    *me,
                    "--serve",
                    str(directory),
                    "--memory-limit-mib",
                    str(args.memory_limit_mib),
                    "--max-batch-mib",
                    str(args.max_batch_mib),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                port = int(server.stdout.readline())  # type: ignore[union-attr]
                run_group([[*me, "--client", str(port)]])  # warm-up: one full stream
                idle = rss_kib(server.pid)
                cpu = _cpu_seconds(server.pid)
                results, sampler = run_group([[*me, "--client", str(port)] for _ in range(count)], server.pid)
                assert sampler is not None
                samples = sampler.samples
                assert all(r["rows"] == args.rows for r in results), results
                summary(f"FlightSQL, {count} clients", results, _cpu_seconds(server.pid) - cpu)
                peak = max(kib for _, kib in samples)
                print(
                    f"  server RSS: idle after warm-up {idle / 1024:.0f} MiB, peak while streaming "
                    f"{peak / 1024:.0f} MiB (+{(peak - idle) / 1024:.0f} MiB, "
                    f"{(peak - idle) / 1024 / count:.0f} MiB per stream), {len(samples)} samples; "
                    f"RssFile idle {rss_kib(server.pid, 'RssFile') / 1024:.0f} MiB, "
                    f"peak {sampler.file_kib / 1024:.0f} MiB"
                )
                step = max(1, len(samples) // 12)
                print("  RSS timeline (s: MiB): " + ", ".join(f"{t:.1f}: {k / 1024:.0f}" for t, k in samples[::step]))
            finally:
                server.stdin.close()  # type: ignore[union-attr]
                server.wait(60)
            base, _ = run_group([[*me, "--read", str(directory)] for _ in range(count)])
            summary(f"pyarrow.parquet baseline, {count} procs", base)
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
