"""``sirius demo`` as a user runs it: a subprocess on the embedded default, every section answered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sirius.admin._demo import demo_queries


def test_demo_runs_end_to_end_and_every_question_has_an_answer() -> None:
    # Under /tmp with mode 755: the postgres OS user must reach the embedded cluster (as root).
    root = Path(tempfile.mkdtemp(prefix="sirius-demo-", dir="/tmp"))
    os.chmod(root, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_"))}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sirius.admin.cli", "demo", "--data-dir", str(root / "data"), "--requests", "24"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
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
