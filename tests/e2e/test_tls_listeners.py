"""TLS on every listener of a real stack, with a CA made by the test and real clients on each side.

The stack (``sirius up``'s ``Stack``) serves native ingestion, OTLP/gRPC, OTLP/HTTP, FlightSQL and
the gateway/Explore with a server certificate for 127.0.0.1 signed by the test CA. Each client is
given that CA and its data makes the round trip (the native sink and ``sirius spool flush`` in,
the OTel SDK exporters in, the ``micromegas`` client, ADBC, ``sirius query`` and a plain HTTPS
client out). A client holding another CA is refused with a certificate verification failure, and
a plain-text client against a TLS port fails.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import adbc_driver_manager
import certifi
import micromegas
import pytest
from adbc_driver_flightsql import dbapi
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tls_certificates import Pki, make_pki

from sirius.collector import ServerTls
from sirius.flight import run_query
from sirius.otel_bridge import SiriusSpanExporter
from sirius.tracing import (
    Level,
    LogMetadata,
    SinkConfig,
    TelemetrySink,
    TransitWriter,
    current_process_info,
    flush_spool,
)

ADBC_TLS_ROOTS = "adbc.flight.sql.client_option.tls_root_certs"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _no_requests_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """``requests`` (under the OTel HTTP exporter) lets these variables override ``certificate_file``."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def tls_stack(stack_factory, pki: Pki):
    """A stack whose five listeners serve TLS; its own clients (the gateway) trust the test CA."""
    stack = stack_factory(tls=ServerTls.load(pki.cert, pki.key), tls_ca_file=str(pki.ca), daemon=False)
    return stack, {endpoint.name: endpoint.url for endpoint in stack.endpoints}


def _log_block(tag: str) -> tuple[object, list[object], list[object], list[str]]:
    process = current_process_info({"test": tag})
    log = TransitWriter(process, "log")
    messages = [f"{tag} message {i}" for i in range(3)]
    for message in messages:
        log.log_string(LogMetadata("{}", target="app", level=Level.INFO), message, ticks=time.monotonic_ns())
    return process, [log.stream_info()], [log.seal()], messages


def _deliver(url: str, ca_file: str | None, tag: str, *, timeout: float) -> tuple[TelemetrySink, str, list[str]]:
    process, streams, blocks, messages = _log_block(tag)
    sink = TelemetrySink(SinkConfig(url=url, ca_file=ca_file, initial_backoff=0.01, max_backoff=0.1))
    sink.register_process(process)
    for stream in streams:
        sink.register_stream(stream)
    for block in blocks:
        assert sink.send_block(block)
    sink.flush(timeout=timeout)
    return sink, str(process.process_id), messages


def _https_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _micromegas_client(uri: str, bundle: Path, monkeypatch: pytest.MonkeyPatch):
    """The unmodified ``micromegas`` client trusts certifi's bundle only: point certifi at ``bundle``."""
    monkeypatch.setattr(certifi, "where", lambda: str(bundle))
    return micromegas.connect(uri)


def _pem_bundle(pki: Pki, tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + pki.ca.read_bytes())
    return bundle


def _plain_get(conn: http.client.HTTPConnection, name: str) -> None:
    conn.request("GET", "/health")
    response = conn.getresponse()
    pytest.fail(f"{name} answered plain HTTP with {response.status}")  # a TLS port must not


def test_every_listener_announces_tls(tls_stack) -> None:
    _, urls = tls_stack
    assert urls["ingestion"].startswith("https://127.0.0.1:")
    assert urls["otlp-grpc"].startswith("https://127.0.0.1:")
    assert urls["otlp-http"].startswith("https://127.0.0.1:")
    assert urls["flightsql"].startswith("grpc+tls://127.0.0.1:")
    assert urls["gateway"].startswith("https://127.0.0.1:")


def test_native_sink_over_tls_then_micromegas_adbc_and_sirius_query_read_it_back(
    tls_stack, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, urls = tls_stack
    sink, process_id, messages = _deliver(urls["ingestion"], str(pki.ca), "tls-native", timeout=60)
    assert sink.shutdown(timeout=5)
    stats = sink.stats()
    assert (stats.sent_processes, stats.sent_streams, stats.sent_blocks) == (1, 1, 1)
    sql = f"SELECT msg FROM view_instance('log_entries', '{process_id}') ORDER BY time"

    client = _micromegas_client(urls["flightsql"], _pem_bundle(pki, tmp_path), monkeypatch)
    assert list(client.query(sql)["msg"]) == messages

    conn = dbapi.connect(urls["flightsql"], db_kwargs={ADBC_TLS_ROOTS: pki.ca.read_text()}, autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            assert [row[0] for row in cursor.fetchall()] == messages
    finally:
        conn.close()

    code = run_query(sql, uri=urls["flightsql"], output_format="json", ca_file=str(pki.ca), progress=False)
    out = capsys.readouterr().out
    assert code == 0, out
    assert [row["msg"] for row in json.loads(out)] == messages


def test_sirius_query_takes_the_ca_from_the_environment(tls_stack, pki: Pki, monkeypatch, capsys) -> None:
    _, urls = tls_stack
    monkeypatch.setenv("SIRIUS_TLS_CA_FILE", str(pki.ca))
    assert run_query("SELECT 41 + 1 AS answer", uri=urls["flightsql"], output_format="json", progress=False) == 0
    assert json.loads(capsys.readouterr().out) == [{"answer": 42}]


def test_otel_sdk_exporters_over_tls_grpc_and_http(tls_stack, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    stack, urls = tls_stack
    # The gRPC exporter reads its CA from the standard variable; the HTTP one takes certificate_file.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki.ca))
    exporters = {
        "grpc": GrpcSpanExporter(endpoint=urls["otlp-grpc"].removeprefix("https://"), insecure=False),
        "http": HttpSpanExporter(endpoint=f"{urls['otlp-http']}/v1/traces", certificate_file=str(pki.ca)),
    }
    for transport, exporter in exporters.items():
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": f"tls-{transport}"}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("tls").start_as_current_span(f"over-{transport}"):
            pass
        result = exporter.export(memory.get_finished_spans())
        exporter.shutdown()
        assert result.name == "SUCCESS", transport
    pool = stack.stack.lake.pool
    rows = stack.call(pool.fetch("SELECT exe FROM processes ORDER BY exe"))
    assert [row["exe"] for row in rows] == ["tls-grpc", "tls-http"]
    spans = stack.call(
        pool.fetch("SELECT count(*) AS n FROM blocks JOIN streams USING (stream_id) WHERE streams.format LIKE 'otlp%'")
    )
    assert spans[0]["n"] == 2


def test_in_process_sirius_exporter_trusts_the_ca_from_the_environment(
    tls_stack, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, urls = tls_stack
    monkeypatch.setenv("MICROMEGAS_TELEMETRY_URL", urls["ingestion"])
    monkeypatch.setenv("SIRIUS_TLS_CA_FILE", str(pki.ca))
    exporter = SiriusSpanExporter()  # the shared sink, configured from the environment
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "tls-in-process"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tls").start_as_current_span("in-process"):
        pass
    assert exporter.export(memory.get_finished_spans()).name == "SUCCESS"
    assert exporter.force_flush(30_000)
    exporter.shutdown()
    pool = stack.stack.lake.pool
    count = "SELECT count(*) AS n FROM blocks JOIN streams USING (stream_id) WHERE streams.format = 'otlp/v1/traces'"
    assert stack.call(pool.fetch(count))[0]["n"] == 1


def test_spool_flush_delivers_over_tls(tls_stack, pki: Pki, tmp_path: Path) -> None:
    _, urls = tls_stack
    with socket.socket() as s:  # a port nobody listens on: the sink spools at shutdown
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    spool = tmp_path / "spool"
    process, streams, blocks, _ = _log_block("tls-spool")
    sink = TelemetrySink(SinkConfig.resolve(url=dead, spool_dir=spool))
    sink.register_process(process)
    sink.register_stream(streams[0])
    sink.send_block(blocks[0])
    sink.shutdown(timeout=0.5)
    assert sink.stats().spooled_blocks == 1

    refused = flush_spool(spool, url=urls["ingestion"], ca_file=str(pki.other_ca), timeout=1.0)
    assert refused.delivered_blocks == 0
    assert refused.remaining_entries >= 1
    delivered = flush_spool(spool, url=urls["ingestion"], ca_file=str(pki.ca), timeout=60)
    assert (delivered.delivered_blocks, delivered.remaining_entries) == (1, 0)


def test_gateway_and_explore_over_https(tls_stack, pki: Pki) -> None:
    _, urls = tls_stack
    context = _https_context(pki.ca)
    body = json.dumps({"sql": "SELECT 'tls' AS via"}).encode()
    request = urllib.request.Request(
        f"{urls['gateway']}/query", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        assert json.loads(response.read()) == [{"via": "tls"}]
    explore = urls["gateway"].removesuffix("/gateway") + "/"
    with urllib.request.urlopen(explore, context=context, timeout=30) as response:
        assert response.status == 200
        assert "<html" in response.read().decode().lower()


def test_clients_without_the_ca_are_refused(
    tls_stack, pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, urls = tls_stack
    wrong = _https_context(pki.other_ca)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{urls['gateway']}/health", context=wrong, timeout=30)

    # The micromegas client with certifi's own bundle: the test CA is not in it.
    client = micromegas.connect(urls["flightsql"])
    with pytest.raises(Exception, match=r"(?i)certificate.verify.failed"):
        client.query("SELECT 1")

    conn = dbapi.connect(urls["flightsql"], db_kwargs={ADBC_TLS_ROOTS: pki.other_ca.read_text()}, autocommit=True)
    try:
        with (
            pytest.raises(adbc_driver_manager.Error, match="certificate signed by unknown authority"),
            conn.cursor() as cursor,
        ):
            cursor.execute("SELECT 1")
    finally:
        conn.close()

    assert run_query("SELECT 1", uri=urls["flightsql"], ca_file=str(pki.other_ca), progress=False) == 2
    assert "TLS certificate is not trusted" in capsys.readouterr().err

    sink, _, _ = _deliver(urls["ingestion"], str(pki.other_ca), "tls-untrusted", timeout=1.0)
    stats = sink.stats()
    sink.shutdown(timeout=0.5)
    assert stats.sent_processes == 0
    assert stats.sent_blocks == 0

    exporter = HttpSpanExporter(
        endpoint=f"{urls['otlp-http']}/v1/traces", certificate_file=str(pki.other_ca), timeout=5
    )
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tls").start_as_current_span("refused"):
        pass
    assert exporter.export(memory.get_finished_spans()).name == "FAILURE"
    exporter.shutdown()


def test_plain_text_clients_against_tls_listeners_fail(tls_stack, capsys: pytest.CaptureFixture[str]) -> None:
    _, urls = tls_stack
    for name in ("ingestion", "otlp-http", "gateway"):
        port = int(urls[name].split(":")[2].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            with pytest.raises((ConnectionError, http.client.HTTPException)):
                _plain_get(conn, name)
        finally:
            conn.close()

    plain_flight = urls["flightsql"].replace("grpc+tls://", "grpc://")
    assert run_query("SELECT 1", uri=plain_flight, progress=False) == 2
    assert "FlightSQL" in capsys.readouterr().err

    grpc_plain = GrpcSpanExporter(endpoint=urls["otlp-grpc"].removeprefix("https://"), insecure=True, timeout=5)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tls").start_as_current_span("plain"):
        pass
    assert grpc_plain.export(memory.get_finished_spans()).name == "FAILURE"
    grpc_plain.shutdown()
