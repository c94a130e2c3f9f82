"""``sirius demo`` as a user runs it: a subprocess on the embedded default, every section answered."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sirius.admin._demo import demo_queries
from sirius.flight import query_table
from sirius.tracing import format_rfc3339_ns

PORTS = [a for n in ("ingestion", "otlp-grpc", "otlp-http", "flight", "gateway") for a in (f"--{n}-port", "0")]
EXPLORE_LINE = re.compile(r"^Explore: http://127\.0\.0\.1:3000/trace/([0-9a-f]{32})$", re.MULTILINE)


def _demo(data_dir: Path, requests: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "sirius.admin.cli", "demo", "--data-dir", str(data_dir), "--requests", str(requests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _failed_checkouts(data_dir: Path) -> list[dict[str, object]]:
    """The failed checkout traces of the demo's data directory, slowest first, asked of `sirius up` on it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}
    env["SIRIUS_SELF_TELEMETRY"] = "0"  # only the demo's traces in the lake
    up = subprocess.Popen(
        [sys.executable, "-m", "sirius.admin.cli", "up", "--fast-unsafe", "--data-dir", str(data_dir), *PORTS],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert up.stdout is not None
        urls = {}
        while "flightsql" not in urls:
            line = up.stdout.readline()
            assert line, "sirius up exited early"
            urls[line.split()[0]] = line.split()[-1]
        sql = (
            "SELECT encode(trace_id, 'hex') AS trace_id, duration FROM otel_spans "
            "WHERE name = 'POST /checkout' AND status = 'ERROR' ORDER BY duration DESC"
        )
        end = format_rfc3339_ns(time.time_ns() + 600 * 1_000_000_000)  # the demo's spans end about now
        return query_table(sql, uri=urls["flightsql"], begin="3h", end=end).to_pylist()
    finally:
        up.terminate()
        up.wait(timeout=60)


def _section(out: str, title: str) -> str:
    return out.split(f"== {title}\n", 1)[1].split("\n== ", 1)[0].split("\n\nThe data stays", 1)[0]


def test_demo_runs_end_to_end_and_every_question_has_an_answer() -> None:
    # Under /tmp with mode 755: the postgres OS user must reach the embedded cluster (as root).
    root = Path(tempfile.mkdtemp(prefix="sirius-demo-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        out = _demo(root / "data", 24)
        failed = _failed_checkouts(root / "data")
        # A second run in the same directory reports its own run only: each route once, its
        # own three processes, and the same answers as a first run would give.
        again = _demo(root / "data", 6)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert "durability is off for the demo" in out  # the demo runs --fast-unsafe, and says so
    for query in demo_queries():
        section = out.split(f"== {query.title}\n", 1)[1].split("\n== ", 1)[0]
        assert "query failed" not in section, section
        assert "row" in section.splitlines()[-1] or "rows)" in section, section
    assert "POST /checkout" in out  # the slowest failed checkout's trace
    assert "charge_card" in out  # … crosses into the payments service
    assert "card declined" in out  # an error log recorded with the exception
    assert "_price_cart" in out  # native spans of real work
    p99 = out.split("== p99 of http.server.duration by route (ms)\n", 1)[1].split("\n== ", 1)[0]
    assert p99.rstrip().endswith("(3 rows)"), p99  # one cumulative point per route, exported once
    trace = out.split("== One whole trace across services", 1)[1].split("\n== ", 1)[0]
    assert "ERROR" in trace
    assert "shop-frontend" in trace
    assert "shop-payments" in trace
    p99_again = _section(again, "p99 of http.server.duration by route (ms)")
    assert p99_again.rstrip().endswith("(3 rows)"), p99_again
    assert all(line.split()[2] == "2" for line in p99_again.splitlines()[2:5]), p99_again  # 6 requests / 3 routes
    assert _section(again, "Processes that reported").rstrip().endswith("(3 rows)")
    native = _section(again, "Native thread spans of the frontend (C tracer, real work)")
    calls = {line.split()[0]: line.split()[1] for line in native.splitlines()[2:-1]}
    assert calls == {"handle_request": "6", "_price_cart": "6"}, native
    # The closing hint names commands that exist, and no environment variable a client ignores.
    assert 'micromegas.connect("grpc://127.0.0.1:50051")' in again
    assert "up --data-dir" in again
    # It ends with the Explore URL of its slowest failed trace, to open once `sirius up` serves the directory.
    urls = EXPLORE_LINE.findall(out)
    assert len(urls) == 1, out[-800:]
    assert out.rstrip().splitlines()[-2].startswith("Explore: "), out[-800:]
    assert "up --data-dir" in out.rstrip().splitlines()[-1]
    assert failed, "the demo's seed makes some checkouts fail"
    assert urls[0] == failed[0]["trace_id"], (urls, failed[:3])
