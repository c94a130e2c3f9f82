"""The OTel JavaScript SDK under Node.js → OTLP/HTTP (JSON and protobuf) → Sirius → the lake.

The npm packages pinned in ``otel_js/package-lock.json`` are installed once from the npm
registry (``npm ci``) into a cache folder outside the work tree keyed by the lock file's hash
(``$XDG_CACHE_HOME/sirius-tests`` or ``~/.cache/sirius-tests``), so a fresh machine needs only
Node.js ≥ 18 and npm; later runs reuse the install.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import micromegas
import pytest
from npm_packages import installed_node_modules
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from sirius.collector import OtlpLimits, OtlpService, block_object_key
from sirius.lakehouse import MaintenanceDaemon, PassKind
from sirius.tracing import payload_from_cbor

JS_DIR = Path(__file__).resolve().parent / "otel_js"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return installed_node_modules(JS_DIR, "otel-js", "the OTel JS peer")


def _run_peer(node_modules: Path, base: str, protocol: str, service: str) -> dict:
    result = subprocess.run(
        ["node", str(JS_DIR / "app.js"), base, protocol, service],
        env={**os.environ, "NODE_PATH": str(node_modules)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol", ["json", "proto"])
def test_js_sdk_spans_logs_and_metrics_arrive_whole(stack_factory, node_modules, protocol) -> None:
    stack = stack_factory()
    service = OtlpService(stack.stack.lake, stack.stack.store, grpc_port=None, http_port=0, limits=OtlpLimits())
    port = stack.call(service.start()).http
    try:
        name = f"js-{protocol}"
        sent = _run_peer(node_modules, f"http://127.0.0.1:{port}", protocol, name)
        pool = stack.stack.lake.pool

        async def stored(tag: str) -> list[bytes]:
            rows = await pool.fetch(
                "SELECT b.* FROM blocks b JOIN streams s USING (stream_id) WHERE $1 = ANY(s.tags)", tag
            )
            out = []
            for row in rows:
                key = block_object_key(row["process_id"], row["stream_id"], row["block_id"])
                out.append(payload_from_cbor(await stack.stack.store.get(key)).objects)
            return out

        (process,) = stack.call(pool.fetch("SELECT * FROM processes"))
        assert (process["exe"], process["computer"]) == (name, "js-host")
        props = {p["key"]: p["value"] for p in process["properties"]}
        assert props["otel.resource.service.instance.id"].startswith(f"{name}-")

        spans = {
            s.span_id.hex(): s
            for payload in stack.call(stored("trace"))
            for scope in ResourceSpans.FromString(payload).scope_spans
            for s in scope.spans
        }
        assert {s["spanId"] for s in sent["spans"]} == set(spans)
        for item in sent["spans"]:
            span = spans[item["spanId"]]
            assert span.name == item["name"]
            assert span.trace_id.hex() == sent["traceId"]
            assert span.start_time_unix_nano > 0
        by_name = {s.name: s for s in spans.values()}
        assert by_name["GET /checkout"].kind == 2  # SERVER
        assert by_name["charge card"].status.code == 2  # ERROR
        assert by_name["charge card"].parent_span_id == by_name["GET /checkout"].span_id

        records = [
            r
            for payload in stack.call(stored("log"))
            for scope in ResourceLogs.FromString(payload).scope_logs
            for r in scope.log_records
        ]
        assert sorted(r.body.string_value for r in records) == sorted(sent["logs"])
        assert sorted(r.severity_number for r in records) == [9, 17]
        assert all(r.attributes[0].value.int_value == 42 for r in records)

        all_metrics = [
            m
            for payload in stack.call(stored("metrics"))
            for scope in ResourceMetrics.FromString(payload).scope_metrics
            for m in scope.metrics
        ]
        metrics = {m.name: m for m in all_metrics}
        # forceFlush then shutdown: the SDK exports its cumulative points once per collection.
        exports = sum(len(m.sum.data_points) for m in all_metrics if m.name == "checkout.requests")
        assert metrics["checkout.requests"].sum.data_points[0].as_double == 3  # JS numbers are doubles
        assert metrics["checkout.duration"].histogram.data_points[0].sum == 12.5
        assert metrics["checkout.duration"].unit == "ms"

        # The same data through the views, with the PyPI micromegas client over FlightSQL.
        lake = stack.stack.lakehouse
        report = stack.call(MaintenanceDaemon(lake).run_pass(PassKind.HOUR, lake.now_ns() + 3600 * 10**9))
        assert not report.failures, report.failures
        flight = next(e.url for e in stack.endpoints if e.name == "flightsql")
        client = micromegas.connect(flight)
        rows = client.query(
            f"SELECT encode(span_id, 'hex') AS span_id, name, status FROM otel_spans "
            f"WHERE trace_id = decode('{sent['traceId']}', 'hex') ORDER BY start_time"
        )
        assert set(rows["span_id"]) == {s["spanId"] for s in sent["spans"]}
        assert dict(zip(rows["name"], rows["status"], strict=True))["charge card"] == "ERROR"
        logs = client.query("SELECT msg, level FROM log_entries WHERE exe = '" + name + "' ORDER BY msg")
        assert sorted(logs["msg"]) == sorted(sent["logs"])
        assert sorted(logs["level"]) == [2, 4]  # ERROR (17) and INFO (9) in Micromegas levels
        requests = client.query("SELECT value FROM measures WHERE name = 'checkout.requests'")
        assert list(requests["value"]) == [3.0] * exports
        histogram = client.query(
            "SELECT count, sum, unit FROM histograms WHERE name = 'checkout.duration' AND exe = '" + name + "'"
        )
        assert (list(histogram["sum"]), list(histogram["unit"])) == ([12.5] * exports, ["ms"] * exports)
    finally:
        stack.call(service.stop())
