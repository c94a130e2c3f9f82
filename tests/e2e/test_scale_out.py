"""Services that scale out: two of each stateless service over one PostgreSQL and one object store.

Two ``sirius ingest``, two ``sirius otlp`` and two ``sirius flight`` processes (plus one
``sirius daemon``) run as a deployment would run them, sharing nothing but the database and the
store. Producers reach the ingestion and OTLP/HTTP replicas through a round-robin balancer that
loses the answer of every third write after the replica stored it: the producer's retry (the
telemetry sink's, the OTel SDK exporter's) re-sends the same body, and the balancer gives it to
the other replica. Every acknowledged block must be stored exactly once. OTLP/gRPC exports go to
each replica directly.

FlightSQL tickets carry the SQL itself, so a ``DoGet`` may land on another replica than its
``GetFlightInfo``: the test does exactly that, and asks both replicas a set of queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pyarrow as pa
import pytest
from aiohttp import web
from cli_subprocess import SIRIUS, embedded_env
from micromegas.flightsql.client import FlightSQLClient
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pyarrow import flight
from waiting import wait_until

from sirius.flight import _protocol as proto
from sirius.tracing import LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

NATIVE_BLOCKS = 12
EVENTS_PER_BLOCK = 5
SPAN_BATCHES = 6
SPANS_PER_BATCH = 3
LOG_BATCHES = 2  # one per OTLP/gRPC replica
LOGS_PER_BATCH = 2
DROP_EVERY = 3


# --- the deployment ---------------------------------------------------------------------------


def _start(argv: list[str], env: dict[str, str], names: tuple[str, ...]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``sirius <argv>``; return it and the URLs it printed for ``names`` (in that order)."""
    proc = subprocess.Popen([*SIRIUS, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    for line in proc.stdout:  # each line arrives when printed
        words = line.split()
        if words[:1] and words[0] in names:
            urls[words[0]] = words[1]
        if len(urls) == len(names):
            return proc, [urls[name] for name in names]
    proc.wait(30)
    pytest.fail(f"sirius {argv[0]} ended before listening: {proc.stderr.read() if proc.stderr else ''}")


@dataclass
class Deployment:
    ingestion: list[str]
    otlp_grpc: list[str]
    otlp_http: list[str]
    flight: list[str]
    dsn: str
    objects: Path


@pytest.fixture
def deployment(pg_dsn: str, tmp_path: Path) -> Iterator[Deployment]:
    env = embedded_env(keep_otel=False)
    env["MICROMEGAS_SQL_CONNECTION_STRING"] = pg_dsn
    objects = tmp_path / "objects"
    env["MICROMEGAS_OBJECT_STORE_URI"] = objects.as_uri()
    started: list[subprocess.Popen[str]] = []
    local = ["--host", "127.0.0.1"]
    try:
        ingestion, grpc, http, flights = [], [], [], []
        for _ in range(2):
            proc, urls = _start(["ingest", *local, "--port", "0"], env, ("ingestion",))
            started.append(proc)
            ingestion += urls
            proc, urls = _start(
                ["otlp", *local, "--grpc-port", "0", "--http-port", "0"], env, ("otlp-grpc", "otlp-http")
            )
            started.append(proc)
            grpc.append(urls[0])
            http.append(urls[1])
            proc, urls = _start(["flight", *local, "--port", "0"], env, ("flightsql",))
            started.append(proc)
            flights += urls
        daemon = subprocess.Popen(
            [*SIRIUS, "daemon"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        started.append(daemon)
        assert daemon.stdout is not None
        assert daemon.stdout.readline().startswith("maintenance daemon running")
        yield Deployment(ingestion, grpc, http, flights, pg_dsn, objects)
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.wait(30)


# --- a round-robin balancer that loses answers ---------------------------------------------------


@dataclass(frozen=True)
class Forward:
    path: str
    backend: int
    status: int
    dropped: bool
    digest: str


class LossyBalancer:
    """Forwards each request to the next backend in turn; of the requests whose path contains
    ``lossy``, every ``drop_every``-th is stored by its backend but answered 502 (the answer lost
    on the way back), so the client retries, and the retry goes to the next backend."""

    def __init__(self, backends: list[str], lossy: str, drop_every: int) -> None:
        self.backends = backends
        self.lossy = lossy
        self.drop_every = drop_every
        self.forwards: list[Forward] = []
        self._turn = 0
        self._lossy_seen = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def __enter__(self) -> LossyBalancer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self._session = self._loop.run_until_complete(self._open_session())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._session.close())
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    @staticmethod
    async def _open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()  # made on the balancer's loop, which it must run on

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        backend = self._turn % len(self.backends)
        self._turn += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "content-encoding")}
        url = self.backends[backend] + request.path_qs
        async with self._session.request(request.method, url, data=body, headers=headers) as answer:
            payload = await answer.read()
            status, content_type = answer.status, answer.headers.get("Content-Type")
        dropped = False
        if self.lossy in request.path and status == 200:
            self._lossy_seen += 1
            dropped = self._lossy_seen % self.drop_every == 0
        self.forwards.append(Forward(request.path, backend, status, dropped, hashlib.sha256(body).hexdigest()))
        if dropped:
            return web.Response(status=502, text="answer lost by the balancer")
        response = web.Response(status=status, body=payload)
        if content_type:
            response.headers["Content-Type"] = content_type
        return response


def _assert_each_lost_answer_was_retried_on_the_other_replica(balancer: LossyBalancer) -> int:
    """Every dropped forward's body came again and was acknowledged by the other backend; returns how many."""
    forwards = balancer.forwards
    dropped = [(i, f) for i, f in enumerate(forwards) if f.dropped]
    for i, lost in dropped:
        retry = next(f for f in forwards[i + 1 :] if f.digest == lost.digest)
        assert retry.backend != lost.backend
        assert retry.status == 200
        assert not retry.dropped
    return len(dropped)


# --- producers ------------------------------------------------------------------------------


def _send_native(url: str) -> tuple[str, int]:
    """Send NATIVE_BLOCKS log blocks through the telemetry sink; return the process id and events sent."""
    process = current_process_info({"test": "scale-out"})
    ticks = iter(range(process.start_ticks + 1_000, process.start_ticks + 10**9, 1_000))
    sink = TelemetrySink(SinkConfig(url=url, initial_backoff=0.005, max_backoff=0.05))
    try:
        sink.register_process(process)
        log = TransitWriter(process, "log")
        sink.register_stream(log.stream_info())
        desc = LogMetadata("{}", target="scale.out")
        for block in range(NATIVE_BLOCKS):
            for event in range(EVENTS_PER_BLOCK):
                log.log_string(desc, f"block {block} event {event}", ticks=next(ticks))
            assert sink.send_block(log.seal())
        assert sink.flush(timeout=60)
        stats = sink.stats()
        assert stats.sent_blocks == NATIVE_BLOCKS
    finally:
        sink.shutdown(timeout=10)
    return str(process.process_id), NATIVE_BLOCKS * EVENTS_PER_BLOCK


def _send_spans(endpoint: str) -> None:
    resource = Resource.create({"service.name": "scale-out-shop", "service.instance.id": "pod-1"})
    for batch in range(SPAN_BATCHES):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("shop", "1.0")
        with tracer.start_as_current_span(f"GET /cart/{batch}"):
            for step in range(SPANS_PER_BATCH - 1):
                with tracer.start_as_current_span(f"step {step}"):
                    pass
        exporter = HttpSpanExporter(endpoint=endpoint, timeout=30)
        assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
        exporter.shutdown()


def _send_logs(grpc_url: str, replica: int) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "scale-out-worker"}))
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(f"sirius.tests.scale_out.{replica}")
    logger.propagate = False
    logger.addHandler(handler)
    for n in range(LOGS_PER_BATCH):
        logger.warning("replica %d record %d", replica, n)
    logger.removeHandler(handler)
    exporter = GrpcLogExporter(endpoint=grpc_url.split("://", 1)[1], insecure=True)
    assert exporter.export(memory.get_finished_logs()).name == "SUCCESS"  # the enum class was renamed in SDK 1.3x
    exporter.shutdown()


# --- readers --------------------------------------------------------------------------------


def _pg(dsn: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def _flight_query(uri: str, sql: str) -> pa.Table:
    return pa.Table.from_pandas(FlightSQLClient(uri).query(sql), preserve_index=False)


def _statement(sql: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(proto.pack(proto.CommandStatementQuery(query=sql)))


def test_two_of_each_service_share_the_database_and_the_store(deployment: Deployment) -> None:
    with LossyBalancer(deployment.ingestion, "/ingestion/insert_block", DROP_EVERY) as native:
        pid, native_events = _send_native(native.url)
    with LossyBalancer(deployment.otlp_http, "/v1/traces", DROP_EVERY) as otlp:
        _send_spans(f"{otlp.url}/v1/traces")
    for replica, grpc_url in enumerate(deployment.otlp_grpc):
        _send_logs(grpc_url, replica)

    # Both replicas took writes, answers were lost, and every retry landed on the other replica.
    for balancer in (native, otlp):
        assert Counter(f.backend for f in balancer.forwards if f.status == 200).keys() == {0, 1}
        assert _assert_each_lost_answer_was_retried_on_the_other_replica(balancer) >= 2
    # Every acknowledged block is stored once: one row and one object each.
    acknowledged = NATIVE_BLOCKS + SPAN_BATCHES + LOG_BATCHES
    (row,) = _pg(deployment.dsn, "SELECT count(*) AS n, count(DISTINCT block_id) AS d FROM blocks")
    assert (row["n"], row["d"]) == (acknowledged, acknowledged)
    objects = [p for p in (deployment.objects / "blobs").rglob("*") if p.is_file()]
    assert len(objects) == acknowledged
    (processes,) = _pg(deployment.dsn, "SELECT count(*) AS n FROM processes")
    assert processes["n"] == 3  # the native process and one per OTel resource

    # The daemon (one process, its lease) materialises the global views; both replicas see them.
    expected = {
        "blocks": acknowledged,
        "log_entries": native_events + LOG_BATCHES * LOGS_PER_BATCH,
        "otel_spans": SPAN_BATCHES * SPANS_PER_BATCH,
        "processes": 3,
    }

    def counts(uri: str) -> dict[str, int]:
        return {view: _flight_query(uri, f"SELECT count(*) AS n FROM {view}")["n"][0].as_py() for view in expected}

    for uri in deployment.flight:
        wait_until(f"{uri} to see every view complete", lambda u=uri: counts(u) == expected, timeout=60)

    queries = [
        "SELECT exe, count(*) AS n FROM processes GROUP BY exe ORDER BY exe",
        "SELECT msg FROM log_entries ORDER BY time, msg",
        "SELECT name, count(*) AS n FROM otel_spans GROUP BY name ORDER BY name",
        f"SELECT msg FROM view_instance('log_entries', '{pid}') ORDER BY time",  # JIT on each replica
        "SELECT count(DISTINCT block_id) AS n FROM blocks",
    ]
    for sql in queries:
        first, second = (_flight_query(uri, sql) for uri in deployment.flight)
        assert first.num_rows > 0, sql
        assert first.equals(second), sql

    # A DoGet whose GetFlightInfo went to replica A, sent to replica B, answers the same.
    replica_a, replica_b = (flight.connect(uri) for uri in deployment.flight)
    try:
        for sql in queries:
            info = replica_a.get_flight_info(_statement(sql))
            (endpoint,) = info.endpoints
            assert sql.encode() in endpoint.ticket.ticket  # the ticket is the SQL itself
            on_a = replica_a.do_get(endpoint.ticket).read_all()
            on_b = replica_b.do_get(endpoint.ticket).read_all()
            assert on_b.num_rows > 0, sql
            assert on_b.equals(on_a), sql
    finally:
        replica_a.close()
        replica_b.close()


# --- JIT on two FlightSQL servers at once ------------------------------------------------------

JIT_PROCESSES = 3
JIT_BLOCKS = 4
JIT_EVENTS_PER_BLOCK = 16_384
JIT_QUERIES_PER_SERVER = 3


@pytest.fixture
def two_flight_servers(pg_dsn: str, tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    env = embedded_env(keep_otel=False)
    env["MICROMEGAS_SQL_CONNECTION_STRING"] = pg_dsn
    objects = tmp_path / "objects"
    env["MICROMEGAS_OBJECT_STORE_URI"] = objects.as_uri()
    started: list[subprocess.Popen[str]] = []
    try:
        uris = []
        for _ in range(2):
            proc, urls = _start(["flight", "--host", "127.0.0.1", "--port", "0"], env, ("flightsql",))
            started.append(proc)
            uris += urls
        yield uris, objects
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.wait(30)


async def _write_processes(dsn: str, objects: Path) -> list[str]:
    """JIT_PROCESSES processes with JIT_BLOCKS log blocks each, stored as the ingestion service does."""
    from sirius.lakehouse import DataLake, LocalObjectStore, block_object_key, create_pool
    from sirius.tracing import payload_to_cbor

    pool = await create_pool(dsn)
    store = LocalObjectStore(objects)
    datalake = DataLake(pool)
    pids = []
    try:
        desc = LogMetadata("{}", target="jit.race")
        for _ in range(JIT_PROCESSES):
            process = current_process_info({"test": "jit-race"})
            await datalake.insert_process(process)
            log = TransitWriter(process, "log")
            await datalake.insert_stream(log.stream_info())
            ticks = process.start_ticks
            for block in range(JIT_BLOCKS):
                for event in range(JIT_EVENTS_PER_BLOCK):
                    ticks += 1_000
                    log.log_string(desc, f"block {block} event {event}", ticks=ticks)
                sealed = log.seal()
                payload = payload_to_cbor(sealed.payload)
                await store.put_if_absent(
                    block_object_key(sealed.process_id, sealed.stream_id, sealed.block_id), payload
                )
                await datalake.insert_block(sealed, len(payload))
            pids.append(str(process.process_id))
    finally:
        await store.close()
        await pool.close()
    return pids


def test_jit_of_one_process_on_two_servers_at_once_builds_one_partition(
    two_flight_servers: tuple[list[str], Path], pg_dsn: str
) -> None:
    uris, objects = two_flight_servers
    pids = asyncio.run(_write_processes(pg_dsn, objects))
    expected = JIT_BLOCKS * JIT_EVENTS_PER_BLOCK
    for pid in pids:
        sql = f"SELECT count(*) AS n FROM view_instance('log_entries', '{pid}')"
        clients = [uri for uri in uris for _ in range(JIT_QUERIES_PER_SERVER)]
        barrier = threading.Barrier(len(clients))
        answers: list[object] = [None] * len(clients)

        def ask(i: int, uri: str, query: str = sql, gate: threading.Barrier = barrier, out: list = answers) -> None:
            client = FlightSQLClient(uri)
            gate.wait(60)  # every query leaves at once, half of them to each server
            try:
                out[i] = client.query(query)["n"][0]
            except Exception as exc:  # reported below with the others
                out[i] = exc

        threads = [threading.Thread(target=ask, args=(i, uri)) for i, uri in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert answers == [expected] * len(clients)

        # One partition, one file: nobody built it twice (a second build would have written a
        # second file and retired the first into temporary_files).
        rows = _pg(
            pg_dsn,
            "SELECT begin_insert_time, file_path, num_rows FROM lakehouse_partitions"
            f" WHERE view_set_name = 'log_entries' AND view_instance_id = '{pid}'",
        )
        assert [r["num_rows"] for r in rows] == [expected]
        files = [p for p in (objects / "views" / "log_entries" / pid).rglob("*") if p.is_file()]
        assert [str(p.relative_to(objects)) for p in files] == [rows[0]["file_path"]]
    assert _pg(pg_dsn, "SELECT file_path FROM temporary_files") == []
