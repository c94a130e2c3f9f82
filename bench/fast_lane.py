"""HTTP fast lane against aiohttp: the event loop's CPU per request for the same routes, alternating.

Two ``HttpServer`` ports in this process serve the same app on uvloop: one with the fast lane
(``collector/_fast_connection.py``), one with aiohttp alone (``fast_lane=False``). A separate
client process (8 keep-alive connections, a lean socket client) sends each round's requests to
one port, then the next round to the other, order swapped every round, so load changes on a
shared machine hit both. Measured per request: the loop thread's CPU (``time.thread_time`` on the
loop, the figure the frameworks' machinery adds to) and the whole process's CPU (every thread,
the object store's included).

Cases (``--cases``):

* ``noop``: ``POST /v1/traces`` with a 64 KB body whose handler answers 200 at once, no storage
  (the frameworks' request and response machinery alone: headers, the body read, the answer);
* ``otlp``: real 512-span ``ExportTraceServiceRequest`` bodies (built by the OTel SDK before
  timing, each sent once) into the OTLP/HTTP routes over PostgreSQL and a local object store;
* ``native`` / ``native1m``: 16 KiB / 1 MiB ``insert_block`` bodies into the ingestion service's
  native route (``native1m`` sends a tenth of ``--requests``, at least 20).

Run: ``.venv/bin/python bench/fast_lane.py [--rounds 4] [--requests 300] [--cases noop,otlp,native,native1m]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import multiprocessing
import os
import pstats
import resource
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _lean_http_client import _read_response
from _postgres import create_database, drop_database, maintenance_dsn
from aiohttp import web
from ingest import cpu_block
from multidict import CIMultiDict
from otlp import _span_requests

from sirius.admin import run_service_loop
from sirius.collector import HttpServer, IngestionService, OtlpLimits, OtlpService
from sirius.collector._fast_http import FAST_ROUTES
from sirius.lakehouse import create_pool, migrate, open_object_store
from sirius.lakehouse._datalake import DataLake
from sirius.tracing import StreamInfo, block_to_cbor, process_info_to_cbor, stream_info_to_cbor
from sirius.tracing._process import current_process_info
from sirius.tracing.transit._layouts import CPU

CLIENTS = 8
PROTOBUF = "application/x-protobuf"
_BODIES: list[bytes] = []  # the client process's bodies, loaded before the clock starts


def _process_cpu() -> float:
    """CPU seconds of this process, every thread (``getrusage``: microseconds, not ``os.times``' ticks)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load(bodies: list[bytes]) -> None:
    _BODIES[:] = bodies


def _client(port: int, path: str, content_type: str) -> float:
    """POST the loaded bodies over CLIENTS keep-alive connections; the seconds taken (every answer must be 200)."""
    errors: list[int] = []
    bodies = _BODIES

    def run(mine: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = bytearray()
            prefix = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            for body in mine:
                sock.sendmsg([f"{prefix}Content-Length: {len(body)}\r\n\r\n".encode(), body])
                status = _read_response(sock, pending)
                if status != 200:
                    errors.append(status)

    threads = [threading.Thread(target=run, args=(bodies[i::CLIENTS],)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"HTTP errors: {errors[:5]}")
    return time.perf_counter() - start


def _post(port: int, path: str, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=body)
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"{path}: {response.status}")


def _native_bodies(process_id: uuid.UUID, stream_id: uuid.UUID, count: int, size: int) -> list[bytes]:
    return [block_to_cbor(cpu_block(process_id, stream_id, size, i)) for i in range(count)]


class _NoopExchange:
    async def finish(self, body: bytes | bytearray) -> web.Response:
        return web.Response(body=b"", content_type="application/x-protobuf")

    def malformed(self, reason: str) -> web.Response:
        return web.Response(status=400)

    def too_large(self) -> web.Response:
        return web.Response(status=413)

    def release(self) -> None:
        pass


class _NoopRoute:
    refuses_before_continue = False
    max_body_bytes = 64 * 1024 * 1024

    def open(self, headers: CIMultiDict[str], content_length: int | None) -> _NoopExchange:
        return _NoopExchange()


def _noop_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", handle)
    app[FAST_ROUTES] = {"/v1/traces": _NoopRoute()}
    return app


async def _ports(app_factory: object) -> tuple[HttpServer, HttpServer]:
    servers = (
        HttpServer(app_factory(), "127.0.0.1", 0, fast_lane=True),  # type: ignore[operator]
        HttpServer(app_factory(), "127.0.0.1", 0, fast_lane=False),  # type: ignore[operator]
    )
    for server in servers:
        await server.start()
    return servers


async def _case(
    name: str,
    servers: tuple[HttpServer, HttpServer],
    *,
    path: str,
    ctype: str,
    make: Callable[[ProcessPoolExecutor, int], Awaitable[list[bytes]]],
    args: argparse.Namespace,
) -> None:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    results: dict[str, list[tuple[float, float, float]]] = {"fast lane": [], "aiohttp": []}
    try:
        for round_ in range(args.rounds):
            order = [("fast lane", servers[0]), ("aiohttp", servers[1])]
            if round_ % 2:
                order.reverse()
            for label, server in order:
                bodies = await make(pool, args.requests)
                await asyncio.wrap_future(pool.submit(_load, bodies))
                profile = cProfile.Profile(time.thread_time) if args.profile == label else None
                loop_cpu, proc = time.thread_time(), _process_cpu()
                if profile is not None:
                    profile.enable()
                elapsed = await asyncio.wrap_future(pool.submit(_client, server.port, path, ctype))
                if profile is not None:
                    profile.disable()
                    pstats.Stats(profile).sort_stats("tottime").print_stats(25)
                loop_cpu = time.thread_time() - loop_cpu
                proc_cpu = _process_cpu() - proc
                n = len(bodies)
                results[label].append((loop_cpu / n * 1e6, proc_cpu / n * 1e6, n / elapsed))
                print(
                    f"{name:>7} {label:>10} round {round_ + 1}: loop {loop_cpu / n * 1e6:7.0f} us/req, "
                    f"process {proc_cpu / n * 1e6:7.0f} us/req, {n / elapsed:8.0f} req/s",
                    flush=True,
                )
        for label, rows in results.items():
            loop_med = statistics.median(r[0] for r in rows)
            proc_med = statistics.median(r[1] for r in rows)
            rate_med = statistics.median(r[2] for r in rows)
            print(
                f"{name:>7} {label:>10} median: loop {loop_med:.0f} us/req, process {proc_med:.0f} us/req, "
                f"{rate_med:.0f} req/s",
                flush=True,
            )
    finally:
        pool.shutdown()
        for server in servers:
            await server.stop()


async def _bench(admin_dsn: str, tmp: Path, args: argparse.Namespace) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    cases = args.cases.split(",")
    if "noop" in cases:
        body = os.urandom(64 * 1024)

        async def noop_bodies(_pool: ProcessPoolExecutor, count: int) -> list[bytes]:
            return [body] * count

        await _case("noop", await _ports(_noop_app), path="/v1/traces", ctype=PROTOBUF, make=noop_bodies, args=args)
    dsn = await create_database(admin_dsn)
    pool = await create_pool(dsn)
    await migrate(pool)
    objects = tmp / "objects"
    objects.mkdir()
    store = open_object_store(objects.as_uri())
    lake = DataLake(pool)
    seeds = iter(range(1, 1_000_000))
    try:
        if "otlp" in cases:
            otlp = OtlpService(lake, store, grpc_port=None, http_port=None, limits=OtlpLimits())

            def otlp_app() -> web.Application:
                app = web.Application(client_max_size=OtlpLimits().max_request_bytes)
                otlp.http_routes().add_to(app)
                return app

            async def span_bodies(executor: ProcessPoolExecutor, count: int) -> list[bytes]:
                return await asyncio.wrap_future(executor.submit(_span_requests, count, next(seeds)))

            await _case("otlp", await _ports(otlp_app), path="/v1/traces", ctype=PROTOBUF, make=span_bodies, args=args)
        if "native" in cases or "native1m" in cases:
            service = IngestionService(lake, store)
            process = current_process_info({"bench": "fast_lane"})
            stream = StreamInfo(
                process_id=process.process_id,
                stream_id=uuid.uuid4(),
                dependencies_metadata=CPU.dependencies_metadata,
                objects_metadata=CPU.objects_metadata,
                tags=CPU.tags,
            )
            servers = await _ports(service.make_app)
            for route, body in (
                ("insert_process", process_info_to_cbor(process)),
                ("insert_stream", stream_info_to_cbor(stream)),
            ):
                await asyncio.to_thread(_post, servers[0].port, f"/ingestion/{route}", body)
            for server in servers:
                await server.stop()
            for case, size, share in (("native", 16 * 1024, 1), ("native1m", 1024 * 1024, 10)):
                if case not in cases:
                    continue

                async def block_bodies(executor: ProcessPoolExecutor, count: int, size: int = size) -> list[bytes]:
                    future = executor.submit(_native_bodies, process.process_id, stream.stream_id, count, size)
                    return await asyncio.wrap_future(future)

                path = "/ingestion/insert_block"
                args.requests, requests = max(20, args.requests // share), args.requests
                servers = await _ports(service.make_app)
                await _case(case, servers, path=path, ctype="application/cbor", make=block_bodies, args=args)
                args.requests = requests
    finally:
        await store.close()
        await pool.close()
        await drop_database(admin_dsn, dsn)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL maintenance DSN")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per case, each lane once per round")
    parser.add_argument("--requests", type=int, default=300, help="requests per lane per round")
    parser.add_argument(
        "--cases", default="noop,otlp,native,native1m", help="comma-separated: noop, otlp, native, native1m"
    )
    parser.add_argument("--profile", choices=("fast lane", "aiohttp"), help="cProfile the loop in that lane's rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, maintenance_dsn(args.dsn, Path(tmp)) as admin_dsn:
        run_service_loop(_bench(admin_dsn, Path(tmp), args), "auto")


if __name__ == "__main__":
    main()
