"""The Explore API against a real stack fed by the OTel SDK and the native tracer (``conftest.py``).

Each endpoint is asked what a page would ask and its answer compared with what was sent:
service figures (requests, error rates, latencies computed from the spans' known durations),
traces (span count, nesting, critical path), logs by trace id, metric series, processes and
their streams and thread spans, the SQL endpoint; and the envelope (the exact SQL that ran).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _native_worker as native
from _http import request
from conftest import FAILED, HEALTH, ORDERS, SPANS_PER_ORDER, ExploreLake


def api(lake: ExploreLake, path: str) -> dict:
    answer = request(lake.url(path))
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    return answer.json()


def test_services_red_figures(explore_lake: ExploreLake) -> None:
    body = api(explore_lake, "/explore/api/services?from=1h")
    services = {s["service"]: s for s in body["data"]["services"]}
    checkout = services["checkout-api"]
    assert checkout["kind"] == "otel"
    assert checkout["requests"] == ORDERS + HEALTH
    assert checkout["errors"] == len(FAILED)
    assert checkout["error_rate"] == pytest.approx(len(FAILED) / (ORDERS + HEALTH))
    assert checkout["rate_per_s"] == pytest.approx((ORDERS + HEALTH) / 3600, rel=0.01)
    # 8 requests of 100 ms and 4 of 1 ms: the median is 100 ms, the tail too.
    assert checkout["p95_ms"] == pytest.approx(100.0, rel=0.02)
    assert checkout["p99_ms"] == pytest.approx(100.0, rel=0.02)
    assert checkout["processes"] == 1
    inventory = services["inventory"]
    assert (inventory["requests"], inventory["errors"]) == (ORDERS, len(FAILED))
    assert inventory["p50_ms"] == pytest.approx(40.0, rel=0.02)  # inventory.reserve: 15..55 ms
    worker = services[native.SERVICE]
    assert worker["kind"] == "native"
    assert (worker["requests"], worker["errors"], worker["processes"]) == (0, native.ERRORS, 1)
    assert worker["p50_ms"] is None
    spark = checkout["spark"]
    buckets = len(spark["t"])
    assert 60 <= buckets <= 121
    assert body["data"]["bucket_seconds"] == 30
    assert len(spark["requests"]) == len(spark["errors"]) == len(spark["p95_ms"]) == buckets
    assert sum(spark["requests"]) == ORDERS + HEALTH
    assert sum(spark["errors"]) == len(FAILED)
    assert [q["sql"].split()[0] for q in body["queries"]] == ["SELECT"] * len(body["queries"])
    assert any("FROM otel_spans" in q["sql"] for q in body["queries"])
    for query in body["queries"]:
        assert query["elapsed_ms"] > 0
        assert query["rows"] >= 0
        assert query["bytes"] >= 0
    assert set(body["range"]) == {"from", "to"}


def test_service_operations_errors_and_processes(explore_lake: ExploreLake) -> None:
    data = api(explore_lake, "/explore/api/service?name=inventory")["data"]
    assert data["service"] == "inventory"
    operations = {op["operation"]: op for op in data["operations"]}
    assert set(operations) == {"inventory.reserve"}
    assert operations["inventory.reserve"]["requests"] == ORDERS
    assert operations["inventory.reserve"]["error_rate"] == pytest.approx(len(FAILED) / ORDERS)
    error_spans = [e for e in data["errors"] if "name" in e]
    error_logs = [e for e in data["errors"] if "level" in e]
    assert sorted(e["trace_id"] for e in error_spans) == sorted(explore_lake.fed.failed_traces)
    assert {e["message"] for e in error_spans} == {"out of stock"}
    assert sorted(e["msg"] for e in error_logs) == sorted(f"reserve {i} failed: out of stock" for i in FAILED)
    assert [p["service"] for p in data["processes"]] == ["inventory"]
    assert data["processes"][0]["kind"] == "otel"


def test_trace_by_id_spans_nesting_and_critical_path(explore_lake: ExploreLake) -> None:
    trace_id = explore_lake.fed.failed_traces[0]
    ids = explore_lake.fed.span_ids[trace_id]
    body = api(explore_lake, f"/explore/api/trace/{trace_id.upper()}")
    data = body["data"]
    assert data["trace_id"] == trace_id
    assert data["services"] == ["checkout-api", "inventory"]
    assert data["duration_ms"] == pytest.approx(100.0)
    spans = {s["name"]: s for s in data["spans"]}
    assert len(data["spans"]) == SPANS_PER_ORDER
    assert [s["start_ns"] for s in data["spans"]] == sorted(s["start_ns"] for s in data["spans"])
    parent_of = {name: s["parent_span_id"] for name, s in spans.items()}
    assert parent_of == {
        "POST /orders": None,
        "cache.get": ids["POST /orders"],
        "reserve": ids["POST /orders"],
        "inventory.reserve": ids["reserve"],
        "db.query": ids["inventory.reserve"],
        "render": ids["POST /orders"],
    }
    assert {name: s["span_id"] for name, s in spans.items()} == ids
    # render ends last, then reserve (ends before render starts) and what it waits on; cache.get
    # overlaps reserve and is not waited on.
    assert {name for name, s in spans.items() if s["critical"]} == set(ids) - {"cache.get"}
    reserve = spans["inventory.reserve"]
    assert (reserve["status"], reserve["status_message"], reserve["kind"]) == ("ERROR", "out of stock", "SERVER")
    assert reserve["duration_ms"] == pytest.approx(40.0)
    assert reserve["resource"]["service.name"] == "inventory"
    assert reserve["resource"]["deployment.environment"] == "test"
    [event] = reserve["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.message"] == "out of stock"
    assert event["time_ns"] == data["start_ns"] + 54_000_000
    assert spans["POST /orders"]["attributes"]["order.id"] == str(explore_lake.fed.order_traces.index(trace_id))
    assert spans["db.query"]["status"] == "UNSET"
    messages = sorted(row["msg"] for row in data["logs"])
    i = explore_lake.fed.order_traces.index(trace_id)
    assert messages == sorted([f"order {i} failed", f"reserve {i} failed: out of stock", "RuntimeError: out of stock"])
    assert {row["trace_id"] for row in data["logs"]} == {trace_id}
    [sql] = [q["sql"] for q in body["queries"] if "FROM otel_spans" in q["sql"]]
    assert f"trace_id = '{trace_id}'" in sql


def test_unknown_trace_is_404_and_bad_id_400(explore_lake: ExploreLake) -> None:
    missing = request(explore_lake.url("/explore/api/trace/" + "0" * 31 + "1"))
    assert missing.status == 404
    body = missing.json()
    assert "not found" in body["error"]
    # the 404 carries the query that found nothing and the range it searched (30 days by default)
    [query] = body["queries"]
    assert "0" * 31 + "1" in query["sql"]
    assert query["rows"] == 0
    begin, end = (datetime.fromisoformat(body["range"][k].replace("Z", "+00:00")[:26]) for k in ("from", "to"))
    assert abs((end - begin).total_seconds() - 30 * 86400) < 2
    narrow = request(explore_lake.url("/explore/api/trace/" + "0" * 31 + "1?from=1h")).json()
    begin, end = (datetime.fromisoformat(narrow["range"][k].replace("Z", "+00:00")[:26]) for k in ("from", "to"))
    assert abs((end - begin).total_seconds() - 3600) < 2
    bad = request(explore_lake.url("/explore/api/trace/xyz"))
    assert bad.status == 400
    assert "trace id" in bad.json()["error"]


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("service=inventory&status=error", "failed"),
        ("status=ok&operation=POST%20/orders", "ok_orders"),
        ("min_ms=50", "orders"),
        ("max_ms=2", "health"),
        ("operation=GET%20/health", "health"),
        ("q=render", "orders"),
        ("attr=order.id%3D4", "order4"),
        ("attr=deployment.environment%3Dtest&min_ms=50", "orders"),
    ],
)
def test_trace_search_filters(explore_lake: ExploreLake, query: str, expect: str) -> None:
    fed = explore_lake.fed
    expected = {
        "failed": fed.failed_traces,
        "ok_orders": [t for t in fed.order_traces if t not in fed.failed_traces],
        "orders": fed.order_traces,
        "health": fed.health_traces,
        "order4": [fed.order_traces[4]],
    }[expect]
    traces = api(explore_lake, f"/explore/api/traces?{query}")["data"]["traces"]
    assert sorted(t["trace_id"] for t in traces) == sorted(expected)
    assert [t["start_ns"] for t in traces] == sorted((t["start_ns"] for t in traces), reverse=True)


def test_trace_search_rows_and_sorting(explore_lake: ExploreLake) -> None:
    fed = explore_lake.fed
    traces = api(explore_lake, "/explore/api/traces?sort=duration&limit=3")["data"]["traces"]
    assert len(traces) == 3
    assert all(t["duration_ms"] == pytest.approx(100.0) for t in traces)
    row = next(
        t
        for t in api(explore_lake, "/explore/api/traces?limit=500")["data"]["traces"]
        if t["trace_id"] == fed.failed_traces[0]
    )
    assert row["spans"] == SPANS_PER_ORDER
    assert row["services"] == ["checkout-api", "inventory"]
    assert row["errors"] == 2  # inventory.reserve and the root
    assert (row["root_service"], row["root_name"]) == ("checkout-api", "POST /orders")
    assert row["start"].endswith("Z")
    by_id = api(explore_lake, f"/explore/api/traces?q={fed.health_traces[1]}")["data"]["traces"]
    assert [t["trace_id"] for t in by_id] == [fed.health_traces[1]]


def test_logs_filters_and_paging(explore_lake: ExploreLake) -> None:
    fed = explore_lake.fed
    rows = api(explore_lake, "/explore/api/logs?level=error&service=inventory")["data"]["rows"]
    assert sorted(r["msg"] for r in rows) == sorted(f"reserve {i} failed: out of stock" for i in FAILED)
    assert {(r["level"], r["level_name"], r["service"]) for r in rows} == {(2, "error", "inventory")}
    assert {r["trace_id"] for r in rows} == set(fed.failed_traces)
    one = fed.failed_traces[0]
    by_trace = api(explore_lake, f"/explore/api/logs?trace_id={one}")["data"]["rows"]
    assert len(by_trace) == 3
    assert {r["trace_id"] for r in by_trace} == {one}
    span_id = fed.span_ids[one]["inventory.reserve"]
    by_span = api(explore_lake, f"/explore/api/logs?span_id={span_id}&level=2")["data"]["rows"]
    assert [r["span_id"] for r in by_span] == [span_id]
    worker = api(explore_lake, f"/explore/api/logs?service={native.SERVICE}&q=done")["data"]["rows"]
    assert sorted(r["msg"] for r in worker) == sorted(f"job {j} done" for j in range(native.JOBS))
    assert all(r["trace_id"] is None and r["process_id"] for r in worker)
    # Paging: newest first, then strictly older rows from the cursor, then the end.
    every = api(explore_lake, f"/explore/api/logs?service={native.SERVICE}")["data"]["rows"]
    assert len(every) == native.JOBS + native.ERRORS
    assert [r["time_ns"] for r in every] == sorted((r["time_ns"] for r in every), reverse=True)
    first = api(explore_lake, f"/explore/api/logs?service={native.SERVICE}&limit=4")["data"]
    assert [r["msg"] for r in first["rows"]] == [r["msg"] for r in every[:4]]
    assert first["next_before_ns"] == every[3]["time_ns"]
    second = api(
        explore_lake, f"/explore/api/logs?service={native.SERVICE}&limit=4&before_ns={first['next_before_ns']}"
    )["data"]
    assert [r["msg"] for r in second["rows"]] == [r["msg"] for r in every[4:]]
    assert second["next_before_ns"] is None
    newer = api(explore_lake, f"/explore/api/logs?service={native.SERVICE}&after_ns={every[2]['time_ns']}")["data"]
    assert [r["msg"] for r in newer["rows"]] == [r["msg"] for r in every[:2]]


def test_metric_names(explore_lake: ExploreLake) -> None:
    metrics = api(explore_lake, "/explore/api/metrics/names?q=order")["data"]["metrics"]
    by_name = {(m["name"], m["kind"]): m for m in metrics}
    assert ("order.latency", "histogram") in by_name
    counter = by_name[("orders.created", "measure")]
    assert counter["services"] == ["checkout-api"]
    assert "region" in counter["properties"]
    assert all("order" in m["name"] for m in metrics)
    everything = api(explore_lake, "/explore/api/metrics/names")["data"]["metrics"]
    assert ("worker.queue", "measure") in {(m["name"], m["kind"]) for m in everything}


def test_metric_series_counter_as_rate_by_group(explore_lake: ExploreLake) -> None:
    data = api(explore_lake, "/explore/api/metrics/series?name=orders.created&group_by=region")["data"]
    assert data["kind"] == "measure"
    assert data["rate"] is True
    bucket = data["bucket_seconds"]
    groups = {s["group"]: s["points"] for s in data["series"]}
    assert set(groups) == {"us", "eu"}
    for points in groups.values():
        assert 60 <= len(points) <= 121
        # Two cumulative exports (4 then 8 orders): their increases add up to what was counted.
        assert sum(v for _t, v in points if v is not None) * bucket == pytest.approx(ORDERS / 2)


def test_metric_series_native_gauge(explore_lake: ExploreLake) -> None:
    data = api(explore_lake, "/explore/api/metrics/series?name=worker.queue&agg=max")["data"]
    [series] = data["series"]
    values = [v for _t, v in series["points"] if v is not None]
    assert values
    assert max(values) == float(native.JOBS)
    assert data["unit"] == "count"
    assert data["rate"] is False


def test_metric_series_histogram_quantiles(explore_lake: ExploreLake) -> None:
    data = api(explore_lake, "/explore/api/metrics/series?name=order.latency&kind=histogram")["data"]
    assert data["kind"] == "histogram"
    assert data["unit"] == "ms"
    filled = [i for i, (_t, v) in enumerate(data["quantiles"]["p50"]) if v is not None]
    assert filled
    for i in filled:
        p50, p95, p99 = (data["quantiles"][q][i][1] for q in ("p50", "p95", "p99"))
        # 100..107 ms recorded: buckets (75, 100] and (100, 250].
        assert 75.0 <= p50 <= p95 <= p99 <= 250.0
    assert [s["group"] for s in data["series"]] == [""]


def test_processes_and_process_page(explore_lake: ExploreLake) -> None:
    processes = api(explore_lake, "/explore/api/processes")["data"]["processes"]
    kinds = {p["service"]: p["kind"] for p in processes}
    assert kinds == {"checkout-api": "otel", "inventory": "otel", native.SERVICE: "native"}
    worker = next(p for p in processes if p["service"] == native.SERVICE)
    assert worker["exe"] == native.SERVICE
    assert worker["properties"]["service.name"] == native.SERVICE
    assert api(explore_lake, "/explore/api/processes?q=invent")["data"]["processes"][0]["service"] == "inventory"
    data = api(explore_lake, f"/explore/api/process/{worker['process_id']}")["data"]
    assert data["process"]["process_id"] == worker["process_id"]
    kinds = {s["kind"] for s in data["streams"]}
    assert {"cpu", "log", "metrics"} <= kinds
    log_stream = next(s for s in data["streams"] if s["kind"] == "log")
    assert log_stream["events"] >= native.JOBS + native.ERRORS
    assert log_stream["blocks"] >= 1
    [thread] = data["threads"]
    assert thread["thread_name"] == "MainThread"
    spans = api(
        explore_lake, f"/explore/api/process/{worker['process_id']}/thread_spans?stream_id={thread['stream_id']}"
    )["data"]["spans"]
    jobs = [s for s in spans if s["name"] == "job"]
    steps = [s for s in spans if s["name"] == "step"]
    assert (len(jobs), len(steps)) == (native.JOBS, native.JOBS * native.STEPS)
    assert {s["depth"] for s in jobs} == {0}
    assert {s["depth"] for s in steps} == {1}
    job_ids = {s["id"] for s in jobs}
    assert all(s["parent"] in job_ids for s in steps)
    assert all(s["end_ns"] >= s["begin_ns"] and s["duration_ms"] >= 0 for s in spans)


def test_thread_spans_of_another_process_is_404(explore_lake: ExploreLake) -> None:
    processes = api(explore_lake, "/explore/api/processes")["data"]["processes"]
    worker = next(p for p in processes if p["service"] == native.SERVICE)
    other = next(p for p in processes if p["service"] != native.SERVICE)
    [thread] = api(explore_lake, f"/explore/api/process/{worker['process_id']}")["data"]["threads"]
    answer = request(
        explore_lake.url(f"/explore/api/process/{other['process_id']}/thread_spans?stream_id={thread['stream_id']}")
    )
    assert answer.status == 404
    assert "not found" in answer.json()["error"]


def test_perfetto_download(explore_lake: ExploreLake) -> None:
    processes = api(explore_lake, "/explore/api/processes")["data"]["processes"]
    worker = next(p for p in processes if p["service"] == native.SERVICE)
    answer = request(explore_lake.url(f"/explore/api/process/{worker['process_id']}/perfetto"))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.headers["Content-Disposition"] == f"attachment; filename={worker['process_id']}.perfetto"
    assert len(answer.body) > 100
    assert b"step" in answer.body
    assert b"job" in answer.body


def test_unknown_process_is_404(explore_lake: ExploreLake) -> None:
    answer = request(explore_lake.url("/explore/api/process/00000000-0000-0000-0000-000000000001"))
    assert answer.status == 404
    assert "not found" in answer.json()["error"]


def test_sql_endpoint(explore_lake: ExploreLake) -> None:
    trace_id = explore_lake.fed.failed_traces[0]
    body = request(
        explore_lake.url("/explore/api/sql"),
        method="POST",
        body={
            "sql": f"SELECT trace_id, name, properties, duration FROM otel_spans WHERE trace_id = '{trace_id}' "
            "AND parent_span_id IS NULL",
            "from": "1h",
        },
    ).json()
    data = body["data"]
    assert [c["name"] for c in data["columns"]] == ["trace_id", "name", "properties", "duration"]
    assert data["columns"][2]["type"] == "json"
    [[tid, name, properties, duration]] = data["rows"]
    assert (tid, name, duration) == (trace_id, "POST /orders", 100_000_000)
    assert properties["http.route"] == "POST /orders"
    assert data["truncated"] is False
    [query] = body["queries"]
    assert query["rows"] == 1
    assert query["sql"].startswith("SELECT trace_id")
    big = request(
        explore_lake.url("/explore/api/sql"), method="POST", body={"sql": "SELECT * FROM generate_series(1, 10005)"}
    ).json()["data"]
    assert len(big["rows"]) == 10_000
    assert big["truncated"] is True


def test_sql_errors_are_400_with_the_server_message(explore_lake: ExploreLake) -> None:
    answer = request(explore_lake.url("/explore/api/sql"), method="POST", body={"sql": "SELECT nope FROM otel_spans"})
    assert answer.status == 400
    assert "nope" in answer.json()["error"]
    empty = request(explore_lake.url("/explore/api/sql"), method="POST", body={"sql": " "})
    assert empty.status == 400
    assert "sql" in empty.json()["error"]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/explore/api/services?from=yesterday", "from"),
        ("/explore/api/services?from=1h&to=2h", "from"),
        ("/explore/api/service", "name"),
        ("/explore/api/traces?limit=0", "limit"),
        ("/explore/api/traces?limit=ten", "limit"),
        ("/explore/api/traces?min_ms=-1", "min_ms"),
        ("/explore/api/traces?status=broken", "status"),
        ("/explore/api/traces?sort=name", "sort"),
        ("/explore/api/traces?attr=novalue", "attr"),
        ("/explore/api/traces?attr=a%27b%3Dx", "attr"),
        ("/explore/api/logs?level=loud", "level"),
        ("/explore/api/logs?trace_id=abc", "trace_id"),
        ("/explore/api/logs?span_id=" + "g" * 16, "span_id"),
        ("/explore/api/logs?process=not-a-uuid", "process"),
        ("/explore/api/logs?limit=5000", "limit"),
        ("/explore/api/logs?before_ns=soon", "before_ns"),
        ("/explore/api/metrics/series", "name"),
        ("/explore/api/metrics/series?name=x&kind=gauge", "kind"),
        ("/explore/api/metrics/series?name=x&agg=median", "agg"),
        ("/explore/api/metrics/series?name=x&group_by=a%27b", "group_by"),
        ("/explore/api/process/not-a-uuid", "process id"),
        ("/explore/api/process/00000000-0000-0000-0000-000000000001/thread_spans", "stream_id"),
        ("/explore/api/process/00000000-0000-0000-0000-000000000001/thread_spans?stream_id=x", "stream_id"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(explore_lake: ExploreLake, path: str, named: str) -> None:
    answer = request(explore_lake.url(path))
    assert answer.status == 400, answer.body
    assert named in answer.json()["error"]


def test_quotes_in_parameters_do_not_change_the_query(explore_lake: ExploreLake) -> None:
    hostile = quote("x' OR '1'='1")
    for path in (
        f"/explore/api/traces?service={hostile}",
        f"/explore/api/logs?q={hostile}",
        f"/explore/api/service?name={hostile}",
        f"/explore/api/processes?q={hostile}",
    ):
        body = api(explore_lake, path)
        data = body["data"]
        rows = data.get("traces", data.get("rows", data.get("operations", data.get("processes"))))
        assert rows == [], path
        assert any("'x'' OR ''1''=''1'" in q["sql"] or "x'' OR" in q["sql"] for q in body["queries"])


def test_gateway_query_renders_jsonb_as_json(explore_lake: ExploreLake) -> None:
    answer = request(
        explore_lake.url("/gateway/query"),
        method="POST",
        body={"sql": f"SELECT properties FROM processes WHERE exe = '{native.SERVICE}'", "time_range_begin": "1h"},
    )
    assert answer.status == 200
    [row] = answer.json()
    assert row["properties"]["service.name"] == native.SERVICE
