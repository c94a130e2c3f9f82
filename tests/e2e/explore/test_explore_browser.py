"""Explore in headless Chromium against ``sirius up`` fed by the OTel SDK and the native tracer.

Each test opens a screen by its deep link, waits for ``#screen[data-state]`` to leave
``loading`` (the contract's hook; never a sleep), and asserts what a user sees against what the
fixture sent: the sample shop's error rate, the bars and nesting of a trace's waterfall, a log
row linking to its trace, the points of a chart, the SQL screen's table and error. A screenshot
of every screen is written to ``test-artifacts/explore/``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any

import pytest
from _explore_stack import (
    BIG_CHILDREN,
    BIG_SERVICE,
    BIG_SPANS,
    GAUGE,
    GAUGE_MINUTES_AGO,
    ExploreStack,
    emit_log,
    screenshot,
)

READY_TIMEOUT_MS = 30_000
# The first test's setup may install Debian's chromium (apt-get, a ~100 MB download on a fresh
# machine) before starting and feeding the stack: more than the suite's 120 s per test.
pytestmark = pytest.mark.timeout(900)


def wait_screen(page: Any, screen: str, state: str | None = "ready") -> str:
    """Wait until ``#screen`` shows ``screen`` and has left ``loading``; return its state."""
    page.wait_for_function(
        "s => { const m = document.querySelector('#screen');"
        " return m && m.dataset.screen === s && m.dataset.state !== 'loading'; }",
        arg=screen,
        timeout=READY_TIMEOUT_MS,
    )
    got = page.get_attribute("#screen", "data-state")
    if state is not None:
        assert got == state, f"{screen}: data-state={got}: {page.inner_text('#screen')[:600]}"
    return got


def open_screen(page: Any, stack: ExploreStack, path: str, screen: str, state: str | None = "ready") -> str:
    page.goto(stack.url(path))
    return wait_screen(page, screen, state)


def api(stack: ExploreStack, path: str) -> Any:
    with urllib.request.urlopen(stack.url(path), timeout=30) as response:
        return json.load(response)["data"]


def assert_sql_panel(page: Any, *needles: str) -> list[str]:
    """The screen's SQL panel holds the exact SQL it ran (one <pre> per query) and an "open in SQL" link."""
    panel = page.locator("[data-testid=sql-panel]")
    assert panel.count() == 1
    sqls = page.locator("[data-testid=sql-panel] [data-testid=sql]").all_text_contents()
    assert sqls, "the SQL panel lists the queries"
    assert all(re.search(r"\bSELECT\b", sql, re.IGNORECASE) for sql in sqls), sqls
    for needle in needles:
        assert any(needle in sql for sql in sqls), (needle, sqls)
    assert panel.locator("a[href*='/sql?q=']").count() >= 1
    return sqls


def percent(text: str) -> float:
    """A number as the page prints it (``"10.0%"``, ``"0.1"``) as a fraction."""
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    assert match, text
    value = float(match.group())
    return value / 100 if "%" in text else value


def test_services_show_every_service_with_its_error_rate(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/services", "services")
    shop = explore_stack.shop
    front = page.locator("table[data-testid=services] tr[data-service='shop-frontend']")
    assert front.count() == 1
    assert page.locator(f"table[data-testid=services] tr[data-service='{BIG_SERVICE}']").count() == 1
    rate = percent(front.locator("td[data-col=error_rate]").inner_text())
    assert abs(rate - shop.failed / shop.requests) < 0.0015, (rate, shop)
    for col in ("rate", "p50", "p95", "p99"):
        assert front.locator(f"td[data-col={col}]").inner_text().strip(), col
    assert front.locator("svg[data-testid=sparkline]").count() == 1
    big = page.locator(f"tr[data-service='{BIG_SERVICE}'] td[data-col=error_rate]").inner_text()
    assert percent(big) == 0
    assert_sql_panel(page, "otel_spans")
    screenshot(page, "services")
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_service_page_lists_operations_errors_and_processes(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/service/shop-frontend", "service")
    ops = page.locator("table[data-testid=operations] tr[data-operation]")
    assert sorted(ops.evaluate_all("rows => rows.map(r => r.dataset.operation)")) == sorted(
        ["GET /products", "GET /cart", "POST /checkout"]
    )
    checkout = page.locator("tr[data-operation='POST /checkout'] td[data-col=error_rate]").inner_text()
    shop = explore_stack.shop
    assert abs(percent(checkout) - shop.failed / shop.checkouts) < 0.0015, (checkout, shop)
    assert page.locator("[data-testid=recent-errors]").count() == 1
    assert "checkout" in page.locator("[data-testid=recent-errors]").inner_text()
    assert page.locator("[data-testid=service-processes]").count() == 1
    assert_sql_panel(page)
    screenshot(page, "service")


def test_failed_trace_waterfall_nests_two_services(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, f"/trace/{explore_stack.failed_trace_id}", "trace")
    waterfall = page.locator("[data-testid=waterfall]")
    assert waterfall.get_attribute("data-span-count") == "2"
    rows = page.locator("[data-testid=waterfall] [data-testid=span-row]")
    assert rows.count() == 2  # one bar per span
    spans = rows.evaluate_all(
        "rows => rows.map(r => ({id: r.dataset.spanId, parent: r.dataset.parentSpanId || null,"
        " depth: r.dataset.depth, service: r.dataset.service, critical: r.dataset.critical === 'true',"
        " text: r.innerText}))"
    )
    root, child = spans
    assert root["depth"] == "0"
    assert root["service"] == "shop-frontend"
    assert "POST /checkout" in root["text"]
    assert child["depth"] == "1"
    assert child["parent"] == root["id"]
    assert child["service"] == "shop-payments"
    assert "charge_card" in child["text"]
    assert root["critical"], "the root is on the critical path"
    assert page.locator("[data-testid=span-row][data-critical=true]").count() >= 1
    # The trace's logs beside the waterfall: the recorded exception (a span event, stored as a
    # warning), the payments error and the frontend's.
    logs = page.locator("[data-testid=trace-logs] [data-testid=log-row]")
    assert logs.count() == 3, page.locator("[data-testid=trace-logs]").inner_text()
    text = page.locator("[data-testid=trace-logs]").inner_text()
    assert "RuntimeError: card declined by issuer" in text
    assert "payment failed for order" in text
    assert re.search(r"checkout \d+ failed", text)
    # Selecting the failed span shows its status, attributes and the recorded exception.
    rows.nth(1).click()
    details = page.locator("[data-testid=span-details]")
    details.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=span-details]').innerText.includes('charge_card')"
    )
    text = details.inner_text()
    assert "card declined" in text
    assert "payment.amount" in text
    assert "RuntimeError" in text or "exception" in text
    assert_sql_panel(page, explore_stack.failed_trace_id)
    screenshot(page, "trace")


def test_a_10000_span_trace_opens_and_scrolls(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, f"/trace/{explore_stack.big_trace_id}", "trace")
    waterfall = page.locator("[data-testid=waterfall]")
    assert waterfall.get_attribute("data-span-count") == str(BIG_SPANS)
    rows = page.locator("[data-testid=waterfall] [data-testid=span-row]")
    first = set(rows.evaluate_all("rows => rows.map(r => r.dataset.spanId)"))
    assert 0 < len(first) < 1000, len(first)  # virtualised: only the visible rows are in the DOM
    depths = set(rows.evaluate_all("rows => rows.map(r => r.dataset.depth)"))
    assert {"0", "1", "2"} <= depths, depths
    screenshot(page, "trace-10k")
    # Scroll the waterfall to the bottom (whichever element scrolls it): new rows render there.
    page.evaluate(
        """() => {
        const w = document.querySelector('[data-testid=waterfall]');
        const scrolls = e => e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== 'visible';
        let el = [w, ...w.querySelectorAll('*')].find(scrolls) || w;
        while (el && !scrolls(el)) el = el.parentElement;
        (el || document.scrollingElement).scrollTop = 1e9;
    }"""
    )
    page.wait_for_function(
        "last => Array.from(document.querySelectorAll('[data-testid=span-row]')).some(r => r.innerText.includes(last))",
        arg="row 99",
        timeout=READY_TIMEOUT_MS,
    )
    after = set(rows.evaluate_all("rows => rows.map(r => r.dataset.spanId)"))
    assert after - first, "scrolling rendered new rows"
    assert 0 < len(after) < 1000
    # The last bar is the last row of the last shard, nested under that shard's span.
    spans = api(explore_stack, f"/explore/api/trace/{explore_stack.big_trace_id}")["spans"]
    last_shard = next(s["span_id"] for s in spans if s["name"] == f"load shard {BIG_CHILDREN - 1}")
    last = rows.last
    assert "row 99" in last.inner_text()
    assert last.get_attribute("data-depth") == "2"
    assert last.get_attribute("data-parent-span-id") == last_shard
    screenshot(page, "trace-10k-scrolled")


def test_logs_link_to_their_trace(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/logs?level=error", "logs")
    rows = page.locator("table[data-testid=logs] tr[data-testid=log-row]")
    assert rows.count() >= explore_stack.shop.failed
    assert "card declined" in page.locator("table[data-testid=logs]").inner_text()
    assert_sql_panel(page, "log_entries")
    screenshot(page, "logs")
    link = page.locator("table[data-testid=logs] tr[data-testid=log-row] a[data-testid=trace-link]").first
    trace_id = re.search(r"/trace/([0-9a-f]{32})", link.get_attribute("href") or "")
    assert trace_id, link.get_attribute("href")
    link.click()
    wait_screen(page, "trace")
    assert page.url.split("?")[0].endswith(f"/trace/{trace_id.group(1)}")
    assert page.locator("[data-testid=span-row]").count() >= 1


def test_metrics_chart_has_one_point_per_sample(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, f"/metrics?name={GAUGE}&kind=measure", "metrics")
    series = page.locator("svg[data-testid=chart] path[data-testid=series]")
    assert series.count() == 1
    points = int(series.first.get_attribute("data-points") or "-1")
    data = api(explore_stack, f"/explore/api/metrics/series?name={GAUGE}&kind=measure")
    api_points = data["series"][0]["points"]
    assert sum(v is not None for _, v in api_points) == len(GAUGE_MINUTES_AGO)
    assert points in (len(GAUGE_MINUTES_AGO), len(api_points)), (points, len(api_points))
    assert_sql_panel(page, "measures")
    screenshot(page, "metrics")


def test_processes_and_a_native_process_with_its_thread_timeline(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/processes", "processes")
    assert page.locator(f"tr[data-process-id='{explore_stack.native_process_id}']").count() == 1
    assert_sql_panel(page, "processes")
    screenshot(page, "processes")
    open_screen(page, explore_stack, f"/process/{explore_stack.native_process_id}", "process")
    assert page.locator("[data-testid=streams]").count() == 1
    timeline = page.locator("[data-testid=thread-timeline]")
    timeline.wait_for(state="visible")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=thread-timeline]').dataset.spanCount) > 0",
        timeout=READY_TIMEOUT_MS,
    )
    # handle_request and _price_cart once per request of the sample shop.
    assert int(timeline.get_attribute("data-span-count") or 0) == 2 * explore_stack.shop.requests
    assert "demo shop" in page.locator("[data-testid=process-logs]").inner_text()
    download = page.locator("a[data-testid=perfetto-download]")
    assert explore_stack.native_process_id in (download.get_attribute("href") or "")
    assert_sql_panel(page)
    screenshot(page, "process")


def test_sql_screen_shows_a_table_and_the_servers_error(page: Any, explore_stack: ExploreStack) -> None:
    sql = "SELECT exe, count(*) AS spans FROM otel_spans GROUP BY exe ORDER BY exe"
    open_screen(page, explore_stack, "/sql?" + urllib.parse.urlencode({"q": sql}), "sql", state=None)
    editor = page.locator("textarea[data-testid=sql-editor]")
    assert editor.input_value() == sql
    if page.locator("table[data-testid=result]").count() == 0:
        page.click("button[data-testid=run]")
    page.locator("table[data-testid=result]").wait_for()
    result = page.locator("table[data-testid=result]").inner_text()
    assert BIG_SERVICE in result
    assert str(BIG_SPANS) in result
    assert "shop-frontend" in result
    assert page.locator("[data-testid=query-stats]").inner_text().strip()
    assert sql in assert_sql_panel(page, "otel_spans")
    screenshot(page, "sql")
    editor.fill("SELECT no_such_column FROM processes")
    page.click("button[data-testid=run]")
    error = page.locator("[data-testid=error]")
    error.wait_for()
    assert "no_such_column" in error.inner_text()
    assert "Internal" not in error.inner_text()


def test_click_through_services_search_trace_log_and_back(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/services", "services")
    page.click("tr[data-service='shop-frontend'] a")
    wait_screen(page, "service")
    assert "/service/shop-frontend" in page.url
    page.click("nav a[data-nav=traces]")
    wait_screen(page, "traces", state=None)
    form = page.locator("form[data-testid=trace-search]")
    form.locator("[name=service]").fill("shop-frontend")
    status = form.locator("[name=status]")
    if status.evaluate("e => e.tagName") == "SELECT":
        status.select_option("error")
    else:
        status.fill("error")
    form.locator("[name=service]").press("Enter")
    page.wait_for_url(re.compile(r"status=error"))
    wait_screen(page, "traces")
    results = page.locator("table[data-testid=traces] tr[data-trace-id]")
    assert results.count() == explore_stack.shop.failed
    assert results.locator("[data-testid=duration-bar]").count() == explore_stack.shop.failed
    assert_sql_panel(page, "otel_spans")
    screenshot(page, "traces")
    trace_id = results.first.get_attribute("data-trace-id")
    results.first.locator("a").first.click()
    wait_screen(page, "trace")
    assert f"/trace/{trace_id}" in page.url
    log = page.locator("[data-testid=trace-logs] [data-testid=log-row]").first
    assert "checkout" in log.inner_text() or "card declined" in log.inner_text()
    # The trace's logs on the logs screen: the three records of this trace, each linking back to it.
    page.click("[data-testid=trace-logs] a[href*='/logs?']")
    wait_screen(page, "logs")
    assert f"trace_id={trace_id}" in page.url
    log_rows = page.locator("table[data-testid=logs] tr[data-testid=log-row]")
    assert log_rows.count() == 3
    links = log_rows.locator("a[data-testid=trace-link]").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert len(links) == 3
    assert all(f"/trace/{trace_id}" in link for link in links), links
    page.go_back()
    wait_screen(page, "trace")
    assert f"/trace/{trace_id}" in page.url
    page.go_back()
    wait_screen(page, "traces")
    assert "status=error" in page.url
    assert page.locator("table[data-testid=traces] tr[data-trace-id]").count() == explore_stack.shop.failed
    page.go_back()
    wait_screen(page, "traces", state=None)
    page.go_back()
    wait_screen(page, "service")
    page.go_back()
    wait_screen(page, "services")
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_unknown_trace_shows_not_found(page: Any, explore_stack: ExploreStack) -> None:
    state = open_screen(page, explore_stack, "/trace/" + "0" * 31 + "1", "trace", state=None)
    assert state == "notfound"
    assert "not found" in page.inner_text("#screen")
    screenshot(page, "trace-not-found")


def test_live_tail_prepends_new_records_without_reload(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, f"/logs?service={BIG_SERVICE}&live=1", "logs", state=None)
    assert page.locator("input[data-testid=live]").is_checked()
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads
    before = page.locator("table[data-testid=logs] tr[data-testid=log-row]").count()
    message = f"live tail probe {explore_stack.run_id}"
    emit_log(explore_stack, message)
    page.wait_for_function(
        "m => Array.from(document.querySelectorAll('[data-testid=log-row]')).some(r => r.innerText.includes(m))",
        arg=message,
        timeout=READY_TIMEOUT_MS,
    )
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    rows = page.locator("table[data-testid=logs] tr[data-testid=log-row]")
    assert rows.count() == before + 1
    assert message in rows.first.inner_text()  # newest first: prepended


def test_histogram_quantiles_and_range_picker(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/metrics?name=http.server.duration&kind=histogram", "metrics")
    quantiles = page.locator("svg[data-testid=chart] path[data-testid=series][data-quantile]")
    assert sorted(quantiles.evaluate_all("ps => ps.map(p => p.dataset.quantile)")) == ["p50", "p95", "p99"]
    assert all(int(n) >= 1 for n in quantiles.evaluate_all("ps => ps.map(p => p.dataset.points)"))
    page.select_option("select[data-testid=range]", "15m")
    page.wait_for_url(re.compile(r"from=15m"))
    wait_screen(page, "metrics")
    assert "name=http.server.duration" in page.url


def test_global_search_and_open_in_sql(page: Any, explore_stack: ExploreStack) -> None:
    open_screen(page, explore_stack, "/services", "services")
    search = page.locator("[data-testid=global-search]")
    search.fill(explore_stack.failed_trace_id)
    search.press("Enter")
    wait_screen(page, "trace")
    assert page.url.split("?")[0].endswith(f"/trace/{explore_stack.failed_trace_id}")
    page.click("[data-testid=sql-panel] summary")
    first_sql = page.locator("[data-testid=sql-panel] [data-testid=sql]").first.inner_text()
    page.locator("[data-testid=sql-panel] a[href*='/sql?q=']").first.click()
    wait_screen(page, "sql", state=None)
    assert page.locator("textarea[data-testid=sql-editor]").input_value() == first_sql
    search = page.locator("[data-testid=global-search]")
    search.fill(explore_stack.native_process_id)
    search.press("Enter")
    wait_screen(page, "process")
    assert explore_stack.native_process_id in page.url
