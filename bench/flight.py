"""FlightSQL streaming throughput and small-query latency, against reading the same Parquet locally.

1. Writes a 10 M-row Parquet file shaped like ``log_entries`` (time, level, target, msg, value).
2. Starts the FlightSQL server in a separate process with a session provider that registers the
   file (``register_parquet``, as a lakehouse session would) plus a 1 000-row in-memory table.
3. Streams ``SELECT * FROM bench`` to the unmodified ``micromegas`` client (``query_arrow``):
   rows/s and MB/s (Arrow bytes received), median of 3.
4. Baseline, same run: ``pyarrow.parquet.read_table`` of the same file in this process.
   Ratio = streamed time / local read time.
5. Latency of a small query (``SELECT level, count(*) FROM small GROUP BY level``) through the
   client, 1 000 calls after 50 warm-ups: p50 and p99; baseline: the same query on a local
   DataFusion session (session build + query).

Run: ``.venv/bin/python bench/flight.py [--rows 10000000] [--calls 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SMALL_SQL = "SELECT level, count(*) AS n FROM small GROUP BY level ORDER BY level"


def write_parquet(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    chunk = 1_000_000
    targets = np.array([f"module::part{i}" for i in range(50)])
    writer = None
    start = 1_714_564_800 * 10**9
    for offset in range(0, rows, chunk):
        n = min(chunk, rows - offset)
        table = pa.table(
            {
                "time": pa.array(start + (offset + np.arange(n)) * 1000, pa.int64()).cast(
                    pa.timestamp("ns", tz="+00:00")
                ),
                "level": pa.array(rng.integers(1, 7, n), pa.int32()),
                "target": pa.array(targets[rng.integers(0, 50, n)]),
                "msg": pa.array(np.char.add("request handled in ms=", rng.integers(0, 1000, n).astype(str))),
                "value": pa.array(rng.random(n)),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="lz4", version="2.6")
        writer.write_table(table, row_group_size=131_072)
    if writer is not None:
        writer.close()


def serve(parquet: str) -> None:
    """Child process: a FlightSQL server over the Parquet file; prints its port, serves until stdin closes."""
    import threading

    from sirius.flight import FlightSqlConfig, FlightSqlService
    from sirius.lakehouse._sql_functions import new_session_context, register_sql_functions

    small = pa.table({"level": pa.array(np.arange(1000) % 6 + 1, pa.int32()), "x": pa.array(np.arange(1000))})

    class ParquetProvider:
        partitions = None

        async def session(self, request):
            ctx = new_session_context(memory_limit_bytes=request.memory_limit_bytes, batch_size=65536)
            ctx.register_parquet("bench", parquet)
            ctx.register_record_batches("small", [small.to_batches()])
            register_sql_functions(ctx, **request.function_context)
            return ctx

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    service = FlightSqlService(ParquetProvider(), config=FlightSqlConfig(port=0), loop=loop)
    port = asyncio.run_coroutine_threadsafe(service.start(), loop).result()
    print(port, flush=True)
    sys.stdin.read()  # parent closes stdin to stop us
    asyncio.run_coroutine_threadsafe(service.stop(), loop).result()


def timed(fn, repeat: int) -> tuple[float, object]:
    best = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best.append(time.perf_counter() - t0)
    return statistics.median(best), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import micromegas
    from datafusion import SessionContext

    with tempfile.TemporaryDirectory(prefix="sirius-bench-flight-") as tmp:
        parquet = Path(tmp) / "bench.parquet"
        t0 = time.perf_counter()
        write_parquet(parquet, args.rows)
        size_mb = parquet.stat().st_size / 1e6
        print(f"wrote {args.rows:,} rows, {size_mb:.0f} MB of Parquet in {time.perf_counter() - t0:.1f} s")
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(parquet)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            port = int(child.stdout.readline())
            client = micromegas.connect(f"grpc://127.0.0.1:{port}")

            local_s, local = timed(lambda: pq.read_table(parquet), 3)
            flight_s, streamed = timed(lambda: client.query_arrow("SELECT * FROM bench"), 3)
            assert streamed.num_rows == local.num_rows == args.rows
            size = streamed.nbytes
            print()
            print(f"{'':32} {'time':>8} {'rows/s':>12} {'MB/s':>8}")
            for label, seconds, nbytes in (
                ("pyarrow read_table (local)", local_s, local.nbytes),
                ("micromegas client over FlightSQL", flight_s, size),
            ):
                print(f"{label:32} {seconds:8.2f} {args.rows / seconds:12,.0f} {nbytes / seconds / 1e6:8.0f}")
            print(f"ratio streamed / local read: {flight_s / local_s:.2f}x   ({size / 1e6:.0f} MB of Arrow received)")

            for _ in range(50):
                client.query_arrow(SMALL_SQL)
            latencies = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                client.query_arrow(SMALL_SQL)
                latencies.append(time.perf_counter() - t0)
            small = pa.table({"level": pa.array(np.arange(1000) % 6 + 1, pa.int32()), "x": pa.array(np.arange(1000))})
            local_latencies = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                ctx = SessionContext()
                ctx.register_record_batches("small", [small.to_batches()])
                ctx.sql(SMALL_SQL).to_arrow_table()
                local_latencies.append(time.perf_counter() - t0)
            q = statistics.quantiles(latencies, n=100)
            lq = statistics.quantiles(local_latencies, n=100)
            print()
            print(
                f"small query x{args.calls}: p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms over FlightSQL; "
                f"local DataFusion p50 {lq[49] * 1e3:.2f} ms, p99 {lq[98] * 1e3:.2f} ms; "
                f"ratio p50 {q[49] / lq[49]:.1f}x"
            )
        finally:
            child.stdin.close()
            child.wait(30)


if __name__ == "__main__":
    main()
