"""Audiences in Explore's screens: each team's reader, in a real browser, sees its own team only.

One stack, two teams (``team-a``, ``team-b``). Each team writes with its own minted ingestion key
through real producers: the OTel SDK (spans and log records over OTLP/HTTP, a gauge over
OTLP/HTTP) and the native tracer (a process with log, metrics and cpu streams), every name
carrying the team's word (``amber`` or ``cobalt``) so that any leak shows in the page's text. A
maintenance pass materialises the global views (whose partitions hold both teams' rows).

Then Debian's Chromium (Playwright) opens Explore once per team, in its own browser context; the
first refused call brings up the key dialog, where the team's analytics key is typed. Every screen
— services, a service, trace search, the team's trace, logs (and its SQL panel's query run in the
SQL screen), metrics (list and chart), processes, a native process, the SQL screen — is checked
against the page's DOM: the team's names are there, the other team's word appears nowhere in the
document (text, attributes, the collapsed SQL panel). The other team's trace, process, service
and metric, opened by their addresses, show "not found" or an empty screen. Screenshots go to
``test-artifacts/explore/audience-<team>-<screen>.png``.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
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
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e" / "explore"))

from _audience_lake import daemon_pass, deliver, explore_get, mint
from _chromium import LAUNCH_ARGS
from _explore_stack import ARTIFACTS, chromium_path  # fixture: Debian's Chromium, installed on first use
from waiting import wait_until

from sirius.lakehouse import AUDIENCE_PROPERTY
from sirius.tracing import (
    Level,
    LogMetadata,
    MetricMetadata,
    SpanMetadata,
    TransitWriter,
    current_process_info,
)

__all__ = ["chromium_path"]

pytestmark = pytest.mark.timeout(900)  # the first use may install Debian's chromium
READY_MS = 30_000


@dataclass(frozen=True, slots=True)
class Team:
    """One audience's producers and the names they write, all carrying the team's ``word``."""

    audience: str
    word: str

    @property
    def service(self) -> str:
        return f"{self.word}-api"

    @property
    def worker(self) -> str:
        return f"{self.word}-worker"

    @property
    def root_span(self) -> str:
        return f"{self.word} GET /orders"

    @property
    def child_span(self) -> str:
        return f"{self.word} SELECT orders"

    @property
    def otel_log(self) -> str:
        return f"{self.word} order placed"

    @property
    def native_log(self) -> str:
        return f"{self.word} worker message"

    @property
    def gauge(self) -> str:
        return f"{self.word}.queue.depth"

    @property
    def native_metric(self) -> str:
        return f"{self.word}_latency"

    @property
    def thread_span(self) -> str:
        return f"{self.word}-work"


TEAMS = (Team("team-a", "amber"), Team("team-b", "cobalt"))


@dataclass(frozen=True, slots=True)
class TeamData:
    """What one team wrote, and the key its reader types into Explore."""

    team: Team
    reader_key: str
    trace_id: str
    native_process_id: str
    process_ids: frozenset[str]
    """Every process stamped with the team's audience (native and OTLP), from PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Lake:
    base: str
    """Explore's root: the gateway's address without ``/gateway``."""
    teams: tuple[TeamData, TeamData]


def _send_otel(urls: dict[str, str], key: str, team: Team) -> str:
    """A two-span trace with a log record inside it and a gauge, through the OTel SDK; the trace id."""
    headers = {"authorization": f"Bearer {key}"}
    resource = Resource.create({"service.name": team.service, "service.instance.id": f"{team.word}-1"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{urls['otlp-http']}/v1/traces", headers=headers))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{urls['otlp-http']}/v1/logs", headers=headers))
    )
    tracer = tracer_provider.get_tracer("audiences.explore")
    logger = logger_provider.get_logger("audiences.explore")
    with tracer.start_as_current_span(team.root_span, kind=trace.SpanKind.SERVER) as root:
        with tracer.start_as_current_span(team.child_span):
            logger.emit(
                timestamp=time.time_ns(), severity_number=SeverityNumber.INFO, severity_text="INFO", body=team.otel_log
            )
    trace_id = f"{root.get_span_context().trace_id:032x}"
    tracer_provider.shutdown()
    logger_provider.shutdown()

    now = time.time_ns()
    points = [
        NumberDataPoint(
            attributes={"queue": team.word},
            start_time_unix_nano=0,
            time_unix_nano=now - m * 60_000_000_000,
            value=float(m),
        )
        for m in (3, 2, 1)
    ]
    metric = Metric(name=team.gauge, description="items waiting", unit="1", data=Gauge(data_points=points))
    scope = ScopeMetrics(scope=InstrumentationScope("audiences.explore"), metrics=[metric], schema_url="")
    data = MetricsData(resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[scope], schema_url="")])
    exporter = OTLPMetricExporter(endpoint=f"{urls['otlp-http']}/v1/metrics", headers=headers)
    try:
        assert exporter.export(data).name == "SUCCESS"
    finally:
        exporter.shutdown()
    return trace_id


def _send_native(url: str, key: str, team: Team) -> str:
    """A native process named for the team: log, metrics and cpu streams through the sink; its id."""
    process = current_process_info({"team": team.word}, exe=team.worker)
    now = time.monotonic_ns
    log = TransitWriter(process, "log")
    metrics = TransitWriter(process, "metrics")
    cpu = TransitWriter(process, "cpu", properties={"thread-id": "1", "thread-name": f"{team.word}-main"})
    span = SpanMetadata(team.thread_span, target="app")
    cpu.begin_thread_span(span, ticks=now())
    for i in range(3):
        log.log_string(LogMetadata("{}", target="app", level=Level.INFO), f"{team.native_log} {i}", ticks=now())
        metrics.metric_float(MetricMetadata(team.native_metric, unit="ms", target="app"), float(i), ticks=now())
    cpu.end_thread_span(span, ticks=now())
    deliver(url, key, process, (log, metrics, cpu))
    return str(process.process_id)


def _processes_by_audience(stack: Any) -> dict[str | None, set[str]]:
    async def fetch() -> dict[str | None, set[str]]:
        rows = await stack.stack.lake.pool.fetch(
            "SELECT process_id::text AS id, (SELECT p.value FROM unnest(properties) p"
            f" WHERE p.key = '{AUDIENCE_PROPERTY}') AS audience FROM processes"
        )
        found: dict[str | None, set[str]] = {}
        for row in rows:
            found.setdefault(row["audience"], set()).add(row["id"])
        return found

    return stack.call(fetch())


@pytest.fixture
def lake(stack_factory: Any, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> Lake:
    """Both teams' data in one stack, materialised, and each team's analytics key."""
    stack = stack_factory(daemon=False)
    urls = {endpoint.name: endpoint.url for endpoint in stack.endpoints}
    written: list[tuple[Team, str, str, str]] = []
    for team in TEAMS:
        writer = mint(pg_dsn, capsys, "ingestion", f"writer-{team.audience}", "--audience", team.audience)
        reader = mint(pg_dsn, capsys, "analytics", f"reader-{team.audience}", "--audience", team.audience)
        wait_until("the minted reader key to work", lambda key=reader: explore_get(urls, key, "processes")[0] == 200)
        native = _send_native(stack.url, writer, team)
        written.append((team, reader, _send_otel(urls, writer, team), native))
    daemon_pass(stack)
    owned = _processes_by_audience(stack)
    teams = tuple(
        TeamData(team, reader, trace_id, native, frozenset(owned.get(team.audience, ())))
        for team, reader, trace_id, native in written
    )
    for data in teams:
        assert data.native_process_id in data.process_ids
        assert len(data.process_ids) == 2, "one native process and one OTLP process per team"
    return Lake(urls["gateway"].removesuffix("/gateway"), teams)  # type: ignore[arg-type]


@pytest.fixture
def browser(lake: Lake, chromium_path: Path) -> Iterator[Any]:
    """Headless Chromium, started after the stack and its data (Playwright's sync API runs an event
    loop in this thread: the fixtures that use asyncio.run must be set up before it)."""
    from playwright.sync_api import sync_playwright

    del lake
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium_path), args=list(LAUNCH_ARGS), headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Screens:
    """One principal's tab: opens screens by address and reads the DOM."""

    def __init__(self, page: Any, base: str, me: TeamData, other: TeamData) -> None:
        self.page = page
        self.base = base
        self.me = me
        self.other = other

    def open(self, path: str, screen: str, states: tuple[str, ...] = ("ready",)) -> str:
        self.page.goto(self.base + path)
        return self.wait(screen, states)

    def wait(self, screen: str, states: tuple[str, ...] = ("ready",)) -> str:
        self.page.wait_for_function(
            "s => { const m = document.querySelector('#screen');"
            " return m && m.dataset.screen === s && m.dataset.state !== 'loading'; }",
            arg=screen,
            timeout=READY_MS,
        )
        state = self.page.get_attribute("#screen", "data-state")
        assert state in states, f"{screen}: data-state={state}: {self.page.inner_text('#screen')[:600]}"
        return state

    def document(self) -> str:
        """The whole document as HTML: visible text, attributes, the collapsed SQL panel's queries."""
        return self.page.evaluate("() => document.documentElement.outerHTML")

    def assert_no_leak(self, where: str) -> None:
        html = self.document()
        assert self.other.team.word not in html, (
            f"{where}: {self.other.team.audience}'s data shown to {self.me.team.audience}"
        )

    def values(self, selector: str, attribute: str) -> set[str]:
        return set(self.page.locator(selector).evaluate_all(f"es => es.map(e => e.getAttribute('{attribute}'))"))

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"audience-{self.me.team.audience}-{name}.png"))

    def run_sql(self, path: str) -> str:
        """Open the SQL screen at ``path``, run its query (if it did not run by itself); the result's text."""
        self.open(path, "sql", ("ready", "empty", "error"))
        result = self.page.locator("table[data-testid=result]")
        if result.count() == 0:
            self.page.click("button[data-testid=run]")
        result.wait_for(timeout=READY_MS)
        return result.inner_text()


def _sign_in_with_key(s: Screens) -> None:
    """The first screen is refused; the key dialog takes the team's analytics key; the screen loads."""
    s.page.goto(s.base + "/services")
    prompt = s.page.get_by_test_id("key-prompt")
    prompt.wait_for(state="visible", timeout=READY_MS)
    assert "API key" in s.text("[data-testid=auth-reason]")
    s.page.get_by_test_id("key-input").fill(s.me.reader_key)
    s.page.get_by_test_id("key-submit").click()
    s.wait("services")


def _tour(s: Screens) -> None:
    me, other = s.me.team, s.other.team

    _sign_in_with_key(s)
    assert s.values("table[data-testid=services] tr[data-service]", "data-service") == {me.service, me.worker}
    s.assert_no_leak("services")
    s.shot("services")

    s.open(f"/service/{urllib.parse.quote(me.service)}", "service")
    assert me.root_span in s.values("table[data-testid=operations] tr[data-operation]", "data-operation")
    s.assert_no_leak("service")
    # the other team's service by its address: an empty page, none of its operations or processes
    s.open(f"/service/{urllib.parse.quote(other.service)}", "service", ("empty",))
    assert s.page.locator("table[data-testid=operations] tr[data-operation]").count() == 0
    assert other.root_span not in s.document()
    assert other.worker not in s.document()

    s.open("/traces", "traces")
    assert s.values("table[data-testid=traces] tr[data-trace-id]", "data-trace-id") == {s.me.trace_id}
    assert me.root_span in s.text("table[data-testid=traces]")
    s.assert_no_leak("trace search")

    s.open(f"/trace/{s.me.trace_id}", "trace")
    rows = s.page.locator("[data-testid=waterfall] [data-testid=span-row]")
    assert rows.count() == 2
    assert me.root_span in rows.nth(0).inner_text()
    assert me.child_span in rows.nth(1).inner_text()
    assert me.otel_log in s.text("[data-testid=trace-logs]")
    s.assert_no_leak("trace")
    s.shot("trace")
    # the other team's trace by its address: not found, as an id that does not exist
    s.open(f"/trace/{s.other.trace_id}", "trace", ("notfound",))
    assert f"trace {s.other.trace_id} was not found" in s.text("#screen")
    assert s.page.locator("[data-testid=span-row]").count() == 0
    s.assert_no_leak("other team's trace")
    s.shot("other-teams-trace")

    s.open("/logs", "logs")
    logs = s.text("table[data-testid=logs]")
    assert me.otel_log in logs
    assert all(f"{me.native_log} {i}" in logs for i in range(3)), logs
    s.assert_no_leak("logs")
    s.shot("logs")
    # the logs screen's own query, opened from its SQL panel and run on the SQL screen
    s.page.click("[data-testid=sql-panel] summary")
    rows_query = s.page.locator("[data-testid=sql-panel] .sql-query").filter(has_text="msg")
    assert rows_query.count() >= 1, s.text("[data-testid=sql-panel]")
    panel_link = rows_query.first.locator("a[data-testid=open-in-sql]").get_attribute("href")
    assert panel_link
    assert panel_link.startswith("/sql?q=")
    result = s.run_sql(panel_link)
    assert me.otel_log in result
    assert me.native_log in result
    s.assert_no_leak("SQL panel's logs query")

    s.open("/metrics", "metrics")
    assert s.values("a[data-testid=metric-option]", "data-name") == {me.gauge, me.native_metric}
    s.assert_no_leak("metric list")
    s.open(f"/metrics?name={urllib.parse.quote(me.gauge)}&kind=measure", "metrics")
    series = s.page.locator("svg[data-testid=chart] path[data-testid=series]")
    assert series.count() == 1
    assert int(series.first.get_attribute("data-points") or "0") >= 1
    s.assert_no_leak("metric chart")
    s.shot("metrics")
    s.open(f"/metrics?name={urllib.parse.quote(other.gauge)}&kind=measure", "metrics", ("empty",))
    assert "No value in this time range" in s.text("#screen")

    s.open("/processes", "processes")
    assert s.values("table[data-testid=processes] tr[data-process-id]", "data-process-id") == s.me.process_ids
    s.assert_no_leak("processes")
    s.shot("processes")

    s.open(f"/process/{s.me.native_process_id}", "process")
    assert f"{me.native_log} 0" in s.text("[data-testid=process-logs]")
    assert s.page.locator("[data-testid=streams] tr[data-stream-id]").count() == 3
    s.page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=thread-timeline]')?.dataset.spanCount) > 0",
        timeout=READY_MS,
    )
    s.assert_no_leak("process")
    s.shot("process")
    # the other team's processes by their addresses: not found
    for process_id in sorted(s.other.process_ids):
        s.open(f"/process/{process_id}", "process", ("notfound",))
        assert "not found" in s.text("#screen").lower()
        s.assert_no_leak("other team's process")

    # the SQL screen over every view that names a service, a span, a log, a metric or a process
    sql = (
        "SELECT service_name AS v FROM otel_spans UNION SELECT name FROM otel_spans"
        " UNION SELECT msg FROM log_entries UNION SELECT service_name FROM log_entries"
        " UNION SELECT name FROM measures UNION SELECT exe FROM processes ORDER BY v"
    )
    s.run_sql("/sql?" + urllib.parse.urlencode({"q": sql}))
    cells = s.page.locator("table[data-testid=result] tbody td").all_inner_texts()
    native_logs = [f"{me.native_log} {i}" for i in range(3)]
    names = [me.service, me.worker, me.root_span, me.child_span, me.otel_log, me.gauge, me.native_metric]
    assert sorted(cells) == sorted([*names, *native_logs]), cells
    s.assert_no_leak("SQL screen")
    s.shot("sql")


def test_each_teams_reader_sees_only_its_team_on_every_explore_screen(lake: Lake, browser: Any) -> None:
    a, b = lake.teams
    for me, other in ((a, b), (b, a)):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            _tour(Screens(page, lake.base, me, other))
        finally:
            context.close()
        assert not errors, f"uncaught errors in the page as {me.team.audience}: {errors}"
