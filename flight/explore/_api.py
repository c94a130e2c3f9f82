"""The Explore JSON API (``/explore/api/*``), mounted on the gateway's aiohttp application.

Each endpoint validates its parameters (400 with a reason naming the bad one), builds its SQL
with the ``_*_queries`` modules, runs it through the gateway's FlightSQL client
(:meth:`GatewayService.run_sql`: same keys, range headers and client headers as
``/gateway/query``) and answers the envelope ``{"data", "queries", "range"}`` where ``queries``
lists every statement sent with its time, rows and bytes. Keys: as the gateway (401 JSON
without a valid one when keys are configured). Server SQL errors are 400 with the server's
message; an unknown trace or process is 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow as pa
from aiohttp import web

from .._gateway import GatewayError, GatewayService, QueryAnswer
from . import _log_queries as logs
from . import _metric_queries as metrics
from . import _process_queries as procs
from . import _services_queries as red
from . import _trace_queries as traces
from ._errors import ExploreError
from ._latency import red_by_group
from ._range import TimeWindow, bucket_seconds, parse_window
from ._render import column_types, render_table, rfc3339, table_columns, table_rows
from ._shaping import (
    bucket_starts,
    log_rows,
    process_row,
    services_data,
    stream_rows,
    trace_data,
    trace_list,
)
from ._sql_literals import parse_float, parse_hex_id, parse_int, parse_level, parse_uuid

__all__ = ["ExploreApi"]

_LOG = logging.getLogger(__name__)
API = "/explore/api"
TRACE_DEFAULT_FROM = "30d"
MAX_SQL_ROWS = 10_000
_MAX_SQL_BYTES = 1024 * 1024


class _Call:
    """One API request: its window, the queries it ran, and how to run one more."""

    def __init__(
        self, gateway: GatewayService, request: web.Request, window: TimeWindow, body: dict[str, Any] | None = None
    ) -> None:
        self.gateway = gateway
        self.request = request
        self.window = window
        self.body = body or {}
        self.queries: list[dict[str, Any]] = []

    async def table(self, sql: str, window: TimeWindow | None = None) -> pa.Table:
        window = window or self.window
        answer: QueryAnswer = await self.gateway.run_sql(self.request, sql, window.begin, window.end)
        self._record(answer)
        return answer.table

    def _record(self, answer: QueryAnswer) -> None:
        self.queries.append(
            {"sql": answer.sql, "elapsed_ms": round(answer.elapsed_ms, 3), "rows": answer.rows, "bytes": answer.bytes}
        )

    async def rows(self, sql: str) -> list[dict[str, Any]]:
        return table_rows(await self.table(sql))

    async def tables(self, *sqls: str) -> list[pa.Table]:
        """Several independent queries at once (the server runs them in parallel), listed in this order."""
        run = self.gateway.run_sql
        answers = await asyncio.gather(*(run(self.request, sql, self.window.begin, self.window.end) for sql in sqls))
        for answer in answers:
            self._record(answer)
        return [answer.table for answer in answers]

    async def rows_of(self, *sqls: str) -> list[list[dict[str, Any]]]:
        """Rows of several independent queries run at once."""
        return [table_rows(table) for table in await self.tables(*sqls)]

    def envelope(self, data: Any) -> web.Response:
        body = {"data": data, "queries": self.queries, "range": self.window.as_json()}
        return web.json_response(body, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _error_response(message: str, status: int, call: _Call | None) -> web.Response:
    """``{"error"}``, plus the queries run so far and the range searched once the window was parsed.

    A 404 (unknown trace or process) thus shows the SQL that found nothing and the range it searched.
    """
    body: dict[str, Any] = {"error": message}
    if call is not None:
        body["queries"] = call.queries
        body["range"] = call.window.as_json()
    return web.json_response(body, status=status, dumps=_dumps)


def _param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


Handler = Callable[[_Call], Awaitable[web.StreamResponse]]


class ExploreApi:
    """The ``/explore/api`` routes over a gateway's FlightSQL client.

    Args:
        gateway: the gateway whose keys and FlightSQL connection the API uses.
        clock: "now" in Unix ns (default the wall clock), for relative ranges.
    """

    def __init__(self, gateway: GatewayService, clock: Callable[[], int] = time.time_ns) -> None:
        self.gateway = gateway
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        """Register every API route on ``app``."""
        get = app.router.add_get
        get(f"{API}/services", self._wrap(self._services))
        get(f"{API}/service", self._wrap(self._service))
        get(f"{API}/traces", self._wrap(self._traces))
        get(f"{API}/trace/{{trace_id}}", self._wrap(self._trace, default_from=TRACE_DEFAULT_FROM))
        get(f"{API}/logs", self._wrap(self._logs))
        get(f"{API}/metrics/names", self._wrap(self._metric_names))
        get(f"{API}/metrics/series", self._wrap(self._metric_series))
        get(f"{API}/processes", self._wrap(self._processes))
        get(f"{API}/process/{{process_id}}", self._wrap(self._process))
        get(f"{API}/process/{{process_id}}/thread_spans", self._wrap(self._thread_spans))
        get(f"{API}/process/{{process_id}}/perfetto", self._wrap(self._perfetto))
        app.router.add_post(f"{API}/sql", self._wrap(self._sql, body=True))
        app.router.add_route("*", API + "/{tail:.*}", self._unknown)

    async def _unknown(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"no such API route: {request.method} {request.path}"}, status=404)

    def _wrap(
        self, handler: Handler, *, default_from: str = "1h", body: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            call: _Call | None = None
            try:
                self.gateway.authorize(request)
                begin, end = _param(request, "from"), _param(request, "to")
                payload = None
                if body:
                    payload = await _json_body(request)
                    begin = _body_text(payload, "from") or begin
                    end = _body_text(payload, "to") or end
                window = parse_window(begin, end, self._clock(), default_from=default_from)
                call = _Call(self.gateway, request, window, payload)
                return await handler(call)
            except ExploreError as exc:
                return _error_response(exc.message, exc.status, call)
            except GatewayError as exc:
                status = 400 if exc.status == 500 else exc.status  # a failed query is the query's fault
                return _error_response(exc.message, status, call)
            except Exception as exc:  # noqa: BLE001 - a bug: say what failed, not a bare "Internal Server Error"
                _LOG.exception("explore: %s %s failed", request.method, request.path)
                return web.json_response({"error": f"explore failed: {type(exc).__name__}: {exc}"}, status=500)

        return route

    # -- services --------------------------------------------------------------------------

    async def _services(self, call: _Call) -> web.Response:
        bucket = bucket_seconds(call.window)
        histogram, process_rows, error_rows = await call.tables(
            red.red_histogram_sql(bucket), red.processes_by_service_sql(), red.error_logs_by_service_sql()
        )
        figures = red_by_group(histogram, bucket_starts(call.window, bucket))
        data = services_data(call.window, bucket, figures, table_rows(process_rows), table_rows(error_rows))
        return call.envelope(data)

    async def _service(self, call: _Call) -> web.Response:
        name = _param(call.request, "name")
        if name is None:
            raise ExploreError("name is required (the service name)")
        bucket = bucket_seconds(call.window)
        histogram, error_spans, error_logs, process_rows = await call.tables(
            red.red_histogram_sql(bucket, service=name),
            red.service_error_spans_sql(name),
            logs.logs_sql(logs.LogFilter(level=2, service=name, limit=50), extra_row=False),
            procs.processes_sql(service=name),
        )
        figures = red_by_group(histogram, bucket_starts(call.window, bucket), scope="all")
        operations = services_data(call.window, bucket, figures, [], [], key="operation")["operations"]
        errors = log_rows(table_rows(error_logs)) + [
            {
                "time": rfc3339(row["time"]),
                "time_ns": row["time"],
                "trace_id": row["trace_id"],
                "span_id": row["span_id"],
                "name": row["name"],
                "message": row["message"],
            }
            for row in table_rows(error_spans)
        ]
        errors.sort(key=lambda row: row["time_ns"], reverse=True)
        return call.envelope(
            {
                "service": name,
                "operations": operations,
                "errors": errors,
                "processes": [process_row(row) for row in table_rows(process_rows)],
            }
        )

    # -- traces ----------------------------------------------------------------------------

    async def _traces(self, call: _Call) -> web.Response:
        q = call.request.query
        f = traces.TraceFilter(
            service=_param(call.request, "service"),
            operation=_param(call.request, "operation"),
            min_ms=parse_float(q.get("min_ms"), "min_ms"),
            max_ms=parse_float(q.get("max_ms"), "max_ms"),
            status=_param(call.request, "status"),
            attrs=traces.parse_attrs([v for v in q.getall("attr", []) if v.strip()]),
            text=_param(call.request, "q"),
            sort=_param(call.request, "sort") or "start",
            limit=parse_int(q.get("limit"), "limit", default=50, low=1, high=500) or 50,
        )
        roots = await call.rows(traces.traces_sql(f))
        stats = await call.rows(traces.trace_stats_sql([r["trace_id"] for r in roots])) if roots else []
        return call.envelope({"traces": trace_list(roots, stats)})

    async def _trace(self, call: _Call) -> web.Response:
        trace_id = parse_hex_id(call.request.match_info["trace_id"], "trace id", length=32)
        table = await call.table(traces.trace_spans_sql(trace_id))
        if table.num_rows == 0:
            window = call.window
            raise ExploreError(f"trace {trace_id} not found in {window.begin} .. {window.end}", status=404)
        spans = table_columns(table)
        # The trace's logs lie within its spans: only the partitions around them are read.
        start = min(spans["start_time"]) - traces.LOG_MARGIN_NS
        end = max(spans["end_time"]) + traces.LOG_MARGIN_NS
        trace_logs = table_rows(await call.table(traces.trace_logs_sql(trace_id), TimeWindow(start, end)))
        return call.envelope(trace_data(trace_id, spans, log_rows(trace_logs)))

    # -- logs ------------------------------------------------------------------------------

    async def _logs(self, call: _Call) -> web.Response:
        q = call.request.query
        before = parse_int(q.get("before_ns"), "before_ns", default=None, low=0, high=2**63 - 1)
        after = parse_int(q.get("after_ns"), "after_ns", default=None, low=0, high=2**63 - 1)
        f = logs.LogFilter(
            text=_param(call.request, "q"),
            level=parse_level(q.get("level")),
            service=_param(call.request, "service"),
            target=_param(call.request, "target"),
            process_id=_checked(_param(call.request, "process"), lambda v: parse_uuid(v, "process")),
            trace_id=_checked(_param(call.request, "trace_id"), lambda v: parse_hex_id(v, "trace_id", length=32)),
            span_id=_checked(_param(call.request, "span_id"), lambda v: parse_hex_id(v, "span_id", length=16)),
            before_ns=before,
            after_ns=after,
            limit=parse_int(q.get("limit"), "limit", default=100, low=1, high=1000) or 100,
        )
        [times] = await call.rows(logs.log_times_sql(f))
        if not times["n"]:
            return call.envelope({"rows": [], "next_before_ns": None})
        since = times["since"]
        narrowed = TimeWindow(max(call.window.begin_ns, since), max(call.window.end_ns, since + 1))
        rows = log_rows(table_rows(await call.table(logs.logs_sql(f, since_ns=since), narrowed)))
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        next_before = rows[-1]["time_ns"] if more and rows else None
        return call.envelope({"rows": rows, "next_before_ns": next_before})

    # -- metrics ---------------------------------------------------------------------------

    async def _metric_names(self, call: _Call) -> web.Response:
        text = _param(call.request, "q")
        names, keys = await call.rows_of(metrics.metric_names_sql(text), metrics.metric_properties_sql(text))
        by_metric: dict[tuple[str, str], set[str]] = {}
        for row in keys:
            by_metric.setdefault((row["name"], row["kind"]), set()).update(k for k in row["keys"] or [] if k)
        return call.envelope(
            {
                "metrics": [
                    {
                        "name": row["name"],
                        "unit": row["unit"],
                        "kind": row["kind"],
                        "services": sorted(s for s in row["services"] or [] if s is not None),
                        "properties": sorted(by_metric.get((row["name"], row["kind"]), set())),
                    }
                    for row in names
                ]
            }
        )

    async def _metric_series(self, call: _Call) -> web.Response:
        name = _param(call.request, "name")
        if name is None:
            raise ExploreError("name is required (the metric name)")
        kind = _param(call.request, "kind") or "measure"
        if kind not in metrics.KINDS:
            raise ExploreError(f"kind must be 'measure' or 'histogram', got {kind!r}")
        agg = _param(call.request, "agg") or "auto"
        group_by = _param(call.request, "group_by")
        bucket = bucket_seconds(call.window)
        from ._shaping import metric_series

        if kind == "measure":
            rows = await call.rows(metrics.measure_series_sql(name, call.window, bucket, group_by, agg))
            quantile_rows: list[dict[str, Any]] = []
        else:
            metrics.group_expression(group_by)  # validated before any query runs
            rows, quantile_rows = await call.rows_of(
                metrics.histogram_series_sql(name, call.window, bucket, group_by),
                metrics.histogram_quantiles_sql(name, call.window, bucket),
            )
        return call.envelope(metric_series(call.window, bucket, kind, rows, quantile_rows))

    # -- processes -------------------------------------------------------------------------

    async def _processes(self, call: _Call) -> web.Response:
        rows = await call.rows(procs.processes_sql(_param(call.request, "q"), _param(call.request, "service")))
        return call.envelope({"processes": [process_row(row) for row in rows]})

    async def _process(self, call: _Call) -> web.Response:
        process_id = parse_uuid(call.request.match_info["process_id"], "process id")
        rows = await call.rows(procs.process_sql(process_id))
        if not rows:
            raise ExploreError(
                f"process {process_id} not found in {call.window.begin} .. {call.window.end}", status=404
            )
        streams = stream_rows(await call.rows(procs.streams_sql(process_id)))
        threads = [
            {"stream_id": s["stream_id"], "thread_name": s["properties"].get("thread-name") or s["stream_id"]}
            for s in streams
            if "cpu" in s["tags"]
        ]
        return call.envelope({"process": process_row(rows[0]), "streams": streams, "threads": threads})

    async def _thread_spans(self, call: _Call) -> web.Response:
        process_id = parse_uuid(call.request.match_info["process_id"], "process id")
        stream_id = _param(call.request, "stream_id")
        if stream_id is None:
            raise ExploreError("stream_id is required (a cpu stream of the process)")
        stream_id = parse_uuid(stream_id, "stream_id")
        limit = parse_int(call.request.query.get("limit"), "limit", default=50_000, low=1, high=200_000) or 50_000
        owner, rows = await call.rows_of(
            procs.stream_owner_sql(stream_id, process_id), procs.thread_spans_sql(stream_id, limit)
        )
        if not owner:
            window = call.window
            raise ExploreError(
                f"stream {stream_id} of process {process_id} not found in {window.begin} .. {window.end}", 404
            )
        spans = [
            {
                "id": row["id"],
                "parent": row["parent"],
                "depth": row["depth"],
                "name": row["name"],
                "target": row["target"],
                "begin_ns": row["begin"],
                "end_ns": row["end"],
                "duration_ms": row["duration"] / 1e6,
            }
            for row in rows
        ]
        return call.envelope({"spans": spans, "truncated": len(spans) >= limit})

    async def _perfetto(self, call: _Call) -> web.StreamResponse:
        process_id = parse_uuid(call.request.match_info["process_id"], "process id")
        if not await call.rows(procs.process_sql(process_id)):
            raise ExploreError(f"process {process_id} not found in {call.window.begin} .. {call.window.end}", 404)
        table = await call.table(procs.perfetto_sql(process_id, call.window))
        data = b"".join(table.column("chunk_data").to_pylist())
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename={process_id}.perfetto"},
        )

    # -- SQL -------------------------------------------------------------------------------

    async def _sql(self, call: _Call) -> web.Response:
        sql = call.body.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise ExploreError("sql must be a non-empty string")
        table = await call.table(sql)
        truncated = table.num_rows > MAX_SQL_ROWS
        if truncated:
            table = table.slice(0, MAX_SQL_ROWS)
        rows, jsonb_columns = render_table(table)
        names = table.column_names
        return call.envelope(
            {
                "columns": column_types(table, jsonb_columns),
                "rows": [[row[n] for n in names] for row in rows],
                "truncated": truncated,
            }
        )


def _checked(value: str | None, check: Callable[[str], str]) -> str | None:
    return None if value is None else check(value)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > _MAX_SQL_BYTES:
        raise ExploreError("the body is too large (1 MiB at most)")
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise ExploreError("the body must be a JSON object with a 'sql' string") from None
    if not isinstance(payload, dict):
        raise ExploreError("the body must be a JSON object with a 'sql' string")
    return payload


def _body_text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ExploreError(f"{name} must be a string: RFC 3339 or a duration (15m, 1h, 7d)")
    return value


def mount_explore(app: web.Application, gateway: GatewayService) -> None:
    """Add the Explore API, its sign-in routes (with an OIDC issuer configured) and pages to the gateway's app."""
    from ._login import ExploreLogin, mount_login
    from ._static import add_static_routes

    ExploreApi(gateway).add_routes(app)
    mount_login(app, ExploreLogin.from_env())  # MICROMEGAS_OIDC_CONFIG, read once at start
    add_static_routes(app)
