"""Benchmark: Explore's API and pages over a lake of N spans and N log records (default 1 M each).

A ``sirius up --fast-unsafe`` on a cached data directory (``bench/out/explore-<N>``) is fed the
demo's shape scaled up, as OTLP/HTTP protobuf requests of 5 000 items (raw ``opentelemetry.proto``
messages, no SDK: the SDK's encoding would be the bottleneck on 2 cores): traces of 10 spans over
5 services (a SERVER root per trace, 2 % failed), log records of the same services (half inside a
trace), plus one trace of exactly 10 000 spans. The daemon materialises the views; the bench
waits for the counts over FlightSQL. A second run with the same N reuses the directory.

Then it measures, median of 7 after one warm-up:

* server time of ``/explore/api/services``, a trace search (``/explore/api/traces`` with a service,
  a minimum duration and status=error), ``/explore/api/trace/<id>`` (HTTP round trip on loopback,
  JSON included; the sum of the queries' own ``elapsed_ms`` is printed beside it);
* first paint of the services, traces, logs and trace pages in Chromium (Playwright, Debian's
  chromium): navigation start to ``#screen[data-state]`` leaving ``loading``;
* the 10 000-span waterfall: the same for ``/trace/<big id>``.

Baseline, same run: a FlightSQL ``SELECT 1`` round trip through the gateway (``POST
/gateway/query``) — the floor any page pays — and each figure's ratio to it.

Run: ``.venv/bin/python bench/explore.py [--spans 1000000] [--logs 1000000] [--fresh]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e" / "explore"))
from _chromium import LAUNCH_ARGS, find_chromium  # noqa: E402 - the tests' Chromium finder

OUT = REPO / "bench" / "out"
SERVICES = ("shop-frontend", "shop-payments", "shop-catalog", "shop-cart", "shop-shipping")
ROUTES = ("GET /products", "GET /cart", "POST /checkout", "GET /orders", "POST /login")
SPANS_PER_TRACE = 10
BATCH = 5_000
BIG_SPANS = 10_000
MS = 1_000_000
S = 1_000_000_000
ROUNDS = 7
GOALS_MS = {"services": 300, "search": 300, "trace": 100, "paint": 500, "waterfall": 1000}


def kv(key: str, value: str | int) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, int):
        out.value.int_value = value
    else:
        out.value.string_value = value
    return out


def _resource(request_resource: Any, service: str) -> None:
    request_resource.attributes.extend(
        [kv("service.name", service), kv("service.instance.id", f"{service}-bench"), kv("host.name", "bench")]
    )


def span_requests(total: int, t0: int, t1: int, seed: int) -> Iterator[bytes]:
    """``total`` spans as OTLP requests of ~BATCH spans, one service per request block."""
    rng = random.Random(seed)
    traces = total // SPANS_PER_TRACE
    per_request = BATCH // SPANS_PER_TRACE
    for first in range(0, traces, per_request):
        request = ExportTraceServiceRequest()
        by_service = {}
        for service in SERVICES:
            rs = request.resource_spans.add()
            _resource(rs.resource, service)
            scope = rs.scope_spans.add()
            scope.scope.name = "bench.explore"
            by_service[service] = scope
        for t in range(first, min(first + per_request, traces)):
            trace_id = rng.randbytes(16)
            start = t0 + (t1 - t0) * t // traces
            latency = int(rng.lognormvariate(3.0, 0.6) * MS)
            failed = rng.random() < 0.02
            route = ROUTES[t % len(ROUTES)]
            root_id = rng.randbytes(8)
            root = by_service[SERVICES[0]].spans.add(
                trace_id=trace_id, span_id=root_id, name=route, kind=2, start_time_unix_nano=start
            )
            root.end_time_unix_nano = start + latency
            root.attributes.extend([kv("http.route", route), kv("user.id", f"user-{t % 997}")])
            if failed:
                root.status.code, root.status.message = 2, "checkout failed"
            parent = root_id
            for j in range(1, SPANS_PER_TRACE):
                service = SERVICES[j % len(SERVICES)]
                span_id = rng.randbytes(8)
                s_start = start + latency * j // (SPANS_PER_TRACE + 1)
                span = by_service[service].spans.add(
                    trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=f"{service} step {j}", kind=1
                )
                span.start_time_unix_nano = s_start
                span.end_time_unix_nano = s_start + latency // (SPANS_PER_TRACE + 2)
                if j % 3 == 0:
                    parent = span_id
        yield request.SerializeToString()


def big_trace_request(t0: int, seed: int) -> tuple[bytes, str]:
    """One trace of exactly BIG_SPANS spans: root, 99 children, 100 grandchildren each."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _resource(rs.resource, "bulk-loader")
    scope = rs.scope_spans.add()
    trace_id = rng.randbytes(16)
    root_id = rng.randbytes(8)
    scope.spans.add(
        trace_id=trace_id,
        span_id=root_id,
        name="import batch",
        kind=2,
        start_time_unix_nano=t0,
        end_time_unix_nano=t0 + 990 * MS,
    )
    for c in range(99):
        child_id = rng.randbytes(8)
        c0 = t0 + c * 10 * MS
        scope.spans.add(
            trace_id=trace_id,
            span_id=child_id,
            parent_span_id=root_id,
            name=f"load shard {c}",
            start_time_unix_nano=c0,
            end_time_unix_nano=c0 + 9 * MS,
        )
        for g in range(100):
            g0 = c0 + g * 90_000
            scope.spans.add(
                trace_id=trace_id,
                span_id=rng.randbytes(8),
                parent_span_id=child_id,
                name=f"row {g}",
                start_time_unix_nano=g0,
                end_time_unix_nano=g0 + 80_000,
            )
    return request.SerializeToString(), trace_id.hex()


def log_requests(total: int, t0: int, t1: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for first in range(0, total, BATCH):
        request = ExportLogsServiceRequest()
        scopes = []
        for service in SERVICES:
            rl = request.resource_logs.add()
            _resource(rl.resource, service)
            scope = rl.scope_logs.add()
            scope.scope.name = "bench.explore"
            scopes.append(scope)
        for i in range(first, min(first + BATCH, total)):
            record = scopes[i % len(SERVICES)].log_records.add(
                time_unix_nano=t0 + (t1 - t0) * i // total, severity_number=17 if i % 50 == 0 else 9
            )
            record.body.string_value = f"order {i} processed in {i % 97} ms"
            record.attributes.append(kv("code.function.name", f"handler_{i % 5}"))
            if i % 2:
                record.trace_id, record.span_id = rng.randbytes(16), rng.randbytes(8)
        yield request.SerializeToString()


def post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    for attempt in range(20):
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503) or attempt == 19:
                raise
            time.sleep(float(exc.headers.get("Retry-After", "1")))


def start_up(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}
    ports = [a for n in ("ingestion", "otlp-grpc", "otlp-http", "flight", "gateway") for a in (f"--{n}-port", "0")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sirius.admin.cli", "up", "--fast-unsafe", "--data-dir", str(data_dir), *ports],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(data_dir.parent / f"{data_dir.name}.up.log").open("a"),
        text=True,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < 5:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("sirius up exited early; see the .up.log beside the data directory")
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith(("http://", "grpc://")):
            urls[parts[0]] = parts[1]
    urls["gateway"] = urls["gateway"].removesuffix("/gateway")  # the banner names the query route
    return proc, urls


def count(flightsql: str, sql: str) -> int:
    from sirius.flight import query_table

    end = rfc3339(time.time_ns() + 3600 * S)
    return int(query_table(sql, uri=flightsql, begin="30d", end=end).column(0)[0].as_py())


def wait_for(flightsql: str, sql: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        try:
            got = count(flightsql, sql)
        except Exception:  # noqa: BLE001 - a view not yet built
            got = -1
        if got >= expected:
            return
        time.sleep(1)
    raise SystemExit(f"timed out: {sql} -> {got}, expected {expected}")


def generate(urls: dict[str, str], spans: int, logs: int) -> dict[str, Any]:
    now = time.time_ns()
    t0, t1 = now - 50 * 60 * S, now - 60 * S
    started = time.monotonic()
    big, big_id = big_trace_request(now - 20 * 60 * S, 1)
    bodies = itertools.chain(
        [("traces", big)],
        (("traces", body) for body in span_requests(spans, t0, t1, 2)),
        (("logs", body) for body in log_requests(logs, t0, t1, 3)),
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        in_flight: list[concurrent.futures.Future[None]] = []
        for signal, body in bodies:
            in_flight.append(pool.submit(post, f"{urls['otlp-http']}/v1/{signal}", body))
            if len(in_flight) >= 4:  # bounded: bodies are made while others are sent
                in_flight.pop(0).result()
        for job in in_flight:
            job.result()
    sent = time.monotonic() - started
    print(f"sent {spans + BIG_SPANS} spans and {logs} log records in {sent:.0f} s", flush=True)
    wait_for(urls["flightsql"], "SELECT count(*) FROM otel_spans", spans + BIG_SPANS, 1800)
    wait_for(urls["flightsql"], "SELECT count(*) FROM log_entries", logs, 1800)
    print(f"materialised after {time.monotonic() - started:.0f} s", flush=True)
    return {"from_ns": t0 - 60 * S, "to_ns": now + 60 * S, "big_trace_id": big_id, "spans": spans, "logs": logs}


def rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // S)) + f".{ns % S:09d}Z"


SLOWEST_SQL: dict[str, str] = {}  # endpoint path -> its slowest query (last run), for the notes


def timed_get(url: str) -> tuple[float, float, Any]:
    """Wall ms of one API call, the ms of its slowest query (they may run in parallel), its data."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = json.load(response)
    elapsed = (time.perf_counter() - started) * 1000
    slowest = max(body.get("queries", []), key=lambda q: q["elapsed_ms"], default={"elapsed_ms": 0.0, "sql": ""})
    SLOWEST_SQL[urllib.parse.urlsplit(url).path] = f"{slowest['elapsed_ms']:.0f} ms: {slowest['sql']}"
    return elapsed, slowest["elapsed_ms"], body["data"]


def median_of(fn: Any) -> tuple[float, ...]:
    fn()
    runs = [fn() for _ in range(ROUNDS)]
    return tuple(statistics.median(r[i] for r in runs) for i in range(len(runs[0])) if not isinstance(runs[0][i], dict))


def floor_ms(gateway: str) -> float:
    body = json.dumps({"sql": "SELECT 1 AS one"}).encode()

    def once() -> tuple[float]:
        request = urllib.request.Request(
            f"{gateway}/gateway/query", data=body, headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        return ((time.perf_counter() - started) * 1000,)

    return median_of(once)[0]


# When #screen's data-state first leaves "loading", in ms since navigation start.
READY_OBSERVER = """
new MutationObserver(() => {
  const m = document.querySelector('#screen');
  if (m && m.dataset.state && m.dataset.state !== 'loading' && window.__readyAt === undefined)
    window.__readyAt = performance.now();
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});
"""


def paint_ms(context: Any, url: str) -> float:
    page = context.new_page()
    try:

        def once() -> tuple[float]:
            page.goto("about:blank")
            page.goto(url, wait_until="commit")
            page.wait_for_function(
                "() => { const m = document.querySelector('#screen');"
                " return m && m.dataset.state && m.dataset.state !== 'loading'; }",
                timeout=60_000,
            )
            state = page.get_attribute("#screen", "data-state")
            if state not in ("ready", "empty"):
                raise SystemExit(f"{url}: data-state={state}: {page.inner_text('#screen')[:300]}")
            return (page.evaluate("() => window.__readyAt"),)

        return median_of(once)[0]
    finally:
        page.close()


def measure(urls: dict[str, str], meta: dict[str, Any]) -> list[tuple[str, float, float | None, int]]:
    gateway = urls["gateway"]
    rng = "from=" + urllib.parse.quote(rfc3339(meta["from_ns"])) + "&to=" + urllib.parse.quote(rfc3339(meta["to_ns"]))
    api = f"{gateway}/explore/api"
    rows: list[tuple[str, float, float | None, int]] = []
    wall, sql = median_of(lambda: timed_get(f"{api}/services?{rng}"))
    rows.append(("services endpoint", wall, sql, GOALS_MS["services"]))
    search = f"{api}/traces?{rng}&service=shop-frontend&min_ms=30&status=error&sort=duration"
    wall, sql = median_of(lambda: timed_get(search))
    rows.append(("trace search (service, min_ms, status=error)", wall, sql, GOALS_MS["search"]))
    _, _, found = timed_get(search)
    trace_id = found["traces"][0]["trace_id"]
    wall, sql = median_of(lambda: timed_get(f"{api}/trace/{trace_id}"))
    rows.append(("trace by id (10 spans)", wall, sql, GOALS_MS["trace"]))
    wall, sql = median_of(lambda: timed_get(f"{api}/trace/{meta['big_trace_id']}"))
    rows.append(("trace by id (10 000 spans)", wall, sql, GOALS_MS["trace"]))

    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="sirius-bench-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(find_chromium()),
                args=list(LAUNCH_ARGS),
                headless=True,
                viewport={"width": 1280, "height": 800},
            )
            context.add_init_script(READY_OBSERVER)
            try:
                for name, path in (
                    ("services", "/services"),
                    ("traces", "/traces?service=shop-frontend&status=error"),
                    ("logs", "/logs?level=error"),
                    ("trace (10 spans)", f"/trace/{trace_id}"),
                ):
                    url = f"{gateway}{path}{'&' if '?' in path else '?'}{rng}"
                    rows.append((f"first paint: {name} page", paint_ms(context, url), None, GOALS_MS["paint"]))
                big = f"{gateway}/trace/{meta['big_trace_id']}?{rng}"
                rows.append(("10 000-span waterfall rendered", paint_ms(context, big), None, GOALS_MS["waterfall"]))
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--fresh", action="store_true", help="regenerate the cached data directory")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.chmod(OUT, 0o755)  # the postgres OS user traverses it when run as root
    os.chmod(OUT.parent, os.stat(OUT.parent).st_mode | 0o055)
    data_dir = OUT / f"explore-{args.spans}-{args.logs}"
    meta_file = data_dir.parent / f"{data_dir.name}.json"
    if args.fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
        meta_file.unlink(missing_ok=True)
    proc, urls = start_up(data_dir)
    try:
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            print(f"reusing {data_dir} ({meta['spans']} spans, {meta['logs']} log records)", flush=True)
        else:
            meta = generate(urls, args.spans, args.logs)
            meta_file.write_text(json.dumps(meta))
        load_before = os.getloadavg()[0]
        floor = floor_ms(urls["gateway"])
        rows = measure(urls, meta)
        load_after = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    print(f"\n{meta['spans'] + BIG_SPANS} spans, {meta['logs']} log records; median of {ROUNDS} after a warm-up")
    print(f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores")
    print(f"baseline: FlightSQL SELECT 1 through the gateway = {floor:.1f} ms\n")
    print("| measure | median ms | slowest query ms | goal ms | met | x SELECT 1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, wall, sql, goal in rows:
        sql_text = f"{sql:.1f}" if sql is not None else "-"
        print(
            f"| {name} | {wall:.1f} | {sql_text} | < {goal} | {'yes' if wall < goal else 'NO'} | {wall / floor:.1f}x |"
        )
    print("\nslowest query of each endpoint (last call):")
    for path, text in SLOWEST_SQL.items():
        print(f"  {path}: {' '.join(text.split())[:400]}")


if __name__ == "__main__":
    main()
