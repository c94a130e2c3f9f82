"""``sirius sail``: a Sail local-cluster started from the command line, used, and stopped by SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from pyspark.sql import SparkSession

SIRIUS = [sys.executable, "-m", "sirius.admin.cli"]


def test_sirius_sail_serves_until_terminated() -> None:
    server = subprocess.Popen(
        [*SIRIUS, "sail", "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # printed once the server accepts connections
        found = re.search(r"with 1 worker\(s\): (sc://127\.0\.0\.1:\d+)", line)
        assert found, (line, server.stderr.read() if server.poll() is not None else "")
        spark = SparkSession.builder.remote(found.group(1)).create()
        try:
            assert spark.sql("SELECT sum(id) AS s FROM range(10)").collect()[0]["s"] == 45
        finally:
            spark.stop()
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_sirius_sail_refuses_a_bad_worker_count() -> None:
    done = subprocess.run([*SIRIUS, "sail", "--workers", "-1"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "workers must be 0 or more" in done.stderr
