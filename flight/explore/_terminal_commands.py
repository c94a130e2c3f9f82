"""``sirius trace``, ``sirius tail``, ``sirius services`` and ``sirius perfetto``: Explore in a terminal.

Each runs the SQL of the matching API endpoint (the same ``_*_queries`` builders) over
FlightSQL with ``sirius query``'s client (:func:`sirius.flight._query_client.query_table`), the
URI and key resolved the same way (``--uri``/``--api-key``, else ``MICROMEGAS_ANALYTICS_URI`` /
``MICROMEGAS_API_KEY``). They return an exit code: 0, 1 when the object is not found, 2 on a
bad argument or a failed query (the reason on stderr).

``sirius tail`` polls for rows newer than what it printed. Log records can be stored after
later ones (exporters send in batches), so each poll looks back ``lookback`` seconds before
the newest time printed (never before the first page's oldest row) and skips rows it already
printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow as pa

from .._query_client import QueryClientError, query_table, query_target
from . import _log_queries as logs
from . import _process_queries as procs
from . import _services_queries as red
from . import _trace_queries as traces
from ._errors import ExploreError
from ._latency import red_by_group
from ._range import NS_PER_S, TimeWindow, bucket_seconds, parse_window
from ._render import rfc3339, table_columns, table_rows
from ._shaping import bucket_starts, log_rows, services_data, trace_data
from ._sql_literals import parse_hex_id, parse_level, parse_uuid
from ._terminal_views import format_log_line, format_services, format_waterfall

__all__ = ["TailOptions", "run_perfetto", "run_services", "run_tail", "run_trace"]


@dataclass(frozen=True, slots=True)
class _Target:
    uri: str
    api_key: str | None
    ca_file: str | None = None

    def rows(self, sql: str, window: TimeWindow) -> list[dict]:
        return table_rows(self.table(sql, window))

    def table(self, sql: str, window: TimeWindow) -> pa.Table:
        return query_table(
            sql, uri=self.uri, begin=window.begin, end=window.end, api_key=self.api_key, ca_file=self.ca_file
        )


def _fail(err: IO[str], command: str, message: str, code: int = 2) -> int:
    err.write(f"sirius {command}: {message}\n")
    err.flush()
    return code


def _unicode(out: IO[str]) -> bool:
    return "utf" in (getattr(out, "encoding", None) or "").lower()


def run_trace(
    trace_id: str,
    *,
    uri: str | None = None,
    api_key: str | None = None,
    ca_file: str | None = None,
    begin: str | None = None,
    end: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Print one trace as an indented waterfall (``begin`` defaults to 30 days ago)."""
    out, err = out or sys.stdout, err or sys.stderr
    target = _Target(*query_target(uri, api_key), ca_file=ca_file)
    try:
        hex_id = parse_hex_id(trace_id, "trace id", length=32)
        window = parse_window(begin, end, time.time_ns(), default_from="30d")
        table = target.table(traces.trace_spans_sql(hex_id), window)
        if table.num_rows == 0:
            return _fail(err, "trace", f"trace {hex_id} not found in {window.begin} .. {window.end}", 1)
        trace = trace_data(hex_id, table_columns(table), [])
    except (ExploreError, QueryClientError) as exc:
        return _fail(err, "trace", str(exc))
    out.write(format_waterfall(trace, unicode=_unicode(out)) + "\n")
    out.flush()
    return 0


def run_services(
    *,
    uri: str | None = None,
    api_key: str | None = None,
    ca_file: str | None = None,
    begin: str | None = None,
    end: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Print the RED table of every service seen in the range (``begin`` defaults to 1 h ago)."""
    out, err = out or sys.stdout, err or sys.stderr
    target = _Target(*query_target(uri, api_key), ca_file=ca_file)
    try:
        window = parse_window(begin, end, time.time_ns())
        bucket = bucket_seconds(window)
        figures = red_by_group(target.table(red.red_histogram_sql(bucket), window), bucket_starts(window, bucket))
        data = services_data(
            window,
            bucket,
            figures,
            target.rows(red.processes_by_service_sql(), window),
            target.rows(red.error_logs_by_service_sql(), window),
        )
    except (ExploreError, QueryClientError) as exc:
        return _fail(err, "services", str(exc))
    out.write(f"services from {window.begin} to {window.end}\n")
    out.write(format_services(data["services"]) + "\n")
    out.flush()
    return 0


@dataclass(frozen=True, slots=True)
class TailOptions:
    """What ``sirius tail`` shows and how it polls.

    Args:
        service: only this service's rows.
        level: the most verbose level shown (1..6 or a name).
        target: only this target.
        text: only messages containing this.
        begin: how far back the first page goes (RFC 3339 or a duration).
        initial: rows of the first page (the newest ones).
        follow: keep polling (``--once`` turns it off).
        max_polls: stop after this many polls after the first page (None: until interrupted).
        interval: seconds between polls.
        lookback: seconds before the newest printed row each poll looks at again.
    """

    service: str | None = None
    level: str | None = None
    target: str | None = None
    text: str | None = None
    begin: str = "1h"
    initial: int = 50
    follow: bool = True
    max_polls: int | None = None
    interval: float = 1.0
    lookback: float = 60.0


def _row_key(row: dict) -> tuple:
    return (row["time_ns"], row["process_id"], row["target"], row["msg"])


def run_tail(
    options: TailOptions,
    *,
    uri: str | None = None,
    api_key: str | None = None,
    ca_file: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the newest log rows, then (``follow``) new ones as they arrive."""
    out, err = out or sys.stdout, err or sys.stderr
    target = _Target(*query_target(uri, api_key), ca_file=ca_file)
    try:
        base = logs.LogFilter(
            text=options.text,
            level=parse_level(options.level),
            service=options.service,
            target=options.target,
            limit=max(1, min(options.initial, 1000)),
        )
        window = parse_window(options.begin, None, time.time_ns())
        [times] = target.rows(logs.log_times_sql(base, extra_row=False), window)  # two steps, as the API
        first = []
        if times["n"]:
            since = times["since"]
            narrowed = TimeWindow(max(window.begin_ns, since), max(window.end_ns, since + 1))
            first = log_rows(target.rows(logs.logs_sql(base, extra_row=False, since_ns=since), narrowed))
    except (ExploreError, QueryClientError) as exc:
        return _fail(err, "tail", str(exc))
    seen: dict[tuple, int] = {}
    newest = window.begin_ns
    # Rows older than the first page's oldest were left out on purpose (its size): never print them.
    floor = first[-1]["time_ns"] if len(first) >= base.limit else window.begin_ns
    for row in reversed(first):
        out.write(format_log_line(row) + "\n")
        seen[_row_key(row)] = row["time_ns"]
        newest = max(newest, row["time_ns"])
    out.flush()
    polls = 0
    lookback_ns = int(options.lookback * NS_PER_S)
    while options.follow and (options.max_polls is None or polls < options.max_polls):
        sleep(options.interval)
        polls += 1
        since = max(newest - lookback_ns, floor - 1, 0)
        now = time.time_ns()
        poll = logs.LogFilter(
            text=base.text, level=base.level, service=base.service, target=base.target, after_ns=since, limit=1000
        )
        try:
            rows = log_rows(target.rows(logs.logs_sql(poll, extra_row=False), TimeWindow(since, max(now, since + 1))))
        except QueryClientError as exc:
            return _fail(err, "tail", str(exc))
        for row in reversed(rows):
            key = _row_key(row)
            if key in seen:
                continue
            seen[key] = row["time_ns"]
            newest = max(newest, row["time_ns"])
            out.write(format_log_line(row) + "\n")
        out.flush()
        horizon = newest - lookback_ns
        for key in [k for k, t in seen.items() if t < horizon]:
            del seen[key]
    return 0


def run_perfetto(
    process_id: str,
    output: str,
    *,
    uri: str | None = None,
    api_key: str | None = None,
    ca_file: str | None = None,
    begin: str | None = None,
    end: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Write a process's Perfetto trace (thread and OTel spans) to ``output``.

    Without ``begin``/``end`` the trace covers the process's life as seen in the last 30 days.
    """
    out, err = out or sys.stdout, err or sys.stderr
    target = _Target(*query_target(uri, api_key), ca_file=ca_file)
    try:
        pid = parse_uuid(process_id, "process id")
        search = parse_window(begin, end, time.time_ns(), default_from="30d")
        found = target.rows(procs.process_sql(pid), search)
        if not found:
            return _fail(err, "perfetto", f"process {pid} not found in {search.begin} .. {search.end}", 1)
        window = search
        if begin is None and end is None:
            window = TimeWindow(found[0]["start_time"], max(found[0]["last_seen"], found[0]["start_time"]) + NS_PER_S)
        table = target.table(procs.perfetto_sql(pid, window), window)
    except (ExploreError, QueryClientError) as exc:
        return _fail(err, "perfetto", str(exc))
    data = b"".join(table.column("chunk_data").to_pylist())
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        return _fail(err, "perfetto", f"cannot write {output}: {exc}")
    out.write(
        f"wrote {output} ({len(data):,} bytes, {rfc3339(window.begin_ns)} .. {rfc3339(window.end_ns)}); "
        "open it in https://ui.perfetto.dev\n"
    )
    out.flush()
    return 0
