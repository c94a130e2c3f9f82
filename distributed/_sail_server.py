"""A Sail Spark Connect server in ``local-cluster`` mode, started as a child process on loopback.

Sail reads its settings from ``SAIL_*`` environment variables when it starts, so the server runs in
a process of its own (``python -m pysail spark server``) with them set: ``SAIL_MODE=local-cluster``
and a fixed number of workers (``SAIL_CLUSTER__WORKER_INITIAL_COUNT`` = ``…_MAX_COUNT``), or
``SAIL_MODE=local`` for zero workers (one process, threads). The driver and the workers listen on
127.0.0.1 by default (checked with ``ss -ltnp``: the Spark Connect port, the driver's and one per
worker, all on loopback), so no network namespace is needed to keep the traffic local.

The server is asked for port 0 and announces the port it took on its log; ``start`` waits for that
line and for the port to accept connections, with a deadline, and fails with the log's tail.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ._exceptions import ClusterError

__all__ = ["SailCluster", "SailClusterConfig"]

_ANNOUNCED = re.compile(r"Spark Connect server on ([0-9.]+):(\d+)")
_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class SailClusterConfig:
    """How to start the server.

    Attributes:
        workers: worker count of the ``local-cluster`` (0: Sail's ``local`` mode, no workers).
        host: address the server, its driver and its workers bind (loopback by default).
        port: Spark Connect port (0: a free one).
        environment: extra variables for the server (``AWS_*`` to read an S3 lake, ``SAIL_*``
            tunables); they override the ones set here.
        start_timeout_seconds: how long ``start`` waits for the server to accept connections.
    """

    workers: int = 2
    host: str = "127.0.0.1"
    port: int = 0
    environment: Mapping[str, str] = field(default_factory=dict)
    start_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("workers must be 0 or more")
        if not 0 <= self.port < 65536:
            raise ValueError("port must be between 0 and 65535")

    def server_environment(self) -> dict[str, str]:
        """The variables the server process starts with (the caller's, then Sail's, then ``environment``)."""
        env = dict(os.environ)
        if self.workers == 0:
            env["SAIL_MODE"] = "local"
        else:
            env["SAIL_MODE"] = "local-cluster"
            env["SAIL_CLUSTER__WORKER_INITIAL_COUNT"] = str(self.workers)
            env["SAIL_CLUSTER__WORKER_MAX_COUNT"] = str(self.workers)
        env["SAIL_CLUSTER__DRIVER_LISTEN_HOST"] = self.host
        env["SAIL_CLUSTER__DRIVER_EXTERNAL_HOST"] = self.host
        env["SAIL_CLUSTER__WORKER_LISTEN_HOST"] = self.host
        env["SAIL_CLUSTER__WORKER_EXTERNAL_HOST"] = self.host
        env.update(self.environment)
        return env


class SailCluster:
    """A running Sail server; ``url`` is its Spark Connect address. Use as a context manager."""

    def __init__(self, config: SailClusterConfig | None = None) -> None:
        self.config = config or SailClusterConfig()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="sirius-sail-")
        self.log_path = Path(self._log_dir.name) / "sail.log"
        self.port: int | None = None

    @property
    def url(self) -> str:
        """``sc://host:port`` once started."""
        if self.port is None:
            raise ClusterError("the Sail server is not started")
        return f"sc://{self.config.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process id (None before ``start``)."""
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        """Start the server and wait until it accepts connections; returns ``url``.

        Raises:
            ClusterError: the server exited or did not listen within ``start_timeout_seconds``.
        """
        command = [sys.executable, "-m", "pysail", "spark", "server"]
        command += ["--ip", self.config.host, "--port", str(self.config.port)]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.config.server_environment()
            )
        deadline = time.monotonic() + self.config.start_timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"the Sail server exited with status {self._process.returncode}")
            if self.port is None:
                found = _ANNOUNCED.search(self.log_path.read_text(errors="replace"))
                self.port = int(found.group(2)) if found else None
            if self.port is not None and _accepts(self.config.host, self.port):
                return self.url
            time.sleep(_POLL_SECONDS)
        self._fail(f"the Sail server did not listen within {self.config.start_timeout_seconds:g} s")
        raise AssertionError  # pragma: no cover - _fail raises

    def _fail(self, reason: str) -> None:
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise ClusterError(f"{reason}; its log ends with:\n{tail}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.port = None

    def close(self) -> None:
        """Stop the server and remove its log."""
        self.stop()
        self._log_dir.cleanup()

    def __enter__(self) -> SailCluster:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
