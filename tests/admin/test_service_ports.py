"""The single-service commands refuse a taken port in one line naming the service and the flag.

Real ``sirius ingest|otlp|flight|gateway`` subprocesses against the test's PostgreSQL and a
local object store; the port is held by a listening socket of the test.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from cli_subprocess import SIRIUS, embedded_env

CASES = [
    ("ingest", "ingestion", "--port", []),
    ("otlp", "otlp-grpc", "--grpc-port", ["--http-port", "0"]),
    ("otlp", "otlp-http", "--http-port", ["--grpc-port", "0"]),
    ("flight", "flightsql", "--port", []),
    ("gateway", "gateway", "--port", []),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}{c[2]}" for c in CASES])
def test_a_taken_port_is_one_line_and_exit_code_2(
    pg_dsn: str, tmp_path: Path, case: tuple[str, str, str, list[str]]
) -> None:
    command, service, flag, others = case
    store = (tmp_path / "objects").as_uri()
    lake = [] if command == "gateway" else ["--sql-connection-string", pg_dsn, "--object-store-uri", store]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SIRIUS, command, "--host", "127.0.0.1", flag, str(port), *others, *lake],
            env=embedded_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == f"sirius {command}: port {port} ({service}) is in use; pick another with {flag}"
    assert result.stdout == "", "nothing started"
