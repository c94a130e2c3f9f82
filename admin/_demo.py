"""``sirius demo``: the whole system in one command, on the embedded default.

It starts the all-in-one stack (embedded PostgreSQL and local objects under the data
directory, every service on a free port), runs the sample service of ``_demo_app`` as a
separate process (OTel SDK over OTLP/gRPC and the native tracer over the ingestion route),
makes its data queryable with one maintenance pass, then asks the FlightSQL server — the path
the ``micromegas`` client and Grafana take — a few questions and prints the answers, and the
commands to keep exploring. Everything stops at the end; the data stays in the data directory.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..flight import format_table, query_table
from ..lakehouse import MaintenanceDaemon, PassKind
from ..tracing import format_rfc3339_ns
from ._stack import Stack, StackOptions

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class DemoQuery:
    """One question the demo asks, with the SQL that answers it."""

    title: str
    sql: str


def demo_queries() -> list[DemoQuery]:
    """The demo's questions, in the order they are printed."""
    return [
        DemoQuery(
            "Processes that reported",
            "SELECT exe, computer, arrow_cast(start_time, 'Utf8') AS start_time, process_id "
            "FROM processes ORDER BY exe",
        ),
        DemoQuery(
            "Slowest OTel spans",
            "SELECT exe AS service, name, round(arrow_cast(duration, 'Float64') / 1e6, 2) AS duration_ms, "
            "encode(trace_id, 'hex') AS trace_id FROM otel_spans ORDER BY duration DESC LIMIT 5",
        ),
        DemoQuery(
            "Error logs (OTel and native)",
            "SELECT arrow_cast(time, 'Utf8') AS time, target, msg FROM log_entries "
            "WHERE level <= 2 ORDER BY time LIMIT 8",
        ),
        DemoQuery(
            "p99 of http.server.duration by route (ms)",
            "SELECT property_get(properties, 'http.route') AS route, count AS requests, "
            "round(histogram_quantile(bounds, counts, 0.99), 1) AS p99_ms "
            "FROM histograms WHERE name = 'http.server.duration' ORDER BY route",
        ),
        DemoQuery(
            "One whole trace across services (the slowest failed checkout)",
            "SELECT exe AS service, name, round(arrow_cast(duration, 'Float64') / 1e6, 2) AS ms, status "
            "FROM otel_spans WHERE trace_id = ("
            "SELECT trace_id FROM otel_spans WHERE name = 'POST /checkout' AND status = 'ERROR' "
            "ORDER BY duration DESC LIMIT 1"
            ") ORDER BY start_time",
        ),
        DemoQuery(
            "Native thread spans of the frontend (C tracer, real work)",
            "SELECT name, count(*) AS calls, round(avg(arrow_cast(duration, 'Float64')) / 1e6, 3) AS avg_ms, "
            "round(max(arrow_cast(duration, 'Float64')) / 1e6, 3) AS max_ms FROM process_spans("
            "(SELECT arrow_cast(process_id, 'Utf8') FROM processes "
            "WHERE property_get(properties, 'demo') = 'sirius' ORDER BY start_time DESC LIMIT 1), 'thread') "
            "GROUP BY name ORDER BY max_ms DESC",
        ),
    ]


def _run_query(uri: str, query: DemoQuery, begin_ns: int, end_ns: int) -> str:
    try:
        table: pa.Table = query_table(
            query.sql, uri=uri, begin=format_rfc3339_ns(begin_ns), end=format_rfc3339_ns(end_ns)
        )
    except Exception as exc:  # noqa: BLE001 - a demo prints what failed and carries on
        return f"(query failed: {exc})"
    return format_table(table)


async def run_demo(data_dir: Path, *, requests: int = 60, seed: int = 7) -> int:
    """Run the demo; returns the process exit code (0 when every step worked)."""
    options = StackOptions(
        data_dir=data_dir,
        ingestion_port=0,
        otlp_grpc_port=0,
        otlp_http_port=0,
        flight_port=0,
        gateway_port=0,
        daemon=False,  # the demo runs its maintenance pass itself, once the sample is in
    )
    stack = Stack(options)
    endpoints = {e.name: e.url for e in await stack.start()}
    try:
        print("sirius demo: the stack is up on the embedded default")
        for name, url in endpoints.items():
            print(f"  {name:<10} {url}")
        begin_ns = time.time_ns() - 3600 * NS  # the sample lays its requests out over the recent past
        print(f"\nrunning the sample shop ({requests} requests; OTel SDK over OTLP/gRPC + native tracer)…")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sirius.admin._demo_app",
            "--otlp",
            endpoints["otlp-grpc"],
            "--ingestion",
            endpoints["ingestion"],
            "--requests",
            str(requests),
            "--seed",
            str(seed),
        )
        if await proc.wait() != 0:
            print("sirius demo: the sample service failed", file=sys.stderr)
            return 1
        lakehouse = stack.lakehouse
        if lakehouse is None:
            return 1
        # One minute pass scheduled two minutes ahead covers every block inserted so far: the
        # global views are materialised now instead of over the next seconds.
        await MaintenanceDaemon(lakehouse).run_pass(PassKind.MINUTE, lakehouse.now_ns() + 120 * NS)
        end_ns = time.time_ns() + 60 * NS
        failures = 0
        for query in demo_queries():
            text = await asyncio.to_thread(_run_query, endpoints["flightsql"], query, begin_ns, end_ns)
            failures += text.startswith("(query failed") or text == "no data"
            print(f"\n== {query.title}\n{text}")
        print(f"\nThe data stays in {data_dir}. To explore it further:\n  sirius up --data-dir {data_dir}")
        print(
            '  sirius query "SELECT * FROM log_entries ORDER BY time DESC LIMIT 20" --begin 2h\n'
            "  python -c \"import micromegas; print(micromegas.connect().query('SELECT * FROM processes'))\"\n"
            "(the micromegas client reads MICROMEGAS_ANALYTICS_URI, default grpc://localhost:50051)"
        )
        return 0 if failures == 0 else 1
    finally:
        await stack.stop()
