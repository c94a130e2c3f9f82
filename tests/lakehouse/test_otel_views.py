"""OTLP blocks in the views: log_entries, measures, otel_spans (per process and global), histograms.

Requests are built as protobuf (exact control of every field, including the ones the receivers
reject) or by the real OTel SDK (exponential histograms), split into blocks by
``sirius.otel_bridge.split_request`` as the receivers do, stored through the lake harness at the
fake clock's time, and read back with ``SessionFactory`` (JIT ``view_instance`` and the global
views after a daemon pass).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from sirius.lakehouse import (
    MaintenanceDaemon,
    PassKind,
    QueryRange,
    SessionFactory,
    list_partitions,
)
from sirius.lakehouse._otlp_payloads import OTLP_LOGS_FORMAT, OTLP_METRICS_FORMAT, OTLP_TRACES_FORMAT
from sirius.lakehouse._sql_bucket_histograms import histogram_quantile
from sirius.lakehouse._sql_jsonb import decode_jsonb
from sirius.lakehouse.views import LogEntriesView, OtelSpansView
from sirius.lakehouse.views._otel_histogram_rows import exponential_as_explicit
from sirius.otel_bridge import LOGS, METRICS, OTLP_FORMATS, TRACES, log_record_is_valid, span_is_valid, split_request

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
T0_NS = 1_772_445_600_000_000_000
S = 1_000_000_000


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def ns(seconds: float) -> int:
    return T0_NS + round(seconds * S)


# ---------------------------------------------------------------------------------------------
# building requests


def kv(key: str, value: Any) -> KeyValue:
    out = KeyValue(key=key)
    out.value.CopyFrom(any_value(value))
    return out


def any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list):
        out.array_value.values.extend(any_value(v) for v in value)
    elif isinstance(value, dict):
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
    return out


def resource_attrs(service: str) -> list[KeyValue]:
    return [kv("service.name", service), kv("service.instance.id", f"{service}-1"), kv("host.name", "node-1")]


async def store(h: Any, signal: Any, request: Any, *, at_second: float) -> list[Any]:
    """Split like the receivers, store process/stream/block rows at T0 + at_second."""
    h.clock.set(at(at_second))
    split = split_request(signal, request, clock=lambda: ns(at_second))
    for item in split.blocks:
        await h.datalake.insert_process(item.process)
        await h.datalake.insert_stream(item.stream, format=signal.format)
        await h.insert(item.block)
    return list(split.blocks)


async def query(lake: Any, sql: str, query_range: QueryRange | None = None) -> pa.Table:
    session = await SessionFactory(lake).create(query_range)
    return (await session.sql(sql)).to_arrow_table()


async def second_pass(lake: Any, second: int) -> None:
    report = await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, at(second + 2.5))
    assert not report.failures, report.failures


def ints(column: pa.ChunkedArray) -> list[int]:
    return column.cast(pa.int64()).to_pylist()


def props(value: bytes) -> dict[str, str]:
    return decode_jsonb(value)


def test_the_views_name_the_formats_the_bridge_writes() -> None:
    assert {OTLP_LOGS_FORMAT, OTLP_METRICS_FORMAT, OTLP_TRACES_FORMAT} == set(OTLP_FORMATS)
    assert (LOGS.format, METRICS.format, TRACES.format) == (OTLP_LOGS_FORMAT, OTLP_METRICS_FORMAT, OTLP_TRACES_FORMAT)


# ---------------------------------------------------------------------------------------------
# logs

TRACE = bytes(range(1, 17))
SPAN = bytes(range(21, 29))


def log_request() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend(resource_attrs("shop"))
    scope = resource.scope_logs.add()
    scope.scope.name = "shop.orders"
    scope.scope.version = "1.2"
    scope.scope.attributes.append(kv("lib", "x"))
    severities = [0, 1, 5, 9, 13, 17, 21, 24, 30]
    for i, number in enumerate(severities):
        record = scope.log_records.add(time_unix_nano=ns(1 + i / 1000), severity_number=number)
        record.body.string_value = f"record {i}"
        record.attributes.append(kv("i", i))
    rich = scope.log_records.add(observed_time_unix_nano=ns(2), severity_number=17, severity_text="ERROR")
    rich.body.kvlist_value.values.extend([kv("order", 42), kv("items", ["a", "b"])])
    rich.trace_id, rich.span_id, rich.event_name = TRACE, SPAN, "order.failed"
    rich.attributes.extend([kv("ok", True), kv("ratio", 0.5), kv("raw", b"\x01\x02"), kv("tags", ["x", 1])])
    timeless = scope.log_records.add(severity_number=9)  # no time at all: the block's begin time
    timeless.body.bytes_value = b"\xff\x00"
    bad = scope.log_records.add(time_unix_nano=ns(3), severity_number=9, trace_id=b"\x01\x02\x03")
    bad.body.string_value = "malformed ids: dropped"
    other = scope.log_records.add(time_unix_nano=ns(3), severity_number=13, span_id=SPAN)
    other.body.int_value = 7
    return request


def test_otel_logs_become_log_entries_rows(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        (block,) = await store(h, LOGS, log_request(), at_second=10.25)
        records = [r for s in log_request().resource_logs[0].scope_logs for r in s.log_records]
        assert [log_record_is_valid(r) for r in records].count(False) == 1
        pid = str(block.process.process_id)
        table = await query(h.lake, f"SELECT * FROM view_instance('log_entries', '{pid}') ORDER BY time, msg")
        assert table.schema.names[-3:] == ["trace_id", "span_id", "service_name"]
        rows = table.to_pylist()
        assert len(rows) == len(records) - 1
        by_msg = {r["msg"]: r for r in rows}
        assert [by_msg[f"record {i}"]["level"] for i in range(9)] == [4, 6, 5, 4, 3, 2, 1, 1, 4]
        assert all(r["target"] == "shop.orders" and r["exe"] == "shop" for r in rows)
        first = by_msg["record 0"]
        assert props(first["properties"]) == {
            "i": "0",
            "otel.scope.name": "shop.orders",
            "otel.scope.version": "1.2",
            "otel.scope.attr.lib": "x",
            "otel.severity_number": "0",
        }
        assert first["trace_id"] is None
        assert first["span_id"] is None
        assert ints(table.column("time"))[0] == ns(1)
        rich = next(r for r in rows if r["msg"].startswith("{"))
        assert json.loads(rich["msg"]) == {"order": 42, "items": ["a", "b"]}
        assert (rich["level"], rich["trace_id"], rich["span_id"]) == (2, TRACE, SPAN)
        rich_props = props(rich["properties"])
        assert rich_props["otel.trace_id"] == TRACE.hex()
        assert rich_props["otel.span_id"] == SPAN.hex()
        assert rich_props["otel.severity_text"] == "ERROR"
        assert rich_props["otel.event_name"] == "order.failed"
        assert (rich_props["ok"], rich_props["ratio"], rich_props["raw"]) == ("true", "0.5", "AQI=")
        assert json.loads(rich_props["tags"]) == ["x", 1]
        times = dict(zip(table.column("msg").to_pylist(), ints(table.column("time")), strict=True))
        assert times[rich["msg"]] == ns(2)  # observed time when time_unix_nano is unset
        assert times[base64.b64encode(b"\xff\x00").decode()] == block.block.begin_time_ns
        assert by_msg["7"]["span_id"] == SPAN
        assert by_msg["7"]["trace_id"] is None
        assert "malformed ids: dropped" not in by_msg

        # the global view after the daemon, through a query range
        await second_pass(h.lake, 10)
        global_rows = await query(h.lake, "SELECT msg, level, trace_id FROM log_entries", QueryRange(at(0), at(60)))
        assert sorted(global_rows.column("msg").to_pylist()) == sorted(by_msg)
        joined = await query(
            h.lake,
            f"SELECT count(*) AS n FROM log_entries WHERE trace_id = X'{TRACE.hex()}'",
            QueryRange(at(0), at(60)),
        )
        assert joined.column("n").to_pylist() == [1]

    local_lake_env(scenario)


def test_partitions_written_before_otlp_support_are_rebuilt(local_lake_env: Any) -> None:
    class OldLogEntries(LogEntriesView):  # what the view was: OTLP blocks skipped, hash [6]
        file_schema_hash = bytes([6])
        other_tags = ()
        extra_formats = {}  # noqa: RUF012 - class constant, as in the parent

    async def scenario(h: Any) -> None:
        lake = h.lake
        await store(h, LOGS, log_request(), at_second=10.25)
        old_views = lake.views
        lake.views = old_views.with_view(OldLogEntries())
        await second_pass(lake, 10)
        old = [p for p in await list_partitions(lake.pool) if p.view_set_name == "log_entries"]
        assert [(p.num_rows, p.file_schema_hash) for p in old] == [(0, bytes([6]))]
        lake.views = old_views
        assert (await query(lake, "SELECT count(*) AS n FROM log_entries")).column("n").to_pylist() == [0]
        await second_pass(lake, 10)  # the same pass again: the current hash has no partition yet
        table = await query(lake, "SELECT count(*) AS n FROM log_entries")
        assert table.column("n").to_pylist() == [12]

    local_lake_env(scenario)


# ---------------------------------------------------------------------------------------------
# spans


def span(
    trace: bytes, span_id: bytes, name: str, start: float, end: float, *, parent: bytes = b"", **fields: Any
) -> Span:
    out = Span(trace_id=trace, span_id=span_id, parent_span_id=parent, name=name)
    out.start_time_unix_nano, out.end_time_unix_nano = ns(start), ns(end)
    for key, value in fields.items():
        if key == "attributes":
            out.attributes.extend(kv(k, v) for k, v in value.items())
        elif key == "status":
            out.status.CopyFrom(value)
        else:
            setattr(out, key, value)
    return out


def trace_request(service: str, spans: list[Span], scope_name: str = "tracer") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(resource_attrs(service))
    scope = resource.scope_spans.add()
    scope.scope.name = scope_name
    scope.spans.extend(spans)
    return request


TRACE_A = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT, CHILD, REMOTE = (
    bytes.fromhex("b7ad6b7169203331"),
    bytes.fromhex("00f067aa0ba902b7"),
    bytes.fromhex("1111222233334444"),
)


def frontend_spans() -> list[Span]:
    root = span(TRACE_A, ROOT, "GET /checkout", 1.0, 1.5, kind=Span.SPAN_KIND_SERVER, attributes={"http.route": "/co"})
    root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    event = root.events.add(name="exception", time_unix_nano=ns(1.4))
    event.attributes.extend([kv("exception.type", "ValueError"), kv("exception.message", "bad card")])
    event.attributes.append(kv("exception.stacktrace", "Traceback ..."))
    root.events.add(name="retry", time_unix_nano=ns(1.2)).attributes.append(kv("attempt", 2))
    link = root.links.add(trace_id=bytes(16), span_id=bytes(8), trace_state="k=v")
    link.attributes.append(kv("why", "batch"))
    child = span(TRACE_A, CHILD, "load cart", 1.1, 1.2, parent=ROOT, kind=Span.SPAN_KIND_CLIENT)
    other = span(bytes(range(16)), bytes(range(8)), "unrelated", 1.0, 1.1)
    zero_end = span(TRACE_A, bytes(8), "no end", 1.0, 1.0)
    zero_end.end_time_unix_nano = 0
    short_id = span(TRACE_A, b"\x01", "bad span id", 1.0, 1.1)
    return [root, child, other, zero_end, short_id]


def test_otel_spans_per_process_and_one_trace_across_services(lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        spans = frontend_spans()
        assert [span_is_valid(s) for s in spans] == [True, True, True, False, False]
        (front,) = await store(h, TRACES, trace_request("frontend", spans), at_second=10.25)
        remote = span(TRACE_A, REMOTE, "charge", 1.25, 1.35, parent=CHILD, kind=Span.SPAN_KIND_SERVER)
        (pay,) = await store(h, TRACES, trace_request("payments", [remote], "pay.lib"), at_second=11.5)
        assert front.process.process_id != pay.process.process_id

        pid = front.process.process_id
        table = await query(lake, f"SELECT * FROM view_instance('otel_spans', '{pid}')")
        assert [(f.name, str(f.type)) for f in table.schema][8:14] == [
            ("trace_id", "fixed_size_binary[16]"),
            ("span_id", "fixed_size_binary[8]"),
            ("parent_span_id", "fixed_size_binary[8]"),
            ("start_time", "timestamp[ns, tz=+00:00]"),
            ("end_time", "timestamp[ns, tz=+00:00]"),
            ("duration", "int64"),
        ]
        assert table.schema.names == OtelSpansView.schema.names
        rows = {r["name"]: r for r in table.to_pylist()}
        assert set(rows) == {"GET /checkout", "load cart", "unrelated"}
        root = rows["GET /checkout"]
        assert (root["trace_id"], root["span_id"], root["parent_span_id"]) == (TRACE_A, ROOT, None)
        assert (root["kind"], root["status"], root["status_message"]) == ("SERVER", "ERROR", "boom")
        assert root["duration"] == 500_000_000
        assert (root["exe"], root["computer"]) == ("frontend", "node-1")
        assert props(root["properties"]) == {"http.route": "/co", "otel.scope.name": "tracer"}
        events = decode_jsonb(root["events"])
        assert [e["name"] for e in events] == ["exception", "retry"]
        assert events[0]["attributes"]["exception.type"] == "ValueError"
        assert events[1] == {"name": "retry", "time_unix_nano": ns(1.2), "attributes": {"attempt": 2}}
        assert decode_jsonb(root["links"]) == [
            {"trace_id": "0" * 32, "span_id": "0" * 16, "trace_state": "k=v", "attributes": {"why": "batch"}}
        ]
        child = rows["load cart"]
        assert (child["parent_span_id"], child["kind"], child["status"], child["status_message"]) == (
            ROOT,
            "CLIENT",
            "UNSET",
            None,
        )
        assert decode_jsonb(child["events"]) == []
        assert decode_jsonb(child["links"]) == []

        # exception events are also logs of the span's process (Warn, target otel.span.exception), with its ids
        logs = await query(lake, f"SELECT * FROM view_instance('log_entries', '{pid}')")
        (error,) = logs.to_pylist()
        assert (error["level"], error["msg"], error["target"]) == (3, "ValueError: bad card", "otel.span.exception")
        assert (error["trace_id"], error["span_id"]) == (TRACE_A, ROOT)
        assert ints(logs.column("time")) == [ns(1.4)]
        error_props = props(error["properties"])
        assert error_props["exception.stacktrace"] == "Traceback ..."
        assert error_props["otel.span.name"] == "GET /checkout"
        assert error_props["otel.scope.name"] == "tracer"

        # the global view: one query by trace_id returns the whole trace, both services
        for second in (10, 11):
            await second_pass(lake, second)
        whole = await query(
            lake,
            f"SELECT exe, name, span_id, parent_span_id FROM otel_spans WHERE trace_id = X'{TRACE_A.hex()}' "
            "ORDER BY start_time",
        )
        assert whole.to_pylist() == [
            {"exe": "frontend", "name": "GET /checkout", "span_id": ROOT, "parent_span_id": None},
            {"exe": "frontend", "name": "load cart", "span_id": CHILD, "parent_span_id": ROOT},
            {"exe": "payments", "name": "charge", "span_id": REMOTE, "parent_span_id": CHILD},
        ]
        same = await query(
            lake,
            f"SELECT count(*) AS n FROM otel_spans WHERE trace_id = decode('{TRACE_A.hex()}', 'hex')",
            QueryRange(at(0), at(60)),
        )
        assert same.column("n").to_pylist() == [3]
        # the minute pass merges the second partitions; rows stay sorted by trace id
        report = await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, at(150))
        assert not report.failures
        merged = [
            p
            for p in await list_partitions(lake.pool)
            if (p.view_set_name, p.view_instance_id) == ("otel_spans", "global") and p.num_rows
        ]
        assert [p.num_rows for p in merged] == [4]
        data = pq.read_table(pa.BufferReader(await lake.store.get(merged[0].file_path)))
        ids = data.column("trace_id").to_pylist()
        assert ids == sorted(ids)

    lake_env(scenario)


def test_global_otel_spans_are_pruned_to_one_row_group_per_file(local_lake_env: Any) -> None:
    class SmallGroups(OtelSpansView):
        row_group_rows = 100

    async def scenario(h: Any) -> None:
        lake = h.lake
        lake.views = lake.views.with_view(SmallGroups())
        rng = np.random.default_rng(7)
        for second in (10, 11):
            spans = [
                span(rng.bytes(16), rng.bytes(8), f"op {i % 7}", second - 9 + i / 1e4, second - 9 + i / 1e4 + 0.001)
                for i in range(1000)
            ]
            await store(h, TRACES, trace_request(f"svc{second}", spans), at_second=second + 0.25)
            await second_pass(lake, second)
        wanted = spans[123].trace_id
        session = await SessionFactory(lake).create()
        sql = f"SELECT name FROM otel_spans WHERE trace_id = X'{wanted.hex()}'"
        assert (await session.sql(sql)).to_arrow_table().column("name").to_pylist() == ["op 4"]
        plan = (await session.sql(f"EXPLAIN ANALYZE {sql}")).to_arrow_table().column(1)[0].as_py()
        pruned = [part.split(",")[0] for part in plan.split("row_groups_pruned_statistics=")[1:]]
        assert len(pruned) == 2  # two partition files, ten row groups each, at most one read in each
        assert all(p in ("10 total → 1 matched", "10 total → 0 matched") for p in pruned), pruned
        assert "10 total → 1 matched" in pruned

    local_lake_env(scenario)


# ---------------------------------------------------------------------------------------------
# metrics


def metrics_request(points: list[tuple[str, Any]], service: str = "shop") -> ExportMetricsServiceRequest:
    """``points``: (kind, builder(metric)) pairs, one metric each."""
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(resource_attrs(service))
    scope = resource.scope_metrics.add()
    scope.scope.name = "shop.meter"
    for _, build in points:
        build(scope.metrics.add())
    return request


def counter(name: str, value: int, time: float, start: float = 0.5, *, cumulative: bool = True, route: str = "/a"):
    def build(metric: Any) -> None:
        metric.name, metric.unit = name, "{request}"
        metric.sum.aggregation_temporality = 2 if cumulative else 1
        metric.sum.is_monotonic = True
        point = metric.sum.data_points.add(start_time_unix_nano=ns(start), time_unix_nano=ns(time), as_int=value)
        point.attributes.append(kv("route", route))

    return ("sum", build)


def test_gauges_sums_and_summaries_become_measures(local_lake_env: Any) -> None:
    def gauge(metric: Any) -> None:
        metric.name, metric.unit = "temperature", "Cel"
        metric.gauge.data_points.add(time_unix_nano=ns(1), as_double=21.5).attributes.append(kv("room", "a"))
        metric.gauge.data_points.add(time_unix_nano=ns(1), as_int=3)
        metric.gauge.data_points.add(time_unix_nano=0, as_int=99)  # rejected by the receivers: dropped
        metric.gauge.data_points.add(time_unix_nano=ns(1), as_int=0, flags=1)  # no recorded value: dropped
        metric.metadata.append(kv("origin", "probe"))

    def updown(metric: Any) -> None:
        metric.name = "queue.depth"
        metric.sum.aggregation_temporality, metric.sum.is_monotonic = 2, False
        metric.sum.data_points.add(start_time_unix_nano=ns(0.5), time_unix_nano=ns(1), as_int=-4)

    def summary(metric: Any) -> None:
        metric.name, metric.unit = "rpc.latency", "ms"
        point = metric.summary.data_points.add(time_unix_nano=ns(1), count=10, sum=55.0)
        for q, v in ((0.0, 1.0), (0.5, 5.0), (1.0, 10.0)):
            point.quantile_values.add(quantile=q, value=v)

    async def scenario(h: Any) -> None:
        request = metrics_request(
            [("gauge", gauge), ("sum", updown), ("summary", summary), counter("hits", 5, 1, cumulative=False)]
        )
        (block,) = await store(h, METRICS, request, at_second=10.25)
        assert split_request(METRICS, request).rejected == 1
        pid = block.process.process_id
        table = await query(lake := h.lake, f"SELECT * FROM view_instance('measures', '{pid}')")
        assert table.schema.names[-2:] == ["delta", "service_name"]
        rows = sorted(
            (r["name"], r["value"], r["delta"], props(r["properties"]).get("quantile")) for r in table.to_pylist()
        )
        assert rows == [
            ("hits", 5.0, 5.0, None),
            ("queue.depth", -4.0, None, None),
            ("rpc.latency", 1.0, None, "0.0"),
            ("rpc.latency", 5.0, None, "0.5"),
            ("rpc.latency", 10.0, None, "1.0"),
            ("rpc.latency_count", 10.0, 10.0, None),
            ("rpc.latency_max", 10.0, None, None),
            ("rpc.latency_min", 1.0, None, None),
            ("rpc.latency_sum", 55.0, 55.0, None),
            ("temperature", 3.0, None, None),
            ("temperature", 21.5, None, None),
        ]
        by_name = {(r["name"], r["value"]): r for r in table.to_pylist()}
        temperature = by_name[("temperature", 21.5)]
        assert (temperature["unit"], temperature["target"]) == ("Cel", "shop.meter")
        assert props(temperature["properties"]) == {
            "room": "a",
            "otel.metric.kind": "gauge",
            "otel.metric.metadata.origin": "probe",
        }
        assert props(by_name[("hits", 5.0)]["properties"]) == {
            "route": "/a",
            "otel.metric.kind": "sum",
            "otel.metric.aggregation_temporality": "1",
            "otel.metric.is_monotonic": "true",
        }
        assert set(ints(table.column("time"))) == {ns(1)}
        await second_pass(lake, 10)
        assert (await query(lake, "SELECT count(*) AS n FROM measures")).column("n").to_pylist() == [11]

    local_lake_env(scenario)


def test_cumulative_sums_also_as_deltas_across_partitions(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        # one export per second, each its own block and (after the daemon) its own partition
        exports = [
            [counter("hits", 5, 1), counter("hits", 1, 1, route="/b")],
            [counter("hits", 8, 2), counter("hits", 1, 2, route="/b")],
            [counter("hits", 2, 3, start=2.5), counter("hits", 4, 3, route="/b")],  # /a restarted
            [counter("hits", 3, 4, start=2.5), counter("hits", 4, 4, route="/b")],
        ]
        for i, points in enumerate(exports):
            await store(h, METRICS, metrics_request(points), at_second=10 + i + 0.25)
            await second_pass(lake, 10 + i)
        table = await query(
            lake,
            "SELECT property_get(properties, 'route') AS route, value, delta FROM measures ORDER BY route, time",
        )
        assert table.to_pylist() == [
            {"route": "/a", "value": 5.0, "delta": 5.0},
            {"route": "/a", "value": 8.0, "delta": 3.0},
            {"route": "/a", "value": 2.0, "delta": 2.0},
            {"route": "/a", "value": 3.0, "delta": 1.0},
            {"route": "/b", "value": 1.0, "delta": 1.0},
            {"route": "/b", "value": 1.0, "delta": 0.0},
            {"route": "/b", "value": 4.0, "delta": 3.0},
            {"route": "/b", "value": 4.0, "delta": 0.0},
        ]
        total = await query(lake, "SELECT sum(delta) AS d FROM measures WHERE name = 'hits'")
        assert total.column("d").to_pylist() == [(5 + 3 + 2 + 1) + (1 + 0 + 3 + 0)]
        # the same through JIT over the whole process (one partition, all four blocks)
        pid = (await query(lake, "SELECT DISTINCT process_id FROM measures")).column(0)[0].as_py()
        jit = await query(
            lake,
            "SELECT property_get(properties, 'route') AS route, delta"
            f" FROM view_instance('measures', '{pid}') ORDER BY route, time",
        )
        assert jit.column("delta").to_pylist() == [5.0, 3.0, 2.0, 1.0, 1.0, 0.0, 3.0, 0.0]

    local_lake_env(scenario)


def test_a_series_seen_mid_life_with_no_history_has_an_unknown_delta(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        lake = h.lake
        # four older blocks without the series, then the series whose start predates them all
        for i in range(4):
            await store(h, METRICS, metrics_request([counter("other", i + 1, 1 + i, start=0.5)]), at_second=10 + i)
        await store(h, METRICS, metrics_request([counter("late", 100, 5, start=0.1)]), at_second=15)
        await store(h, METRICS, metrics_request([counter("late", 110, 6, start=0.1)]), at_second=16)
        await second_pass(lake, 15)
        await second_pass(lake, 16)
        table = await query(lake, "SELECT value, delta FROM measures WHERE name = 'late' ORDER BY time")
        assert table.to_pylist() == [{"value": 100.0, "delta": None}, {"value": 110.0, "delta": 10.0}]

    local_lake_env(scenario)


# ---------------------------------------------------------------------------------------------
# histograms


def explicit_histogram(values: np.ndarray, bounds: list[float], time: float, *, delta: bool = True):
    def build(metric: Any) -> None:
        metric.name, metric.unit = "latency", "ms"
        metric.histogram.aggregation_temporality = 1 if delta else 2
        counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds) + 1)
        point = metric.histogram.data_points.add(
            start_time_unix_nano=ns(0.5), time_unix_nano=ns(time), count=len(values), sum=float(values.sum())
        )
        point.min, point.max = float(values.min()), float(values.max())
        point.explicit_bounds.extend(bounds)
        point.bucket_counts.extend(int(c) for c in counts)
        point.attributes.append(kv("route", "/checkout"))

    return ("histogram", build)


def sdk_exponential_request(values: np.ndarray, *, max_size: int = 160) -> ExportMetricsServiceRequest:
    """A real OTel SDK exponential histogram of ``values`` (at most ``max_size`` buckets), encoded as the exporters do."""
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "exp", "service.instance.id": "e-1"}),
        views=[
            View(instrument_name="exp.latency", aggregation=ExponentialBucketHistogramAggregation(max_size=max_size))
        ],
    )
    histogram = provider.get_meter("exp.meter").create_histogram("exp.latency", unit="ms")
    for value in values.tolist():
        histogram.record(value)
    data = reader.get_metrics_data()
    provider.shutdown()
    return encode_metrics(data)


def test_histograms_view_and_histogram_quantile_on_known_distributions(lake_env: Any) -> None:
    uniform = np.arange(1, 1001, dtype=np.float64)  # 1..1000: q-quantile ≈ 1000 q
    bounds = [float(b) for b in range(0, 1001, 10)]

    async def scenario(h: Any) -> None:
        lake = h.lake
        (block,) = await store(h, METRICS, metrics_request([explicit_histogram(uniform, bounds, 1)]), at_second=10.25)
        await store(h, METRICS, sdk_exponential_request(uniform), at_second=10.5)
        await second_pass(lake, 10)
        table = await query(lake, "SELECT * FROM histograms ORDER BY kind")
        explicit, exponential = table.to_pylist()
        assert (explicit["kind"], explicit["name"], explicit["unit"], explicit["temporality"]) == (
            "explicit",
            "latency",
            "ms",
            "delta",
        )
        assert (explicit["count"], explicit["sum"], explicit["min"], explicit["max"]) == (1000, 500500.0, 1.0, 1000.0)
        assert explicit["bounds"] == bounds
        assert sum(explicit["counts"]) == 1000
        assert explicit["scale"] is None
        assert explicit["pos_counts"] is None
        assert props(explicit["properties"])["route"] == "/checkout"
        assert ints(table.column("start_time"))[0] == ns(0.5)
        assert exponential["kind"] == "exponential"
        assert exponential["exe"] == "exp"
        assert exponential["count"] == 1000
        assert sum(exponential["pos_counts"]) == 1000
        assert exponential["scale"] is not None
        assert exponential["zero_count"] == 0
        assert len(exponential["counts"]) == len(exponential["bounds"]) + 1
        assert sum(exponential["counts"]) == 1000

        quantiles = await query(
            lake,
            "SELECT kind, histogram_quantile(bounds, counts, 0.5) AS p50, histogram_quantile(bounds, counts, 0.99) AS p99,"
            " histogram_quantile(bounds, counts, 0.0) AS p0 FROM histograms ORDER BY kind",
        )
        (e, x) = quantiles.to_pylist()
        assert (e["p50"], e["p99"], e["p0"]) == (500.0, 990.0, 0.0)  # exact on bucket edges, 1st bucket from 0
        base = 2.0 ** (2.0 ** -exponential["scale"])  # one exponential bucket: relative error below base - 1
        assert abs(x["p50"] / 500.0 - 1) < base - 1
        assert abs(x["p99"] / 990.0 - 1) < base - 1
        # delta points: delta_counts are the counts, and the merge over the session reads them
        merged = await query(
            lake,
            "SELECT kind, histogram_quantile(merge_histograms(bounds, delta_counts), 0.5) AS p50 FROM histograms"
            " GROUP BY kind ORDER BY kind",
        )
        assert merged.column("p50").to_pylist()[0] == 500.0
        assert abs(merged.column("p50").to_pylist()[1] / 500.0 - 1) < base - 1

        # measures carries the counts, sums, minima and maxima
        measures = await query(lake, "SELECT name, value FROM measures WHERE name LIKE 'latency%' ORDER BY name")
        assert measures.to_pylist() == [
            {"name": "latency_count", "value": 1000.0},
            {"name": "latency_max", "value": 1000.0},
            {"name": "latency_min", "value": 1.0},
            {"name": "latency_sum", "value": 500500.0},
        ]
        pid = block.process.process_id
        jit = await query(lake, f"SELECT count(*) AS n FROM view_instance('histograms', '{pid}')")
        assert jit.column("n").to_pylist() == [1]

    lake_env(scenario)


def test_exponential_buckets_as_explicit_ones() -> None:
    # scale 1: base sqrt(2); positive buckets 2..3 → (2^(2/2), 2^(3/2)], (2^(3/2), 2^(4/2)]
    bounds, counts = exponential_as_explicit(1, 4, 0.0, (2, [1, 2]), (0, []))
    assert bounds == pytest.approx([2.0, 2.0**1.5, 4.0])
    assert counts == [4, 1, 2, 0]
    bounds, counts = exponential_as_explicit(0, 3, 0.5, (0, []), (1, [1, 2]))  # negatives and the zero bucket
    assert bounds == [-8.0, -4.0, -2.0, 0.5]
    assert counts == [0, 2, 1, 3, 0]
    assert exponential_as_explicit(0, 2, 0.0, (0, []), (0, [])) == ([0.0], [2, 0])


def test_histogram_quantile_edge_cases() -> None:
    lists = pa.array(
        [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [-5.0, 0.0], [1.0], None, [1.0, 2.0], [], [1.0, 2.0]],
        pa.list_(pa.float64()),
    )
    counts = pa.array(
        [
            [0.0, 10.0, 0.0],
            [0.0, 0.0, 10.0],
            [5.0, 5.0, 0.0],
            [4.0, 0.0, 0.0],
            [1.0],
            [1.0],
            [0.0, 0.0, 0.0],
            [3.0],
            None,
        ],
        pa.list_(pa.float64()),
    )
    q = pa.array([0.5, 0.5, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    result = histogram_quantile(lists, counts, q).to_pylist()
    assert result[0] == 1.5  # inside (1, 2]
    assert result[1] == 2.0  # the unbounded last bucket: the highest bound
    assert result[2] == 0.5  # first bucket with a positive bound: from 0
    assert result[3] == -5.0  # first bucket below zero: its bound
    assert result[4:] == [None] * 5  # malformed, null, empty, no bounds, null counts
    out_of_range = histogram_quantile(lists[:2], counts[:2], pa.array([1.5, math.nan])).to_pylist()
    assert out_of_range == [None, None]
    sliced = histogram_quantile(lists[1:3], counts[1:3], pa.array([0.5, 0.25])).to_pylist()
    assert sliced == [2.0, 0.5]


def test_views_drop_exactly_what_the_receivers_reject() -> None:
    from sirius.lakehouse._block_source import SourceBatch, SourceBlock, SourceProcess, SourceStream
    from sirius.lakehouse.views import LOG_ENTRIES_SCHEMA, OTEL_SPANS_SCHEMA
    from sirius.lakehouse.views._otel_logs import otlp_log_entries
    from sirius.lakehouse.views._otel_spans import otlp_spans
    from sirius.tracing import payload_to_cbor

    rng = np.random.default_rng(3)
    spans, records = [], []
    for _ in range(300):
        s = Span(name="s", trace_id=rng.bytes(int(rng.choice([0, 15, 16, 16, 16, 17]))))
        s.span_id, s.parent_span_id = rng.bytes(int(rng.choice([0, 7, 8, 8, 8]))), rng.bytes(int(rng.choice([0, 3, 8])))
        s.start_time_unix_nano = int(rng.choice([0, ns(1), ns(1), ns(1)]))
        s.end_time_unix_nano = int(rng.choice([0, ns(2), ns(2), ns(2)]))
        spans.append(s)
        records.append(LogRecord(trace_id=s.trace_id, span_id=s.span_id, time_unix_nano=ns(1)))
    blocks = [
        split_request(TRACES, trace_request("v", spans)).blocks[0],
        split_request(LOGS, _logs_of(records)).blocks[0],
    ]
    process = blocks[0].process
    for item, maker, schema, valid in (
        (blocks[0], otlp_spans, OTEL_SPANS_SCHEMA, [span_is_valid(s) for s in spans]),
        (blocks[1], otlp_log_entries, LOG_ENTRIES_SCHEMA, [log_record_is_valid(r) for r in records]),
    ):
        b = item.block
        batch = SourceBatch(
            [SourceBlock(b.block_id, b.stream_id, b.process_id, b.begin_time_ns, 0, b.end_time_ns, 0, 1, 0, 0, 0)],
            {b.stream_id: SourceStream(b.stream_id, b.process_id, b"", b"", ("x",), {}, 0, item.signal.format)},
            {
                process.process_id: SourceProcess(
                    process.process_id, "e", "u", "r", "c", "d", "b", 1, 0, 0, 0, "", {}, 1
                )
            },
            [payload_to_cbor(b.payload)],
        )
        assert maker(batch, schema=schema).num_rows == sum(valid) > 0


def _logs_of(records: list[LogRecord]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend(resource_attrs("v"))
    resource.scope_logs.add().log_records.extend(records)
    return request


def test_corrupt_otlp_payloads_are_skipped(local_lake_env: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(h: Any) -> None:
        from sirius.tracing import Block, BlockPayload

        (good,) = await store(h, LOGS, log_request(), at_second=10.25)
        broken = Block(
            block_id=uuid.uuid4(),
            stream_id=good.block.stream_id,
            process_id=good.block.process_id,
            begin_time_ns=ns(1),
            begin_ticks=ns(1),
            end_time_ns=ns(2),
            end_ticks=ns(2),
            payload=BlockPayload(dependencies=b"", objects=b"\xff\xff\xff"),
            object_offset=0,
            nb_objects=3,
        )
        await h.insert(broken)
        pid = good.process.process_id
        table = await query(h.lake, f"SELECT count(*) AS n FROM view_instance('log_entries', '{pid}')")
        assert table.column("n").to_pylist() == [12]
        assert "not a ResourceLogs payload" in caplog.text

    local_lake_env(scenario)


def test_doctests() -> None:
    import doctest

    from sirius.lakehouse import _otlp_payloads, _sql_bucket_histograms, _sql_histogram_merge
    from sirius.lakehouse.views import _otel_histogram_rows, _otel_logs

    for module in (_otlp_payloads, _sql_bucket_histograms, _sql_histogram_merge, _otel_logs, _otel_histogram_rows):
        result = doctest.testmod(module)
        assert result.failed == 0
        assert result.attempted > 0
