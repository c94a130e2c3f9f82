"""Self-telemetry: ``sirius up`` traces its own services into its own lake, and never feeds on itself."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner
from waiting import wait_until as _wait_until_shared  # tests/ is on sys.path

from sirius.flight import QueryClientError, query_table

PRODUCER = """
import sys
from sirius import tracing
tracing.init(sys.argv[1], exe="self-telemetry-producer", spool_dir="off")
tracing.info("hello from a producer")
assert tracing.shutdown(30)
"""


def _wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    return _wait_until_shared(what, probe, timeout)


def _produce(ingestion_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PRODUCER, ingestion_url],
        env=embedded_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _query(uri: str, sql: str) -> pa.Table:
    return query_table(sql, uri=uri, begin="1h")


@pytest.fixture
def up_dir() -> Iterator[Path]:
    with reachable_tmp_dir("sirius-self-") as path:
        yield path / "data"


def _up(data_dir: Path, flag: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [*SIRIUS, "up", "--fast-unsafe", flag, "--data-dir", str(data_dir), *ZERO_PORTS],
        env=embedded_env(self_telemetry=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return proc, read_up_banner(proc).urls


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_sirius_up_traces_itself_into_its_lake(up_dir: Path) -> None:
    proc, urls = _up(up_dir, "--self-telemetry")
    try:
        flight = urls["flightsql"]
        _produce(urls["ingestion"])
        otlp = urllib.request.Request(
            f"{urls['otlp-http']}/v1/logs", data=b"", headers={"Content-Type": "application/x-protobuf"}
        )
        with urllib.request.urlopen(otlp, timeout=30) as response:  # an empty export: a request all the same
            assert response.status == 200
        answered = [_query(flight, f"SELECT {n} AS n") for n in range(3)]
        assert [t.column("n")[0].as_py() for t in answered] == [0, 1, 2]

        processes = _wait_for(
            "the sirius process",
            lambda: _query(
                flight,
                "SELECT process_id, exe, property_get(properties, 'service_name') AS service FROM processes "
                "WHERE exe = 'sirius'",
            ).to_pylist(),
        )
        assert [(p["exe"], p["service"]) for p in processes] == [("sirius", "sirius")]
        process_id = processes[0]["process_id"]

        def audit_lines() -> list[dict[str, Any]]:
            rows = _query(
                flight,
                f"SELECT target, level, msg FROM log_entries WHERE process_id = '{process_id}' "
                "AND target = 'flightsql_query_audit'",
            ).to_pylist()
            return [row for row in rows if json.loads(row["msg"])["sql"] == "SELECT 1 AS n"]

        lines = _wait_for("the query audit line of sirius (Micromegas's JSON record)", audit_lines)
        assert all(line["level"] == 4 for line in lines)  # INFO
        record = json.loads(lines[0]["msg"])
        assert (record["status"], record["output_rows"], record["client"]) == ("ok", 1, "sirius-cli")
        assert list(record)[:5] == ["query_id", "client_ip", "client", "agent", "entrypoint"]
        assert list(record)[-5:] == ["bytes_scanned", "peak_memory_bytes", "spilled_bytes", "spill_count", "sql_hash"]
        query_id = record["query_id"]
        assert query_id

        # A denied query: Micromegas's warning line and the query_denied measure tagged by rule.
        rule_id = _query(flight, "SELECT msg FROM deny_queries('sql LIKE ''%denied_marker%''', 'telemetry test')")
        rule_id = rule_id.column("msg")[0].as_py()
        with pytest.raises(QueryClientError, match=f"query denied by rule {rule_id}"):
            _query(flight, "SELECT 1 AS denied_marker")
        _query(flight, f"SELECT remove_query_denial('{rule_id}')")
        warning = _wait_for(
            "the denial warning",
            lambda: _query(
                flight,
                f"SELECT level, msg FROM log_entries WHERE process_id = '{process_id}' "
                f"AND msg LIKE 'query denied rule_id={rule_id} %'",
            ).to_pylist(),
        )
        assert warning[0]["level"] == 3  # WARN
        assert 'reason="telemetry test"' in warning[0]["msg"]
        denied = _wait_for(
            "the query_denied measure",
            lambda: _query(
                flight,
                "SELECT value FROM measures WHERE name = 'query_denied' "
                f"AND property_get(properties, 'rule_id') = '{rule_id}'",
            ).to_pylist(),
        )
        assert [row["value"] for row in denied] == [1.0]

        def query_spans() -> list[dict[str, Any]]:
            streams = _query(
                flight,
                f"SELECT stream_id FROM streams WHERE process_id = '{process_id}' AND array_has(tags, 'cpu')",
            ).to_pylist()
            spans: list[dict[str, Any]] = []
            for stream in streams:
                spans += _query(
                    flight,
                    f"SELECT name, target FROM view_instance('thread_spans', '{stream['stream_id']}') "
                    "WHERE name = 'flightsql.query'",
                ).to_pylist()
            return spans

        spans = _wait_for("the flightsql.query spans of sirius", query_spans)
        assert {(s["name"], s["target"]) for s in spans} == {("flightsql.query", "sirius.flightsql")}

        # An ingestion request span (the producer's posts), as an async span of the sirius process.
        ingestion_spans = _wait_for(
            "ingestion request spans",
            lambda: _query(
                flight,
                "SELECT DISTINCT name FROM view_instance('async_events', "
                f"'{process_id}') WHERE name LIKE 'ingestion.%'",
            ).to_pylist(),
        )
        assert {"ingestion.insert_block"} <= {row["name"] for row in ingestion_spans}
        _wait_for(
            "the OTLP export span",
            lambda: (
                _query(
                    flight, f"SELECT name FROM view_instance('async_events', '{process_id}') WHERE name = 'otlp.logs'"
                ).num_rows
            ),
        )
        # The daemon passes after that outside activity, as async spans.
        _wait_for(
            "a daemon pass span",
            lambda: (
                _query(
                    flight,
                    f"SELECT name FROM view_instance('async_events', '{process_id}') WHERE name = 'daemon.second_pass'",
                ).num_rows
            ),
        )

        # The operations page's example finds those lines as written.
        page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
        section = page.split("## Self-telemetry", 1)[1].split("\n## ", 1)[0]
        (example,) = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
        shown = _query(flight, example.strip()).column("msg").to_pylist()
        # the 20 latest audit records (every query of this test is audited, so the first one may
        # have scrolled out): each is Micromegas's JSON record
        assert shown, "the example shows no audit line"
        assert all(json.loads(msg)["sql"] and json.loads(msg)["query_id"] for msg in shown), shown
    finally:
        _stop(proc)


def test_without_self_telemetry_nothing_of_sirius_appears(up_dir: Path) -> None:
    proc, urls = _up(up_dir, "--no-self-telemetry")
    try:
        flight = urls["flightsql"]
        _produce(urls["ingestion"])
        # the daemon's pass may write log_entries before processes: wait for both
        _wait_for(
            "the producer's log line and process",
            lambda: (
                _query(flight, "SELECT msg FROM log_entries WHERE msg = 'hello from a producer'").num_rows
                and _query(flight, "SELECT exe FROM processes").num_rows
            ),
        )
        # Queries answered, data ingested and materialised: Sirius recorded nothing of its own.
        assert _query(flight, "SELECT exe FROM processes").column("exe").to_pylist() == ["self-telemetry-producer"]
        assert _query(flight, "SELECT count(*) AS n FROM log_entries WHERE exe = 'sirius'").column("n")[0].as_py() == 0
    finally:
        _stop(proc)


class _PassCounter(logging.Handler):
    """Counts the daemon's pass summaries (one per pass, DEBUG when idle)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.passes = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("second pass over "):
            self.passes += 1


def test_self_telemetry_does_not_feed_on_itself(stack_factory: Any, pg_dsn: str) -> None:
    daemon_logger = logging.getLogger("sirius.lakehouse._maintenance_daemon")
    counter = _PassCounter()
    previous = daemon_logger.level
    daemon_logger.setLevel(logging.DEBUG)
    daemon_logger.addHandler(counter)
    try:
        stack = stack_factory(self_telemetry=True, durable=False)
        flight = next(e.url for e in stack.endpoints if e.name == "flightsql")
        _produce(stack.url)
        assert _query(flight, "SELECT 1 AS one").column("one")[0].as_py() == 1

        async def sirius_blocks() -> int | None:
            # Straight from PostgreSQL: a FlightSQL query would itself be traced.
            conn = await asyncpg.connect(pg_dsn)
            try:
                return await conn.fetchval(
                    "SELECT count(b.block_id) FROM processes p LEFT JOIN blocks b USING (process_id) "
                    "WHERE p.exe = 'sirius' HAVING count(p.process_id) > 0"
                )
            finally:
                await conn.close()

        def blocks() -> int | None:
            return asyncio.run(sirius_blocks())

        _wait_for("the first blocks of sirius", blocks)

        def after_passes(n: int) -> int:
            target = counter.passes + n
            _wait_for(f"{n} daemon passes", lambda: counter.passes >= target)
            return blocks() or 0

        # Let what the query and the producer caused settle (their lines, the daemon line they
        # allow, that line's own materialisation), then idle: Sirius's blocks stay put. On a
        # loaded machine a slow pass may log (a warning that is itself telemetry), so one quiet
        # window of eight passes out of three is asked for; feeding on itself grows in every one.
        settled = after_passes(4)
        growth = []
        for _ in range(3):
            idle = after_passes(8)
            growth.append(idle - settled)
            if growth[-1] <= 2:
                break
            settled = idle
        assert growth[-1] <= 2, f"blocks of sirius while idle, per window of 8 passes: {growth}"
        assert stack.stack.self_telemetry_running
    finally:
        daemon_logger.removeHandler(counter)
        daemon_logger.setLevel(previous)


def _service(args: list[str], env: dict[str, str], prefix: str) -> tuple[subprocess.Popen[str], str]:
    """Start a single service; return it and the URL it printed on its ``prefix`` line."""
    proc = subprocess.Popen([*SIRIUS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return proc, line.split()[1]
    pytest.fail(f"{args[0]} ended before printing its URL")


def test_single_services_trace_themselves_when_asked(pg_dsn: str, tmp_path: Path) -> None:
    lake = {"MICROMEGAS_SQL_CONNECTION_STRING": pg_dsn, "MICROMEGAS_OBJECT_STORE_URI": tmp_path.as_uri()}
    base = {**embedded_env(self_telemetry=True), **lake}
    procs: list[subprocess.Popen[str]] = []
    try:
        ingest, ingestion = _service(["ingest", "--host", "127.0.0.1", "--port", "0"], base, "ingestion")
        procs.append(ingest)  # without SIRIUS_SELF_TELEMETRY: a single service does not trace itself
        on = {**base, "SIRIUS_SELF_TELEMETRY": "1", "MICROMEGAS_TELEMETRY_URL": ingestion}
        flight_proc, flight = _service(["flight", "--host", "127.0.0.1", "--port", "0"], on, "flightsql")
        procs.append(flight_proc)
        # Wait until the daemon runs its passes: under load its start alone can take half a
        # minute, which the wait for the materialised line below must not pay for.
        daemon, _ = _service(["daemon"], base, "maintenance daemon running")
        procs.append(daemon)
        assert _query(flight, "SELECT 7 AS n").column("n")[0].as_py() == 7
        rows = _wait_for(
            "the flight service's process and query line",
            lambda: _query(
                flight,
                "SELECT l.msg, property_get(p.properties, 'sirius_service') AS service "
                "FROM log_entries l JOIN processes p USING (process_id) "
                "WHERE p.exe = 'sirius' AND l.target = 'flightsql_query_audit' AND l.msg LIKE '%\"output_rows\":1,%'",
            ).to_pylist(),
        )
        assert {row["service"] for row in rows} == {"flight"}
        # Only the flight service traced itself.
        assert _query(flight, "SELECT count(*) AS n FROM processes WHERE exe = 'sirius'").column("n")[0].as_py() == 1
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
