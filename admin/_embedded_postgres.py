"""An embedded PostgreSQL for ``sirius up`` (and the test suite) when no DSN is configured.

Two ways to get a server, tried in order:

1. the system's PostgreSQL binaries (Debian's ``/usr/lib/postgresql/*/bin``); as root they run
   as the ``postgres`` OS user through ``runuser`` because ``initdb`` refuses to run as root;
2. ``pgserver`` from PyPI (bundles PostgreSQL; creates its own OS user when run as root).

The server listens on 127.0.0.1 on a free port with its socket inside the data directory, and
is tuned for a disposable single-user store (no fsync), which is what a laptop demo wants.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

from ._exceptions import EmbeddedPostgresError

_LOG = logging.getLogger(__name__)
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _system_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process, with its data under ``data_dir``.

    Args:
        data_dir: directory for the cluster (created; reused when it already holds one).
        method: ``"auto"`` (system binaries, then pgserver), ``"system"`` or ``"pgserver"``.
    """

    def __init__(self, data_dir: str | os.PathLike[str], method: str = "auto") -> None:
        if method not in ("auto", "system", "pgserver"):
            msg = f"unknown embedded PostgreSQL method {method!r}"
            raise EmbeddedPostgresError(msg)
        self.method = method
        self.data_dir = Path(data_dir).resolve()
        self._dsn: str | None = None
        self._stop_cmd: list[str] | None = None
        self._pgserver: object | None = None

    @property
    def dsn(self) -> str:
        """The ``postgresql://`` URI of the running server."""
        if self._dsn is None:
            msg = "embedded PostgreSQL is not started"
            raise EmbeddedPostgresError(msg)
        return self._dsn

    def start(self) -> str:
        """Start the server (initialising the cluster on first use) and return its DSN.

        Raises:
            EmbeddedPostgresError: when neither the system binaries nor pgserver can run it.
        """
        bin_dir = _system_bin_dir()
        errors: list[str] = []
        if self.method in ("auto", "system"):
            if bin_dir is None:
                errors.append("no system PostgreSQL binaries (pg_ctl) found")
            else:
                try:
                    return self._start_system(bin_dir)
                except (OSError, subprocess.CalledProcessError, EmbeddedPostgresError) as exc:
                    errors.append(f"system PostgreSQL in {bin_dir}: {exc}")
        if self.method in ("auto", "pgserver"):
            try:
                return self._start_pgserver()
            except Exception as exc:  # noqa: BLE001 - pgserver raises assorted errors; all mean "cannot"
                errors.append(f"pgserver: {exc!r}")
        msg = "cannot start an embedded PostgreSQL: " + "; ".join(errors)
        raise EmbeddedPostgresError(msg)

    def _run_as(self) -> list[str]:
        # initdb and postgres refuse to run as root: switch to the postgres OS user.
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            if shutil.which("runuser") is None:
                msg = "running as root needs runuser to start PostgreSQL as the postgres user"
                raise EmbeddedPostgresError(msg)
            return ["runuser", "-u", "postgres", "--"]
        return []

    def _start_system(self, bin_dir: Path) -> str:
        prefix = self._run_as()
        pgdata = self.data_dir / "system-pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        if prefix:
            shutil.chown(pgdata, "postgres", "postgres")
            os.chmod(pgdata, 0o700)
            # The postgres user must be able to reach the directory through its parents.
            probe = subprocess.run([*prefix, "test", "-w", str(pgdata)], check=False)
            if probe.returncode != 0:
                msg = f"user postgres cannot write {pgdata} (a parent directory is not traversable)"
                raise EmbeddedPostgresError(msg)
        if not (pgdata / "PG_VERSION").exists():
            initdb = [str(bin_dir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres", "--no-sync"]
            subprocess.run(
                [*prefix, *initdb, "-E", "UTF8"],
                check=True,
                capture_output=True,
            )
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdata} {_SERVER_OPTIONS}"
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-l", str(pgdata / "server.log")]
        result = subprocess.run(
            [*prefix, *pg_ctl, "-o", options, "start"],
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            log_tail = ""
            log_path = pgdata / "server.log"
            if log_path.exists():
                log_tail = log_path.read_text(errors="replace")[-2000:]
            msg = f"pg_ctl start failed: {result.stderr.strip()} {log_tail}"
            raise EmbeddedPostgresError(msg)
        self._stop_cmd = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]
        self._dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _LOG.info("embedded PostgreSQL (system binaries) on 127.0.0.1:%s, data in %s", port, pgdata)
        return self._dsn

    def _start_pgserver(self) -> str:
        import pgserver  # the [embedded] extra

        pgdata = self.data_dir / "pgserver"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
        self._pgserver = server
        self._dsn = server.get_uri()
        _LOG.info("embedded PostgreSQL (pgserver), data in %s", pgdata)
        return self._dsn

    def stop(self) -> None:
        """Stop the server cleanly (fast shutdown: committed data is safe)."""
        if self._stop_cmd is not None:
            subprocess.run(self._stop_cmd, check=False, capture_output=True)
            self._stop_cmd = None
        if self._pgserver is not None:
            self._pgserver.cleanup()  # type: ignore[attr-defined]
            self._pgserver = None
        self._dsn = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
