"""``sirius demo`` as a user runs it: a subprocess on the embedded default, every section answered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sirius.admin._demo import demo_queries


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


def _section(out: str, title: str) -> str:
    return out.split(f"== {title}\n", 1)[1].split("\n== ", 1)[0].split("\n\nThe data stays", 1)[0]


def test_demo_runs_end_to_end_and_every_question_has_an_answer() -> None:
    # Under /tmp with mode 755: the postgres OS user must reach the embedded cluster (as root).
    root = Path(tempfile.mkdtemp(prefix="sirius-demo-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        out = _demo(root / "data", 24)
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
