"""``sirius trace``, ``sirius tail``, ``sirius services`` and ``sirius perfetto`` through the real
entry point, in subprocesses, against the fed stack (URI from ``--uri`` or the environment)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _native_worker as native
from conftest import FAILED, HEALTH, ORDERS, SPANS_PER_ORDER, ExploreLake

SIRIUS = [sys.executable, "-m", "sirius.admin.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "OTEL_"))}
    return env | extra


def sirius(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SIRIUS, *args], capture_output=True, text=True, timeout=120, env=env or _env(), check=False)


def test_trace_waterfall(explore_lake: ExploreLake) -> None:
    trace_id = explore_lake.fed.failed_traces[0]
    done = sirius("trace", trace_id, "--uri", explore_lake.flightsql)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  {SPANS_PER_ORDER} spans, 2 services (checkout-api, inventory)")
    rows = [parse_row(line) for line in lines if "|" in line]
    assert len(rows) == SPANS_PER_ORDER
    # Depth first in start order, indented by depth.
    assert [(r["name"], r["indent"]) for r in rows] == [
        ("POST /orders", 0),
        ("reserve", 2),
        ("inventory.reserve", 4),
        ("db.query", 6),
        ("cache.get", 2),
        ("render", 2),
    ]
    by_name = {r["name"]: r for r in rows}
    reserve = by_name["inventory.reserve"]
    assert reserve["rest"] == "[inventory]  ERROR: out of stock"
    assert reserve["mark"] == "!*"
    assert by_name["cache.get"]["mark"] == "  "  # no error, off the critical path
    assert by_name["render"]["mark"] == " *"
    assert reserve["duration"] == pytest.approx(40.0)
    assert reserve["offset"] == pytest.approx(15.0)
    assert by_name["POST /orders"]["bar"] == "█" * 40 or by_name["POST /orders"]["bar"] == "#" * 40


def parse_row(line: str) -> dict:
    """``offset duration  |bar| mark text``: the parts of a waterfall line."""
    numbers, bar, tail = line.split("|", 2)
    offset, duration = numbers.split()
    mark, text = tail[1:3], tail[4:]
    name, _sep, rest = text.partition("  [")
    return {
        "offset": float(offset),
        "duration": float(duration),
        "bar": bar,
        "mark": mark,
        "indent": len(name) - len(name.lstrip()),
        "name": name.strip(),
        "rest": "[" + rest,
    }


def test_trace_not_found_and_bad_id(explore_lake: ExploreLake) -> None:
    missing = sirius("trace", "f" * 32, "--uri", explore_lake.flightsql)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    bad = sirius("trace", "xyz", "--uri", explore_lake.flightsql)
    assert bad.returncode == 2
    assert "32 hex characters" in bad.stderr


def test_services_table_from_the_environment_uri(explore_lake: ExploreLake) -> None:
    done = sirius("services", env=_env(MICROMEGAS_ANALYTICS_URI=explore_lake.flightsql))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[3:]}
    assert rows["checkout-api"][1:6] == ["otel", str(ORDERS + HEALTH), "0.003", str(len(FAILED)), "25.0"]
    assert rows["inventory"][2] == str(ORDERS)
    assert rows[native.SERVICE][1:3] == ["native", "0"]
    assert rows[native.SERVICE][4] == str(native.ERRORS)


def test_tail_once_with_filters(explore_lake: ExploreLake) -> None:
    done = sirius("tail", "--once", "--service", "inventory", "--level", "error", "--uri", explore_lake.flightsql)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(FAILED)
    assert all("ERROR" in line and "inventory" in line and "trace=" in line for line in lines)
    times = [line.split()[0] for line in lines]
    assert times == sorted(times)  # oldest first, as a terminal scrolls
    bad = sirius("tail", "--once", "--level", "loud", "--uri", explore_lake.flightsql)
    assert bad.returncode == 2
    assert "level" in bad.stderr


def test_tail_follows_new_rows(explore_lake: ExploreLake) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from sirius.admin._demo import materialize_run

    proc = subprocess.Popen(
        [*SIRIUS, "tail", "--service", "tail-probe", "--max-polls", "600", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(MICROMEGAS_ANALYTICS_URI=explore_lake.flightsql),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        since = time.time_ns()
        provider = LoggerProvider(resource=Resource.create({"service.name": "tail-probe"}))
        provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{explore_lake.stack.endpoints['otlp-http']}/v1/logs"))
        )
        logger = provider.get_logger("tail.probe")

        logger.emit(LogRecord(body="first live line", severity_number=SeverityNumber.WARN))
        provider.force_flush()
        explore_lake.stack.call(materialize_run(explore_lake.stack.stack.lakehouse, since))
        first = lines.get(timeout=60)
        assert "first live line" in first
        assert "WARN" in first
        assert "tail-probe" in first
        logger.emit(LogRecord(body="second live line", severity_number=SeverityNumber.ERROR))
        provider.force_flush()
        explore_lake.stack.call(materialize_run(explore_lake.stack.stack.lakehouse, since))
        second = lines.get(timeout=60)
        assert "second live line" in second
        provider.shutdown()
    finally:
        proc.kill()
        proc.wait(30)


def test_perfetto_file(explore_lake: ExploreLake, tmp_path: Path) -> None:
    processes = json.loads(
        sirius(
            "query",
            f"SELECT process_id FROM processes WHERE exe = '{native.SERVICE}'",
            "--format",
            "json",
            "--begin",
            "1h",
            "--uri",
            explore_lake.flightsql,
        ).stdout
    )
    [process_id] = [p["process_id"] for p in processes]
    output = tmp_path / "worker.perfetto"
    done = sirius("perfetto", process_id, "-o", str(output), "--uri", explore_lake.flightsql)
    assert done.returncode == 0, done.stderr
    data = output.read_bytes()
    assert len(data) > 100
    assert b"job" in data
    assert f"wrote {output}" in done.stdout
    missing = sirius(
        "perfetto", "00000000-0000-0000-0000-000000000001", "-o", str(output), "--uri", explore_lake.flightsql
    )
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_tail_ends_after_max_polls(explore_lake: ExploreLake) -> None:
    done = sirius(
        "tail", "--service", "nobody", "--max-polls", "3", "--interval", "0.05", "--uri", explore_lake.flightsql
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
