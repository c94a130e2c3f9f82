"""An embedded PostgreSQL for ``sirius up`` (and the test suite) when no DSN is configured.

Two ways to get a server:

1. the system's PostgreSQL binaries (Debian's ``/usr/lib/postgresql/*/bin``); as root they run
   as the ``postgres`` OS user through ``runuser`` because ``initdb`` refuses to run as root;
   the server listens on 127.0.0.1 on a free port, its socket inside the cluster directory;
2. ``pgserver`` from PyPI (bundles PostgreSQL; creates its own OS user when run as root;
   Unix socket only).

**One method per directory.** The start that creates the cluster writes its method (``system``
or ``pgserver``) into the file ``method`` of the directory; every later start uses that method
and no other. If it cannot start, the error says why: nothing falls back to the other method,
which would initialise a second, empty cluster beside the real one. Only a fresh directory with
method ``"auto"`` may fall back (system binaries first, then pgserver), and the reason the
system binaries could not run is logged as a warning. A directory made before the marker
existed is recognised by the cluster it holds (``system-pg/`` or ``pgserver/``).

**Durable by default.** The server runs with ``fsync``, ``synchronous_commit`` and
``full_page_writes`` on, so a committed row survives a power cut. ``durable=False`` (``sirius up
--fast-unsafe``, ``sirius demo``) turns the three off: faster, but a crash of the machine can
lose or corrupt recent data. The setting applies per start (system binaries: server options;
pgserver: ``ALTER SYSTEM``, reset on the next durable start).

**A server already running on the cluster** is refused (``PostgresInUseError`` with its PID),
unless the caller declares it an orphan with ``stop_orphan=True``. ``sirius up`` does so only
while it holds the data directory lock (``_data_dir_lock``), i.e. when no live Sirius process
owns that server: it is what ``kill -9`` of ``sirius up`` leaves behind. The orphan gets a fast
shutdown (every committed row is kept), then the cluster starts again with this process's
settings. Sirius never attaches to a server it did not start: it could not vouch for the
server's settings (durability) and would not own its shutdown.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ._exceptions import EmbeddedPostgresError, PostgresInUseError
from ._postmaster import PostmasterInfo, live_postmaster, process_is_zombie, read_postmaster_pid

_LOG = logging.getLogger(__name__)

METHOD_FILE = "method"
"""Name of the file, in the embedded directory, that records how its cluster was made."""
METHODS = ("system", "pgserver")
_PGDATA = {"system": "system-pg", "pgserver": "pgserver"}
_UNSAFE_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
_PG_CTL_TIMEOUT_S = 60
_REAP_TIMEOUT_S = 30


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


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def live_embedded_postmaster(data_dir: Path) -> PostmasterInfo | None:
    """The postmaster running on either cluster of an embedded directory, if any."""
    for name in _PGDATA.values():
        info = live_postmaster(Path(data_dir) / name)
        if info is not None:
            return info
    return None


def _wait_for_reaping(pgdata: Path) -> None:
    """Wait (bounded) until a postmaster that died uncleanly is reaped by its parent.

    An orphaned postmaster's parent is PID 1, which reaps when it gets round to it; until then
    PostgreSQL takes the zombie for a live server and refuses to start on the cluster.
    """
    info = read_postmaster_pid(pgdata)
    if info is None:
        return
    deadline = time.monotonic() + _REAP_TIMEOUT_S
    while process_is_zombie(info.pid):
        if time.monotonic() > deadline:
            msg = f"PostgreSQL (PID {info.pid}) on {pgdata} has exited but its parent has not reaped it"
            raise EmbeddedPostgresError(msg)
        time.sleep(0.05)


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process, with its data under ``data_dir``.

    Args:
        data_dir: directory for the cluster (created; reused when it already holds one).
        method: ``"auto"`` (the recorded method; on a fresh directory system binaries, then
            pgserver), ``"system"`` or ``"pgserver"`` (refused if the directory records the other).
        durable: PostgreSQL's durable settings (True) or fsync and friends off (False).
        stop_orphan: stop a server found running on the cluster instead of refusing to start.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        method: str = "auto",
        *,
        durable: bool = True,
        stop_orphan: bool = False,
    ) -> None:
        if method not in ("auto", *METHODS):
            msg = f"unknown embedded PostgreSQL method {method!r}"
            raise EmbeddedPostgresError(msg)
        self.method = method
        self.durable = durable
        self.stop_orphan = stop_orphan
        self.data_dir = Path(data_dir).resolve()
        self.used_method: str | None = None
        self.postmaster_pid: int | None = None
        self._dsn: str | None = None
        self._stop_cmd: list[str] | None = None
        self._stop_user: str | None = None
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
            PostgresInUseError: a server already runs on the cluster (and ``stop_orphan`` is off).
            EmbeddedPostgresError: the recorded method (or, on a fresh directory, every method)
                cannot run the server.
        """
        recorded = self.recorded_method()
        if recorded is not None or self.method != "auto":
            return self._start_with(recorded or self.method)
        try:
            return self._start_with("system")
        except EmbeddedPostgresError as exc:
            if self.recorded_method() is not None:
                raise  # the cluster exists now: falling back would hide it behind an empty one
            _LOG.warning("system PostgreSQL cannot run (%s); initialising the cluster with pgserver", exc)
            try:
                return self._start_with("pgserver")
            except EmbeddedPostgresError as second:
                msg = f"cannot start an embedded PostgreSQL: system binaries: {exc}; pgserver: {second}"
                raise EmbeddedPostgresError(msg) from second

    def recorded_method(self) -> str | None:
        """The method the directory's cluster was made with; None for a fresh directory.

        Raises:
            EmbeddedPostgresError: the marker is invalid, contradicts ``method``, or the directory
                holds one cluster of each method and no marker says which is the real one.
        """
        marker = self.data_dir / METHOD_FILE
        try:
            recorded: str | None = marker.read_text().strip()
        except FileNotFoundError:
            made = [m for m in METHODS if (self.data_dir / _PGDATA[m] / "PG_VERSION").exists()]
            if len(made) > 1:
                msg = (
                    f"{self.data_dir} holds two PostgreSQL clusters ({', '.join(_PGDATA.values())}); "
                    f"write the method of the one to use (system or pgserver) into {marker}"
                )
                raise EmbeddedPostgresError(msg) from None
            recorded = made[0] if made else None
            if recorded is not None:
                self._write_marker(recorded)
        except OSError as exc:
            msg = f"cannot read {marker}: {exc}"
            raise EmbeddedPostgresError(msg) from exc
        if recorded is None:
            return None
        if recorded not in METHODS:
            msg = f"{marker} says {recorded!r}; expected one of {', '.join(METHODS)}"
            raise EmbeddedPostgresError(msg)
        if self.method not in ("auto", recorded):
            msg = f"the cluster in {self.data_dir} was made with {recorded}; it cannot be opened with {self.method}"
            raise EmbeddedPostgresError(msg)
        return recorded

    def _write_marker(self, method: str) -> None:
        marker = self.data_dir / METHOD_FILE
        tmp = marker.with_name(f".{METHOD_FILE}.tmp")
        tmp.write_text(f"{method}\n")
        os.replace(tmp, marker)

    def _start_with(self, method: str) -> str:
        pgdata = self.data_dir / _PGDATA[method]
        self._stop_running_orphan(method, pgdata)
        try:
            dsn = self._start_system(pgdata) if method == "system" else self._start_pgserver(pgdata)
        except (OSError, subprocess.SubprocessError) as exc:
            msg = f"{method} PostgreSQL in {pgdata}: {exc}"
            raise EmbeddedPostgresError(msg) from exc
        self.used_method = method
        info = read_postmaster_pid(pgdata)
        self.postmaster_pid = info.pid if info is not None else None
        return dsn

    def _stop_running_orphan(self, method: str, pgdata: Path) -> None:
        _wait_for_reaping(pgdata)
        info = live_postmaster(pgdata)
        if info is None:
            return
        if not self.stop_orphan:
            msg = f"PostgreSQL (PID {info.pid}) is already running on {pgdata}"
            raise PostgresInUseError(msg, info.pid)
        _LOG.warning("stopping PostgreSQL (PID %s) left running on %s by an earlier run", info.pid, pgdata)
        command, user = self._pg_ctl(method, pgdata)
        result = subprocess.run(
            [*command, "-w", "-t", str(_PG_CTL_TIMEOUT_S), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
            text=True,
            user=user,
        )
        if live_postmaster(pgdata) is not None:
            msg = f"PostgreSQL (PID {info.pid}) left running on {pgdata} did not stop: {result.stderr.strip()}"
            raise PostgresInUseError(msg, info.pid)

    def _pg_ctl(self, method: str, pgdata: Path) -> tuple[list[str], str | None]:
        """``pg_ctl -D pgdata`` of a method, and the OS user to run it as (None = us)."""
        if method == "system":
            bin_dir = _system_bin_dir()
            if bin_dir is None:
                msg = "no system PostgreSQL binaries (pg_ctl) found"
                raise EmbeddedPostgresError(msg)
            return [*self._run_as(), str(bin_dir / "pg_ctl"), "-D", str(pgdata)], None
        from pgserver._commands import POSTGRES_BIN_PATH  # the [embedded] extra

        return [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata)], "pgserver" if _is_root() else None

    def _run_as(self) -> list[str]:
        # initdb and postgres refuse to run as root: switch to the postgres OS user.
        if _is_root():
            if shutil.which("runuser") is None:
                msg = "running as root needs runuser to start PostgreSQL as the postgres user"
                raise EmbeddedPostgresError(msg)
            return ["runuser", "-u", "postgres", "--"]
        return []

    def _server_options(self) -> str:
        value = "on" if self.durable else "off"
        settings = " ".join(f"-c {name}={value}" for name in _UNSAFE_SETTINGS)
        return f"{settings} -c max_connections=200"

    def _start_system(self, pgdata: Path) -> str:
        bin_dir = _system_bin_dir()
        if bin_dir is None:
            msg = "no system PostgreSQL binaries (pg_ctl) found"
            raise EmbeddedPostgresError(msg)
        prefix = self._run_as()
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
            initdb = [str(bin_dir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            if not self.durable:
                initdb.append("--no-sync")
            result = subprocess.run([*prefix, *initdb], check=False, capture_output=True, text=True)
            if result.returncode != 0:
                msg = f"initdb failed: {result.stderr.strip()[-2000:]}"
                raise EmbeddedPostgresError(msg)
        self._write_marker("system")
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdata} {self._server_options()}"
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-t", str(_PG_CTL_TIMEOUT_S)]
        pg_ctl += ["-l", str(pgdata / "server.log")]
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
        self._stop_user = None
        self._dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _LOG.info("embedded PostgreSQL (system binaries) on 127.0.0.1:%s, data in %s", port, pgdata)
        return self._dsn

    def _start_pgserver(self, pgdata: Path) -> str:
        try:
            import pgserver  # the [embedded] extra
        except ImportError as exc:
            msg = "pgserver is not installed (pip install 'sirius[embedded]')"
            raise EmbeddedPostgresError(msg) from exc
        # pgserver logs every command it runs (initdb's whole output) at INFO: keep warnings.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        pgdata.mkdir(parents=True, exist_ok=True)
        try:
            server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
        except Exception as exc:  # pgserver raises assorted errors; all mean "cannot"
            msg = f"pgserver could not start a server in {pgdata}: {exc!r}"
            raise EmbeddedPostgresError(msg) from exc
        self._pgserver = server
        self._stop_cmd, self._stop_user = self._pg_ctl("pgserver", pgdata)
        self._stop_cmd += ["-w", "-m", "fast", "stop"]
        self._write_marker("pgserver")
        self._dsn = str(server.get_uri())
        self._apply_pgserver_settings(pgdata, self._dsn)
        _LOG.info("embedded PostgreSQL (pgserver), data in %s", pgdata)
        return self._dsn

    def _apply_pgserver_settings(self, pgdata: Path, dsn: str) -> None:
        """Set durability through ``ALTER SYSTEM`` and a reload (pgserver starts the server itself)."""
        try:
            auto_conf = (pgdata / "postgresql.auto.conf").read_text(errors="replace")
        except OSError:
            auto_conf = ""
        if self.durable and not any(name in auto_conf for name in _UNSAFE_SETTINGS):
            return  # nothing was ever changed: the defaults are the durable settings
        from pgserver._commands import POSTGRES_BIN_PATH

        psql = [str(POSTGRES_BIN_PATH / "psql"), dsn, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]
        commands: list[str] = []
        for name in _UNSAFE_SETTINGS:
            commands += ["-c", f"ALTER SYSTEM RESET {name}" if self.durable else f"ALTER SYSTEM SET {name} = off"]
        subprocess.run([*psql, *commands, "-c", "SELECT pg_reload_conf()"], check=True, capture_output=True)
        # The reload is asynchronous: wait (bounded) until new sessions see the setting.
        want = "on" if self.durable else "off"
        deadline = time.monotonic() + 10
        while True:
            shown = subprocess.run([*psql, "-c", "SHOW fsync"], check=True, capture_output=True, text=True)
            if shown.stdout.strip() == want:
                return
            if time.monotonic() > deadline:
                msg = f"pgserver did not apply fsync={want} (it shows {shown.stdout.strip()!r})"
                raise EmbeddedPostgresError(msg)
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server cleanly (fast shutdown: committed data is safe)."""
        if self._stop_cmd is not None:
            result = subprocess.run(self._stop_cmd, check=False, capture_output=True, text=True, user=self._stop_user)
            if result.returncode != 0:
                _LOG.warning("stopping the embedded PostgreSQL failed: %s", result.stderr.strip())
            self._stop_cmd = None
        if self._pgserver is not None:
            # Stopped above: pgserver only forgets this process's handle (no second stop attempt).
            self._pgserver.cleanup_mode = None  # type: ignore[attr-defined]
            self._pgserver.cleanup()  # type: ignore[attr-defined]
            self._pgserver = None
        self._dsn = None
        self.postmaster_pid = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
