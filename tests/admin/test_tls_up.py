"""``sirius up --tls-cert --tls-key --tls-ca`` as a user runs it: every URL it prints is TLS, a producer
trusting the test CA delivers, the stack's own self-telemetry reaches its TLS ingestion port, and
``sirius query --tls-ca`` reads both back (real processes, embedded PostgreSQL)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner
from tls_certificates import Pki, make_pki
from waiting import wait_until

from sirius.flight import query_table

PRODUCER = """
import sys
from sirius import tracing
tracing.init(sys.argv[1], exe="tls-producer", spool_dir="off")
tracing.info("hello over TLS")
assert tracing.shutdown(30)
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    with reachable_tmp_dir("sirius-tls-up-") as path:
        yield path


def test_sirius_up_with_tls_flags_serves_and_traces_itself_over_tls(workdir: Path) -> None:
    pki: Pki = make_pki(workdir / "pki")
    tls = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key), "--tls-ca", str(pki.ca)]
    proc = subprocess.Popen(
        [*SIRIUS, "up", "--fast-unsafe", "--self-telemetry", "--data-dir", str(workdir / "data"), *ZERO_PORTS, *tls],
        env=embedded_env(self_telemetry=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        urls = read_up_banner(proc).urls
        assert {name: url.split("://")[0] for name, url in urls.items()} == {
            "ingestion": "https",
            "otlp-grpc": "https",
            "otlp-http": "https",
            "flightsql": "grpc+tls",
            "gateway": "https",
        }
        producer = subprocess.run(
            [sys.executable, "-c", PRODUCER, urls["ingestion"]],
            env={**embedded_env(), "SIRIUS_TLS_CA_FILE": str(pki.ca)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert producer.returncode == 0, producer.stderr

        def processes() -> list[str]:
            table = query_table("SELECT exe FROM processes ORDER BY exe", uri=urls["flightsql"], ca_file=str(pki.ca))
            names = table.column("exe").to_pylist()
            return names if names == ["sirius", "tls-producer"] else []

        wait_until("the producer's and sirius's own processes", processes)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "without TLS" not in err
