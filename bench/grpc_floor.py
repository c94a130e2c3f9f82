"""What grpcio itself costs per unary request: the floor under the OTLP/gRPC receiver's per-core rate.

Issue 14's goal 2 asks for 1 M items/s per server core over gRPC, i.e. at most 512 µs of server CPU
per request of 512 items (the ``BatchSpanProcessor`` batch) for everything the service does. This
benchmark measures how much of that budget the gRPC library takes before any of our code runs: a
server whose ``Export`` handler returns at once (raw-bytes handler, no deserialiser, as our
receiver registers), fed real SDK-encoded 512-span requests by 8 client threads of a separate
process over loopback. *Server CPU per request* is the server process's user + system time over
the run divided by the requests; *ceiling* is 512 items over that, i.e. the most items per server
core any receiver built on that server could reach. Three servers: ``grpc.aio`` on asyncio's loop,
``grpc.aio`` on uvloop (what Sirius runs by default), and grpcio's thread-pool server.

Baseline, in the same run: a plain ``ExportTraceServiceRequest.FromString`` of the same request
bytes (items per second of one core); ``parse ratio`` = parse rate / ceiling — the goal allows the
whole service 6.

Run: ``.venv/bin/python bench/grpc_floor.py [--requests 2000] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp import BATCH, CLIENT_THREADS, _span_requests

_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client(port: int, bodies: list[bytes], requests: int) -> None:
    """Send ``requests`` unary calls from ``CLIENT_THREADS`` threads (separate process)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(_METHOD)
    call(bodies[0])  # connect before the server's clock runs
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(lambda i: call(bodies[i % len(bodies)]), range(requests)))
    channel.close()


def _timed(port: int, bodies: list[bytes], requests: int, wait: Callable[[multiprocessing.Process], None]) -> float:
    """Server CPU seconds while the client process sends ``requests`` calls."""
    start = _cpu_seconds()
    client = multiprocessing.Process(target=_client, args=(port, bodies, requests))
    client.start()
    wait(client)
    if client.exitcode != 0:
        msg = f"client failed with exit code {client.exitcode}"
        raise RuntimeError(msg)
    return _cpu_seconds() - start


async def _aio_round(bodies: list[bytes], requests: int) -> float:
    async def export(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return b""

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(export)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {"Export": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        # The loop keeps serving while a helper thread waits for the client process.
        return await loop.run_in_executor(None, _timed, port, bodies, requests, lambda process: process.join())
    finally:
        await server.stop(0)


def _sync_round(bodies: list[bytes], requests: int) -> float:
    def export(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        return b""

    server = grpc.server(ThreadPoolExecutor(CLIENT_THREADS), options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(export)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {"Export": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        return _timed(port, bodies, requests, lambda process: process.join())
    finally:
        server.stop(0)


def _parse_rate(bodies: list[bytes]) -> float:
    """Items per second of one core parsing the same request bytes (best of 5)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for body in bodies:
            ExportTraceServiceRequest.FromString(body)
        best = min(best, time.process_time() - start)
    return len(bodies) * BATCH / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per server per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (servers alternate within each)")
    args = parser.parse_args()
    multiprocessing.set_start_method("spawn")
    bodies = _span_requests(50, seed=7)
    size = sum(map(len, bodies)) / len(bodies)
    print(f"{len(bodies)} distinct SDK-encoded requests of {BATCH} spans, {size / 1024:.1f} KiB each")
    import uvloop

    servers: dict[str, Callable[[], float]] = {
        "grpc.aio, asyncio": lambda: asyncio.run(_aio_round(bodies, args.requests)),
        "grpc.aio, uvloop": lambda: uvloop.run(_aio_round(bodies, args.requests)),
        "grpcio thread pool": lambda: _sync_round(bodies, args.requests),
    }
    parse = _parse_rate(bodies)
    columns = ("CPU µs/request", "ceiling items/s/core", "parse items/s", "parse ratio")
    print(f"{'round':>5}  {'server':<20} {columns[0]:>15} {columns[1]:>21} {columns[2]:>14} {columns[3]:>11}")
    for round_ in range(1, args.rounds + 1):
        for name, run in servers.items():
            per_request = run() / args.requests
            ceiling = BATCH / per_request
            figures = f"{per_request * 1e6:>15.0f} {ceiling:>21,.0f} {parse:>14,.0f} {parse / ceiling:>10.1f}x"
            print(f"{round_:>5}  {name:<20} {figures}")


if __name__ == "__main__":
    main()
