"""The Explore browser tests' stack and browser: one ``sirius up`` fed with known data, one Chromium.

The fixtures are re-exported by ``conftest.py``; test modules import the helpers from here.

The stack is a real ``sirius up --fast-unsafe`` subprocess on free ports with its own data
directory. It is fed the way users feed it: the demo's sample shop (``sirius.admin._demo_app``:
OTel SDK over OTLP/gRPC plus the native tracer over the ingestion route, seeded so its errors
are known in advance), then, from this process with the OTel SDK over OTLP/HTTP, one trace of
exactly 10 000 spans and a gauge with points at known times. The fixture waits for all of it to
answer over FlightSQL (polling with a deadline) before any test opens a page.

The browser is Debian's Chromium driven by Playwright (see ``_chromium.py``); screenshots go to
``test-artifacts/explore/`` under the repository (git-ignored).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _chromium import chromium_context, find_chromium
from waiting import wait_until  # tests/ is on sys.path (tests/conftest.py)

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "explore"
SIRIUS = [sys.executable, "-m", "sirius.admin.cli"]
PORT_FLAGS = [a for n in ("ingestion", "otlp-grpc", "otlp-http", "flight", "gateway") for a in (f"--{n}-port", "0")]
MS = 1_000_000
SEED = 11
REQUESTS = 30
ROUTES = ("GET /products", "GET /cart", "POST /checkout")
BIG_SERVICE = "bulk-loader"
BIG_CHILDREN = 99  # root + 99 children + 99 * 100 grandchildren = 10 000 spans
BIG_GRANDCHILDREN = 100
BIG_SPANS = 1 + BIG_CHILDREN + BIG_CHILDREN * BIG_GRANDCHILDREN
GAUGE = "queue.depth"
GAUGE_MINUTES_AGO = (50, 40, 30, 20, 10)  # one point each: five distinct buckets of a 1 h range


@dataclass(frozen=True, slots=True)
class ShopExpectation:
    """What the seeded sample shop sends, worked out from its random sequence."""

    requests: int
    failed: int
    checkouts: int


def expected_shop(requests: int = REQUESTS, seed: int = SEED) -> ShopExpectation:
    """Replay ``_demo_app._request``'s draws: which requests fail (25 % of checkouts, seeded).

    The requests' start times (``_demo_app.arrivals``) come from a generator of their own, so
    this sequence is ``random.Random(seed)``'s alone.
    """
    rng = random.Random(seed)
    failed = checkouts = 0
    for i in range(requests):
        route = ROUTES[i % len(ROUTES)]
        rng.lognormvariate(3.0, 0.6)
        is_checkout = route == "POST /checkout"
        failed += is_checkout and rng.random() < 0.25
        if is_checkout:
            checkouts += 1
            rng.uniform(5, 500)
    return ShopExpectation(requests, failed, checkouts)


@dataclass(frozen=True, slots=True)
class ExploreStack:
    """A running ``sirius up`` with the test data in it."""

    gateway: str
    flightsql: str
    otlp_http: str
    data_dir: Path
    run_id: str
    shop: ShopExpectation
    big_trace_id: str
    failed_trace_id: str
    native_process_id: str

    def url(self, path: str) -> str:
        """Absolute URL of an Explore page or API path on this stack."""
        return self.gateway.rstrip("/") + path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}
    return {**env, "SIRIUS_SELF_TELEMETRY": "0"}  # Explore's services are the test's only


def _start_up(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str], Path]:
    log = data_dir.parent / "up.stderr"
    proc = subprocess.Popen(
        [*SIRIUS, "up", "--fast-unsafe", "--data-dir", str(data_dir), *PORT_FLAGS],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert proc.stdout is not None
    endpoints: dict[str, str] = {}
    while len(endpoints) < 5:  # one line per listening service, then the export lines
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"sirius up exited early:\n{log.read_text()[-4000:]}")
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith(("http://", "grpc://")):
            endpoints[parts[0]] = parts[1]
    return proc, endpoints, log


def _query(flightsql: str, sql: str) -> list[dict[str, Any]]:
    from sirius.flight import query_table
    from sirius.tracing import format_rfc3339_ns

    end = format_rfc3339_ns(time.time_ns() + 300 * 1_000_000_000)  # the shop's last spans end about now
    return query_table(sql, uri=flightsql, begin="2h", end=end).to_pylist()


def _feed_big_trace_and_gauge(otlp_http: str) -> str:
    """One 10 000-span trace and a gauge with points at known times, through the OTel SDK."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import (
        Gauge,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    resource = Resource.create({"service.name": BIG_SERVICE, "service.instance.id": "bulk-1"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{otlp_http}/v1/traces"),
            max_queue_size=BIG_SPANS + 10,
            max_export_batch_size=2000,
        )
    )
    tracer = provider.get_tracer("sirius.tests.explore")
    start = time.time_ns() - 15 * 60 * 1_000_000_000
    root = tracer.start_span("import batch", start_time=start, kind=trace.SpanKind.SERVER)
    root_ctx = trace.set_span_in_context(root)
    for c in range(BIG_CHILDREN):
        c_start = start + c * 10 * MS
        child = tracer.start_span(f"load shard {c}", context=root_ctx, start_time=c_start)
        child_ctx = trace.set_span_in_context(child)
        for g in range(BIG_GRANDCHILDREN):
            g_start = c_start + g * 90_000
            tracer.start_span(f"row {g}", context=child_ctx, start_time=g_start).end(end_time=g_start + 80_000)
        child.end(end_time=c_start + 9 * MS)
    root.end(end_time=start + BIG_CHILDREN * 10 * MS)
    trace_id = f"{root.get_span_context().trace_id:032x}"
    provider.force_flush(60_000)
    provider.shutdown()

    now = time.time_ns()
    points = [
        NumberDataPoint(
            attributes={"queue": "orders"},
            start_time_unix_nano=0,
            time_unix_nano=now - minutes * 60 * 1_000_000_000,
            value=float(minutes),
        )
        for minutes in GAUGE_MINUTES_AGO
    ]
    metric = Metric(name=GAUGE, description="items waiting", unit="1", data=Gauge(data_points=points))
    data = MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=resource,
                scope_metrics=[
                    ScopeMetrics(scope=InstrumentationScope("sirius.tests.explore"), metrics=[metric], schema_url="")
                ],
                schema_url="",
            )
        ]
    )
    exporter = OTLPMetricExporter(endpoint=f"{otlp_http}/v1/metrics")
    result = exporter.export(data)
    exporter.shutdown()
    assert result.name == "SUCCESS", result
    return trace_id


@pytest.fixture(scope="session")
def explore_stack() -> Iterator[ExploreStack]:
    """``sirius up`` on free ports, fed by the sample shop and the 10 000-span trace."""
    root = Path(tempfile.mkdtemp(prefix="sirius-explore-", dir="/tmp"))
    os.chmod(root, 0o755)  # the postgres OS user must traverse it when tests run as root
    proc, urls, log = _start_up(root / "data")
    try:
        run_id = uuid.uuid4().hex[:12]
        feeder = subprocess.run(
            [
                sys.executable,
                "-m",
                "sirius.admin._demo_app",
                "--otlp",
                urls["otlp-grpc"],
                "--ingestion",
                urls["ingestion"],
                "--requests",
                str(REQUESTS),
                "--seed",
                str(SEED),
                "--run-id",
                run_id,
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert feeder.returncode == 0, feeder.stdout + feeder.stderr
        big_trace_id = _feed_big_trace_and_gauge(urls["otlp-http"])
        shop = expected_shop()
        flight = urls["flightsql"]

        def wait_count(what: str, sql: str, expected: int) -> None:
            counts: list[int] = []

            def probe() -> bool:
                counts.append(_query(flight, sql)[0]["n"])
                return counts[-1] >= expected

            try:
                wait_until(what, probe)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {sql} -> {counts[-1:]}, expected {expected}") from None

        roots = "SELECT count(*) AS n FROM otel_spans WHERE service_name = 'shop-frontend' AND parent_span_id IS NULL"
        wait_count("the sample shop's root spans", roots, shop.requests)
        big = f"SELECT count(*) AS n FROM otel_spans WHERE trace_id = '{big_trace_id}'"
        wait_count("the 10 000-span trace", big, BIG_SPANS)
        gauge = f"SELECT count(*) AS n FROM measures WHERE name = '{GAUGE}'"
        wait_count("the gauge points", gauge, len(GAUGE_MINUTES_AGO))
        # The sample's error logs: one per failed checkout from each service, one from the native tracer.
        wait_count("the error logs", "SELECT count(*) AS n FROM log_entries WHERE level <= 2", 2 * shop.failed + 1)
        failed = _query(
            flight,
            "SELECT encode(trace_id, 'hex') AS t FROM otel_spans WHERE name = 'POST /checkout' "
            "AND status = 'ERROR' ORDER BY duration DESC LIMIT 1",
        )
        native = wait_until(
            "the native process",
            lambda: _query(
                flight,
                "SELECT arrow_cast(process_id, 'Utf8') AS p FROM processes WHERE exe = 'shop-frontend (native)'",
            ),
        )
        yield ExploreStack(
            gateway=urls["gateway"].removesuffix("/gateway"),  # the banner names the gateway's query route
            flightsql=flight,
            otlp_http=urls["otlp-http"],
            data_dir=root / "data",
            run_id=run_id,
            shop=shop,
            big_trace_id=big_trace_id,
            failed_trace_id=failed[0]["t"],
            native_process_id=native[0]["p"],
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.returncode not in (0, -15):
            print(log.read_text()[-4000:], file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium, installed on first use (never skipped)."""
    return find_chromium()


@pytest.fixture(scope="module")
def browser_context(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile, 1280x800."""
    with chromium_context(chromium_path, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A fresh tab; an uncaught error in the page (``page.errors``) fails the test."""
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.errors = errors  # type: ignore[attr-defined]
    yield tab
    tab.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def emit_log(stack: ExploreStack, message: str) -> None:
    """One warning log record of ``BIG_SERVICE`` through the OTel SDK's logger provider over OTLP/HTTP."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": BIG_SERVICE, "service.instance.id": "bulk-1"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{stack.otlp_http}/v1/logs")))
    provider.get_logger("sirius.tests.explore").emit(
        LogRecord(timestamp=time.time_ns(), severity_number=SeverityNumber.WARN, severity_text="WARN", body=message)
    )
    provider.shutdown()


def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``test-artifacts/explore/<name>.png`` and return the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
