"""Two audiences' telemetry in one lake, written by real producers with keys minted for each.

Shared by the audience tests: ``sirius keys mint`` makes an ingestion key and an analytics key per
audience (``team-a``, ``team-b``) and an admin analytics key; each audience's producers are the
native sink (a process with log, metrics and cpu streams: logs, measures, thread and async spans)
and the OpenTelemetry SDK span exporter (OTLP/HTTP for ``team-a``, OTLP/gRPC for ``team-b``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from waiting import wait_until

from sirius.admin.cli import main
from sirius.lakehouse import AUDIENCE_PROPERTY, MaintenanceDaemon, PassKind
from sirius.tracing import (
    Level,
    LogMetadata,
    MetricMetadata,
    ProcessInfo,
    SinkConfig,
    SpanMetadata,
    TelemetrySink,
    TransitWriter,
    current_process_info,
)

AUDIENCES = ("team-a", "team-b")
HOUR_NS = 3_600 * 1_000_000_000


@dataclass
class Principal:
    """Keys of one reader: who it is, and the audiences it must see (None: all)."""

    name: str
    key: str
    audiences: frozenset[str] | None

    def client(self, url: str) -> FlightSQLClient:
        return FlightSQLClient(url, auth_provider=StaticTokenAuthProvider(self.key))


@dataclass
class AudienceLake:
    """A running stack holding both audiences' data, and the keys to read it."""

    stack: Any
    urls: dict[str, str]
    writers: dict[str, str]
    readers: list[Principal]
    begin_ns: int
    owner: dict[str, str | None] = field(default_factory=dict)
    """Process and stream ids → the audience stamped on them (from PostgreSQL)."""

    def query(self, principal: Principal, sql: str, *, ranged: bool = False) -> Any:
        if not ranged:
            return principal.client(self.urls["flightsql"]).query(sql)
        begin = datetime.fromtimestamp((self.begin_ns - HOUR_NS) / 1e9, UTC)
        end = datetime.fromtimestamp((time.time_ns() + HOUR_NS) / 1e9, UTC)
        return principal.client(self.urls["flightsql"]).query(sql, begin, end)


def mint(dsn: str, capsys: pytest.CaptureFixture[str], kind: str, name: str, *extra: str) -> str:
    """``sirius keys mint … --secret-only``, as an operator runs it; the secret."""
    capsys.readouterr()
    code = main(["keys", "--sql-connection-string", dsn, "--by", "test", "mint", "--kind", kind, "--name", name,
                 "--secret-only", *extra])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.strip()


def native_status(urls: dict[str, str], key: str, route: str, body: bytes) -> tuple[int, str]:
    """Status and text of ``POST /ingestion/<route>`` with ``key``."""
    headers = {"Content-Type": "application/cbor", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{urls['ingestion']}/ingestion/{route}", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def deliver(url: str, key: str, process: ProcessInfo, writers: Sequence[TransitWriter]) -> None:
    """Register ``process`` and the writers' streams through the native sink with ``key``, send each
    writer's sealed block, and wait until the sink has delivered them."""
    sink = TelemetrySink(SinkConfig(url=url, api_key=key))
    sink.register_process(process)
    for writer in writers:
        sink.register_stream(writer.stream_info())
    for writer in writers:
        sink.send_block(writer.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)


def send_native(url: str, key: str, audience: str) -> str:
    """A process of ``audience`` through the native sink: log, metrics and cpu streams; its id."""
    process = current_process_info({"test": "audiences", "team": audience, AUDIENCE_PROPERTY: "forged-by-client"})
    now = time.monotonic_ns
    log = TransitWriter(process, "log")
    metrics = TransitWriter(process, "metrics")
    cpu = TransitWriter(process, "cpu", properties={"thread-id": "1", "thread-name": f"{audience}-main"})
    span = SpanMetadata(f"{audience}-work", target="app")
    cpu.begin_thread_span(span, ticks=now())
    cpu.begin_async_span(span, 7, 0, depth=0, ticks=now())
    for i in range(3):
        log.log_string(LogMetadata("{}", target="app", level=Level.INFO), f"{audience} message {i}", ticks=now())
        metrics.metric_float(MetricMetadata("latency", unit="ms", target="app"), float(i), ticks=now())
    cpu.end_async_span(span, 7, 0, depth=0, ticks=now())
    cpu.end_thread_span(span, ticks=now())
    deliver(url, key, process, (log, metrics, cpu))
    return str(process.process_id)


def export_spans(urls: dict[str, str], key: str | None, service: str, transport: str) -> str:
    """``SUCCESS`` or ``FAILURE`` of the OTel SDK exporter sending two spans of ``service`` (``key``
    in its headers; None: no credential)."""
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    if transport == "grpc":
        exporter: Any = GrpcSpanExporter(
            endpoint=urls["otlp-grpc"].removeprefix("http://"), insecure=True, headers=tuple(headers.items())
        )
    else:
        exporter = HttpSpanExporter(endpoint=f"{urls['otlp-http']}/v1/traces", headers=headers)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("audiences")
    with tracer.start_as_current_span(f"{service}-request"), tracer.start_as_current_span(f"{service}-db"):
        pass
    try:
        return exporter.export(memory.get_finished_spans()).name
    finally:
        exporter.shutdown()


def gateway_query(urls: dict[str, str], key: str | None, sql: str = "SELECT 1 AS one") -> tuple[int, Any]:
    """Status and JSON answer of the gateway's ``/query`` with ``key`` (None: no credential)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{urls['gateway']}/query", json.dumps({"sql": sql}).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def explore_get(urls: dict[str, str], key: str, path: str) -> tuple[int, Any]:
    """Status and JSON answer of an Explore API route (``/explore/api/…``)."""
    base = urls["gateway"].removesuffix("/gateway")
    request = urllib.request.Request(f"{base}/explore/api/{path}", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def daemon_pass(stack: Any) -> None:
    """One maintenance pass covering every insert so far (global views and DDL views materialised)."""

    async def run() -> None:
        lake = stack.stack.lakehouse
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    stack.call(run())


def load_owners(stack: Any) -> dict[str, str | None]:
    """Every process and stream id → its stamped ``micromegas.audience`` (None when unstamped)."""

    async def fetch() -> dict[str, str | None]:
        pool = stack.stack.lake.pool
        owners: dict[str, str | None] = {}
        for table in ("processes", "streams"):
            column = "process_id" if table == "processes" else "stream_id"
            rows = await pool.fetch(
                f"SELECT {column}::text AS id, (SELECT p.value FROM unnest(properties) p"
                f" WHERE p.key = '{AUDIENCE_PROPERTY}') AS audience FROM {table}"
            )
            owners.update({row["id"]: row["audience"] for row in rows})
        return owners

    return stack.call(fetch())


def build(stack_factory: Any, dsn: str, capsys: pytest.CaptureFixture[str]) -> AudienceLake:
    """A stack, keys for both audiences and an admin, and both audiences' data in the lake."""
    stack = stack_factory(daemon=False)
    urls = {endpoint.name: endpoint.url for endpoint in stack.endpoints}
    begin_ns = time.time_ns()
    writers = {a: mint(dsn, capsys, "ingestion", f"writer-{a}", "--audience", a) for a in AUDIENCES}
    readers = [
        Principal(f"reader-{a}", mint(dsn, capsys, "analytics", f"reader-{a}", "--audience", a), frozenset({a}))
        for a in AUDIENCES
    ]
    readers.append(Principal("admin", mint(dsn, capsys, "analytics", "admin", "--admin"), None))
    lake = AudienceLake(stack, urls, writers, readers, begin_ns)

    def keys_work() -> bool:
        try:
            return all(len(lake.query(r, "SELECT 1 AS one")) == 1 for r in readers)
        except Exception:
            return False

    wait_until("the minted keys to work", keys_work, timeout=10)
    for audience, transport in zip(AUDIENCES, ("http", "grpc"), strict=True):
        send_native(stack.url, writers[audience], audience)
        assert export_spans(urls, writers[audience], f"svc-{audience}", transport) == "SUCCESS"
    lake.owner = load_owners(stack)
    return lake
