"""``sirius demo``: the whole system in one command, on the embedded default.

It starts the all-in-one stack (embedded PostgreSQL and local objects under the data
directory, every service on a free port), runs the sample service of ``_demo_app`` as a
separate process (OTel SDK over OTLP/gRPC and the native tracer over the ingestion route),
makes its data queryable with one maintenance pass, then asks the FlightSQL server — the path
the ``micromegas`` client and Grafana take — a few questions and prints the answers, and the
commands to keep exploring. Everything stops at the end; the data stays in the data directory.

Each run tags its processes with a fresh run id (``_demo_app.RUN_PROPERTY``) and every question
is asked about those processes only, so a second demo in the same directory reports its own
run, not the sum of both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..flight import DEFAULT_FLIGHT_PORT, format_table, query_table
from ..lakehouse import Lakehouse, TimeRange, materialize_partitions
from ..tracing import format_rfc3339_ns
from ._demo_app import RUN_PROPERTY
from ._stack import Stack, StackOptions

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class DemoQuery:
    """One question the demo asks, with the SQL that answers it."""

    title: str
    sql: str


_RUN_ID = re.compile(r"[0-9a-f]*")


def this_run(column: str, run_id: str) -> str:
    """SQL condition: the process properties in ``column`` are those of the demo run ``run_id``.

    Native processes carry the run id as a property, OTLP ones as a resource attribute (stored
    as an ``otel.resource.`` property).

    Raises:
        ValueError: ``run_id`` is not lowercase hex (it is pasted into SQL).
    """
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"a demo run id is lowercase hex, not {run_id!r}")
    return (
        f"(property_get({column}, '{RUN_PROPERTY}') = '{run_id}' "
        f"OR property_get({column}, 'otel.resource.{RUN_PROPERTY}') = '{run_id}')"
    )


# The questions, about the processes of one run: $PROCS filters ``processes`` rows, $EVENTS the
# rows of event views (by their ``process_properties``), $RUN is the run id.
_QUESTIONS = (
    (
        "Processes that reported",
        "SELECT exe, computer, arrow_cast(start_time, 'Utf8') AS start_time, process_id "
        "FROM processes WHERE $PROCS ORDER BY exe",
    ),
    (
        "Slowest OTel spans",
        "SELECT exe AS service, name, round(arrow_cast(duration, 'Float64') / 1e6, 2) AS duration_ms, "
        "encode(trace_id, 'hex') AS trace_id FROM otel_spans WHERE $EVENTS ORDER BY duration DESC LIMIT 5",
    ),
    (
        "Error logs (OTel and native)",
        "SELECT arrow_cast(time, 'Utf8') AS time, target, msg FROM log_entries "
        "WHERE level <= 2 AND $EVENTS ORDER BY time LIMIT 8",
    ),
    (
        "p99 of http.server.duration by route (ms)",
        # The run's points merged per route (delta_counts: whatever the SDK's temporality).
        "SELECT route, arrow_cast(array_sum(get_field(merged, 'counts')), 'Int64') AS requests, "
        "round(histogram_quantile(merged, 0.99), 1) AS p99_ms FROM ("
        "SELECT property_get(properties, 'http.route') AS route, merge_histograms(bounds, delta_counts) AS merged "
        "FROM histograms WHERE name = 'http.server.duration' AND $EVENTS GROUP BY route"
        ") ORDER BY route",
    ),
    (
        "One whole trace across services (the slowest failed checkout)",
        "SELECT exe AS service, name, round(arrow_cast(duration, 'Float64') / 1e6, 2) AS ms, status "
        "FROM otel_spans WHERE $EVENTS AND trace_id = ("
        "SELECT trace_id FROM otel_spans WHERE name = 'POST /checkout' AND status = 'ERROR' "
        "AND $EVENTS ORDER BY duration DESC LIMIT 1"
        ") ORDER BY start_time",
    ),
    (
        "Native thread spans of the frontend (C tracer, real work)",
        "SELECT name, count(*) AS calls, round(avg(arrow_cast(duration, 'Float64')) / 1e6, 3) AS avg_ms, "
        "round(max(arrow_cast(duration, 'Float64')) / 1e6, 3) AS max_ms FROM process_spans("
        "(SELECT arrow_cast(process_id, 'Utf8') FROM processes "
        "WHERE property_get(properties, '$PROPERTY') = '$RUN' LIMIT 1), 'thread') "
        "GROUP BY name ORDER BY max_ms DESC",
    ),
)


def demo_queries(run_id: str = "") -> list[DemoQuery]:
    """The demo's questions about the run ``run_id``, in the order they are printed."""
    procs, events = this_run("properties", run_id), this_run("process_properties", run_id)
    return [
        DemoQuery(
            title,
            sql.replace("$PROCS", procs)
            .replace("$EVENTS", events)
            .replace("$PROPERTY", RUN_PROPERTY)
            .replace("$RUN", run_id),
        )
        for title, sql in _QUESTIONS
    ]


async def materialize_run(lakehouse: Lakehouse, since_ns: int) -> None:
    """Build the global views over what was inserted since ``since_ns``, as the daemon would.

    One-second partitions, those the daemon's per-second passes make, up to the present: the
    current second's is cut there (``until_now``), inside the daemon's slice of that second, so
    a ``sirius up`` started later on the directory keeps updating them as usual. (A partition
    reaching into the future would miss whatever is inserted before its end, and the daemon's
    passes could not update it until then.)
    """
    insert_range = TimeRange(since_ns - since_ns % NS - NS, lakehouse.now_ns())
    for view in lakehouse.views.global_views():  # in update-group order
        await materialize_partitions(lakehouse, view.name, insert_range, NS, until_now=True)


def _run_query(uri: str, query: DemoQuery, begin_ns: int, end_ns: int) -> str:
    try:
        table: pa.Table = query_table(
            query.sql, uri=uri, begin=format_rfc3339_ns(begin_ns), end=format_rfc3339_ns(end_ns)
        )
    except Exception as exc:  # noqa: BLE001 - a demo prints what failed and carries on
        return f"(query failed: {exc})"
    return format_table(table)


def _script(name: str) -> str:
    """How to call a script of this environment from the current directory (``.venv/bin/sirius``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_SLOWEST_FAILED_SQL = (
    "SELECT encode(trace_id, 'hex') AS trace_id FROM otel_spans WHERE name = 'POST /checkout' "
    "AND status = 'ERROR' AND $EVENTS ORDER BY duration DESC LIMIT 1"
)
_GATEWAY_PORT = {f.name: f.default for f in dataclasses.fields(StackOptions)}["gateway_port"]


def slowest_failed_trace(uri: str, run_id: str, begin_ns: int, end_ns: int) -> str | None:
    """Hex id of the run's slowest failed checkout trace, or None when the run had no failure."""
    sql = _SLOWEST_FAILED_SQL.replace("$EVENTS", this_run("process_properties", run_id))
    try:
        table = query_table(sql, uri=uri, begin=format_rfc3339_ns(begin_ns), end=format_rfc3339_ns(end_ns))
    except Exception:  # noqa: BLE001 - the demo's questions already printed what failed
        return None
    ids = table.column("trace_id").to_pylist() if table.num_rows else []
    return ids[0] if ids else None


def explore_hint(data_dir: Path, trace_id: str) -> str:
    """The Explore page of ``trace_id``, to open once ``sirius up`` serves the data directory."""
    up = f"{_script('sirius')} up --data-dir {shlex.quote(str(data_dir))}"
    return (
        f"\nExplore: http://127.0.0.1:{_GATEWAY_PORT}/trace/{trace_id}\n"
        f"  (the slowest failed checkout's waterfall; the demo's stack has stopped: open it once `{up}` runs)"
    )


_HINT_LOGS_SQL = "SELECT time, target, msg FROM log_entries ORDER BY time DESC LIMIT 20"
_HINT_PROCESSES_SQL = "SELECT exe, process_id FROM processes"


def closing_hint(data_dir: Path) -> str:
    """What to run next, with commands that work as printed (default ports of ``sirius up``)."""
    sirius, python = _script("sirius"), _script("python")
    uri = f"grpc://127.0.0.1:{DEFAULT_FLIGHT_PORT}"
    client = f'import micromegas; print(micromegas.connect("{uri}").query("{_HINT_PROCESSES_SQL}"))'
    return "\n".join(
        [
            f"\nThe data stays in {data_dir}. To explore it further, start the stack on it:",
            f"  {sirius} up --data-dir {shlex.quote(str(data_dir))}",
            "and, in another terminal, query it (FlightSQL on its default port):",
            f"  {sirius} query {shlex.quote(_HINT_LOGS_SQL)} --begin 2h",
            f"  {python} -c {shlex.quote(client)}",
            "(`sirius query` reads MICROMEGAS_ANALYTICS_URI when --uri is not given; micromegas.connect() takes",
            " the URI as its argument, micromegas.connect_with_profile() reads MICROMEGAS_ANALYTICS_URI.)",
        ]
    )


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
        durable=False,  # quick, and said on screen: like `sirius up --fast-unsafe`
    )
    stack = Stack(options)
    run_id = uuid.uuid4().hex[:12]
    endpoints = {e.name: e.url for e in await stack.start()}
    started_ns = time.time_ns()
    try:
        print("sirius demo: the stack is up on the embedded default")
        print("sirius demo: durability is off for the demo (PostgreSQL without fsync, as with sirius up --fast-unsafe)")
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
            "--run-id",
            run_id,
        )
        if await proc.wait() != 0:
            print("sirius demo: the sample service failed", file=sys.stderr)
            return 1
        lakehouse = stack.lakehouse
        if lakehouse is None:
            return 1
        await materialize_run(lakehouse, started_ns)
        end_ns = time.time_ns() + 60 * NS
        failures = 0
        for query in demo_queries(run_id):
            text = await asyncio.to_thread(_run_query, endpoints["flightsql"], query, begin_ns, end_ns)
            failures += text.startswith("(query failed") or text == "no data"
            print(f"\n== {query.title}\n{text}")
        print(closing_hint(data_dir))
        trace_id = await asyncio.to_thread(slowest_failed_trace, endpoints["flightsql"], run_id, begin_ns, end_ns)
        if trace_id is not None:
            print(explore_hint(data_dir, trace_id))
        return 0 if failures == 0 else 1
    finally:
        await stack.stop()
