"""OIDC tokens at every listener of a real stack, with real clients, against a local issuer.

The stack (``sirius.admin`` Stack over this test's PostgreSQL) is configured with
``MICROMEGAS_OIDC_CONFIG`` naming the loopback issuer. Valid tokens go through the ``micromegas``
client (its own client-credentials provider), ADBC (the authorization header), the OTel SDK's
OTLP exporters (HTTP and gRPC, an ``authorization`` header), the gateway and ``sirius query``
(client credentials from the ``MICROMEGAS_OIDC_*`` variables). Each kind of bad token is refused
with 401/UNAUTHENTICATED and its reason at FlightSQL, the gateway, OTLP gRPC/HTTP and native
ingestion. The issuer rotates its key mid-test and the new tokens are accepted.
"""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_manager
import grpc
import pytest
from adbc_driver_flightsql import dbapi
from micromegas.auth import OidcClientCredentialsProvider, StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).parent))

from _issuer import LocalIssuer, new_rsa

from sirius.flight import run_query
from sirius.flight.explore import run_services


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    running = LocalIssuer().start()
    yield running
    running.stop()


class OidcStack:
    def __init__(self, stack: Any) -> None:
        self.stack = stack
        urls = {e.name: e.url for e in stack.endpoints}
        self.flight = urls["flightsql"]
        self.gateway = urls["gateway"]
        self.otlp_http = urls["otlp-http"]
        self.otlp_grpc = urls["otlp-grpc"].split("://", 1)[1]
        self.ingestion = urls["ingestion"]

    def blocks(self) -> int:
        return self.stack.call(self.stack.stack.lake.pool.fetchval("SELECT count(*) FROM blocks"))


@pytest.fixture
def oidc_stack(issuer: LocalIssuer, stack_factory: Any, monkeypatch: pytest.MonkeyPatch) -> OidcStack:
    config = {"issuers": [{"issuer": issuer.url, "audience": "sirius"}], "jwks_min_refetch_interval_secs": 0}
    monkeypatch.setenv("MICROMEGAS_OIDC_CONFIG", json.dumps(config))
    monkeypatch.setenv("MICROMEGAS_ADMINS", '["alice@example.com"]')
    return OidcStack(stack_factory(daemon=False))


def bad_tokens(issuer: LocalIssuer) -> dict[str, tuple[str, str]]:
    """label → (token, the reason the servers must give)."""
    now = int(time.time())
    return {
        "expired": (issuer.mint(exp=now - 3600, iat=now - 7200), "token expired at"),
        "wrong aud": (issuer.mint(aud="grafana"), "wrong audience"),
        "wrong iss": (issuer.mint(iss="https://other.example.com"), "wrong issuer"),
        "bad signature": (issuer.mint(new_rsa(issuer.rsa.kid)), "bad signature"),
        "alg none": (issuer.mint_unsigned(), "unsigned token refused (alg 'none')"),
        "unknown kid": (issuer.mint(new_rsa("ghost")), "unknown signing key id (kid) 'ghost'"),
    }


def _gateway_query(stack: OidcStack, authorization: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    body = json.dumps({"sql": "SELECT 1 AS one"}).encode()
    request = urllib.request.Request(f"{stack.gateway}/query", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _spans() -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "oidc-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("oidc").start_as_current_span("GET /orders"):
        pass
    return list(memory.get_finished_spans())


def test_valid_tokens_work_with_every_real_client(issuer: LocalIssuer, oidc_stack: OidcStack) -> None:
    # the micromegas client, with its own client-credentials provider against the issuer
    provider = OidcClientCredentialsProvider(issuer.url, "batch-job", "s3cret", audience="sirius")
    frame = FlightSQLClient(oidc_stack.flight, auth_provider=provider).query("SELECT 41 + 1 AS answer")
    assert frame["answer"].tolist() == [42]

    # ADBC, with a person's token in the authorization header
    token = issuer.mint()
    with dbapi.connect(
        oidc_stack.flight, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    ) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 7 AS x")
        assert cursor.fetch_arrow_table()["x"].to_pylist() == [7]
        cursor.close()

    # the gateway, with the same token
    assert _gateway_query(oidc_stack, f"Bearer {token}") == (200, [{"one": 1}])

    # the OTel SDK's OTLP exporters with an Authorization header: the spans are stored
    before = oidc_stack.blocks()
    http = HttpSpanExporter(endpoint=f"{oidc_stack.otlp_http}/v1/traces", headers={"authorization": f"Bearer {token}"})
    assert http.export(_spans()) is SpanExportResult.SUCCESS
    grpc_exporter = GrpcSpanExporter(
        endpoint=oidc_stack.otlp_grpc, insecure=True, headers=(("authorization", f"Bearer {token}"),)
    )
    assert grpc_exporter.export(_spans()) is SpanExportResult.SUCCESS
    assert oidc_stack.blocks() == before + 2
    refused = HttpSpanExporter(endpoint=f"{oidc_stack.otlp_http}/v1/traces", headers={"authorization": "Bearer x.y.z"})
    assert refused.export(_spans()) is SpanExportResult.FAILURE
    assert oidc_stack.blocks() == before + 2


def test_sirius_query_uses_client_credentials(
    issuer: LocalIssuer, oidc_stack: OidcStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROMEGAS_OIDC_ISSUER", issuer.url)
    monkeypatch.setenv("MICROMEGAS_OIDC_CLIENT_ID", "batch-job")
    monkeypatch.setenv("MICROMEGAS_OIDC_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("MICROMEGAS_OIDC_AUDIENCE", "sirius")
    out, err = io.StringIO(), io.StringIO()
    assert run_query("SELECT 5 AS five", uri=oidc_stack.flight, output_format="json", out=out, err=err) == 0, (
        err.getvalue()
    )
    assert json.loads(out.getvalue()) == [{"five": 5}]
    assert issuer.token_requests[-1]["grant_type"] == "client_credentials"
    fetched = len(issuer.token_requests)
    # the Explore terminal commands query the same way; the token is reused, not fetched again
    out, err = io.StringIO(), io.StringIO()
    assert run_services(uri=oidc_stack.flight, begin="1h", out=out, err=err) == 0, err.getvalue()
    assert len(issuer.token_requests) == fetched

    monkeypatch.setenv("MICROMEGAS_OIDC_CLIENT_SECRET", "wrong")
    out, err = io.StringIO(), io.StringIO()
    assert run_query("SELECT 5", uri=oidc_stack.flight, out=out, err=err) == 2
    assert "invalid_client" in err.getvalue()


def test_bad_tokens_are_refused_with_their_reason_everywhere(issuer: LocalIssuer, oidc_stack: OidcStack) -> None:
    otlp_channel = grpc.insecure_channel(oidc_stack.otlp_grpc)
    otlp_stub = trace_service_pb2_grpc.TraceServiceStub(otlp_channel)
    before = oidc_stack.blocks()
    for label, (token, reason) in bad_tokens(issuer).items():
        bearer = f"Bearer {token}"
        # FlightSQL through the micromegas client
        with pytest.raises(Exception, match=r"UNAUTHENTICATED|nauthenticated") as flight_error:
            FlightSQLClient(oidc_stack.flight, auth_provider=StaticTokenAuthProvider(token)).query("SELECT 1")
        assert reason in str(flight_error.value), (label, str(flight_error.value))
        # FlightSQL through ADBC
        with (
            pytest.raises(adbc_driver_manager.Error) as adbc_error,
            dbapi.connect(oidc_stack.flight, db_kwargs={"adbc.flight.sql.authorization_header": bearer}) as conn,
        ):
            conn.cursor().execute("SELECT 1")
        assert "UNAUTHENTICATED" in str(adbc_error.value), label
        assert reason in str(adbc_error.value), (label, str(adbc_error.value))
        # the gateway
        status, body = _gateway_query(oidc_stack, bearer)
        assert status == 401, label
        assert reason in body["error"], (label, body)
        # OTLP/HTTP (JSON status) and OTLP/gRPC
        status, raw = _post(
            f"{oidc_stack.otlp_http}/v1/traces", b"{}", {"Content-Type": "application/json", "Authorization": bearer}
        )
        assert status == 401, label
        assert reason in json.loads(raw)["message"], (label, raw)
        with pytest.raises(grpc.RpcError) as rpc_error:
            otlp_stub.Export(trace_service_pb2.ExportTraceServiceRequest(), metadata=(("authorization", bearer),))
        assert rpc_error.value.code() is grpc.StatusCode.UNAUTHENTICATED, label
        assert reason in (rpc_error.value.details() or ""), (label, rpc_error.value.details())
        # native ingestion
        status, raw = _post(f"{oidc_stack.ingestion}/ingestion/insert_process", b"", {"Authorization": bearer})
        assert status == 401, label
        assert reason in raw.decode(), (label, raw)
    otlp_channel.close()
    assert oidc_stack.blocks() == before


def test_key_rotation_mid_test(issuer: LocalIssuer, oidc_stack: OidcStack) -> None:
    assert _gateway_query(oidc_stack, f"Bearer {issuer.mint()}")[0] == 200
    old_key = issuer.rsa
    issuer.rotate()
    fresh = issuer.mint()  # signed with the new key, whose kid the services have not seen
    assert _gateway_query(oidc_stack, f"Bearer {fresh}") == (200, [{"one": 1}])
    frame = FlightSQLClient(oidc_stack.flight, auth_provider=StaticTokenAuthProvider(fresh)).query("SELECT 3 AS n")
    assert frame["n"].tolist() == [3]
    # a token of the retired key (never seen before) is refused: its kid left the JWKS
    status, body = _gateway_query(oidc_stack, f"Bearer {issuer.mint(old_key, jti='late')}")
    assert status == 401
    assert "unknown signing key id (kid) 'rsa-1'" in body["error"]


def test_admins_named_by_email_run_admin_functions(issuer: LocalIssuer, oidc_stack: OidcStack) -> None:
    admin_sql = "SELECT count(*) AS n FROM list_query_denials()"
    alice = FlightSQLClient(oidc_stack.flight, auth_provider=StaticTokenAuthProvider(issuer.mint()))
    assert alice.query(admin_sql)["n"].tolist() == [0]  # alice@example.com is in MICROMEGAS_ADMINS
    bob = StaticTokenAuthProvider(issuer.mint(email="bob@example.com", sub="user-2"))
    with pytest.raises(Exception, match="list_query_denials is reserved to lakehouse administrators"):
        FlightSQLClient(oidc_stack.flight, auth_provider=bob).query(admin_sql)  # PERMISSION_DENIED
