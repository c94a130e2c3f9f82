"""Who holds a PostgreSQL data directory: ``postmaster.pid`` and whether its process lives.

PostgreSQL writes ``postmaster.pid`` into PGDATA while a server runs on it (PID, data directory,
start time, port, socket directory, listen address, shared memory key, status) and removes it
on a clean shutdown. A file that survives a crash names a PID that is gone, or (after a reboot)
one reused by an unrelated process; only a live process named ``postgres`` counts as the
postmaster. A zombie (exited, not yet reaped by its parent) does not count either: a postmaster
orphaned by ``kill -9`` of its owner is reparented to PID 1, which in a container may never reap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PID_FILE = "postmaster.pid"


@dataclass(frozen=True, slots=True)
class PostmasterInfo:
    """The parts of ``postmaster.pid`` Sirius uses.

    Attributes:
        pid: the postmaster's process id.
        port: its TCP port (or the number of its Unix socket), None when not written yet.
        socket_dir: the directory of its Unix socket, None when it has none.
        status: ``starting``, ``ready``, ``stopping``… (empty while starting up).
    """

    pid: int
    port: int | None
    socket_dir: str | None
    status: str


def read_postmaster_pid(pgdata: Path) -> PostmasterInfo | None:
    """Parse ``pgdata/postmaster.pid``; None when it is absent or unreadable (being written)."""
    try:
        lines = (pgdata / PID_FILE).read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    try:
        pid = int(lines[0].strip())
    except (IndexError, ValueError):
        return None
    field = [line.strip() for line in lines] + [""] * 8
    port = int(field[3]) if field[3].isdigit() else None
    return PostmasterInfo(pid=pid, port=port, socket_dir=field[4] or None, status=field[7])


def process_is_alive(pid: int) -> bool:
    """True when ``pid`` is a running process (a zombie is not)."""
    return _process_exists(pid) and not process_is_zombie(pid)


def process_is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its parent has not reaped it yet.

    PostgreSQL's own lock-file check (``kill(pid, 0)``) still sees such a process, so a server
    cannot start on the cluster until the zombie is reaped.
    """
    return _process_exists(pid) and _proc_stat_field(pid, 0) in ("Z", "X")


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user (the postgres OS user, when we are not root)
    return True


def live_postmaster(pgdata: Path) -> PostmasterInfo | None:
    """The postmaster running on ``pgdata``, or None when no live server holds it."""
    info = read_postmaster_pid(pgdata)
    if info is None or not process_is_alive(info.pid):
        return None
    name = _process_name(info.pid)
    if name is not None and name not in ("postgres", "postmaster"):
        return None  # a stale file whose PID was reused by an unrelated process
    return info


def _proc_stat_field(pid: int, index: int) -> str | None:
    # /proc/<pid>/stat: "pid (comm) state ppid …"; comm may contain spaces and parentheses.
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[index] if index < len(fields) else None


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None  # no /proc (not Linux): trust the PID
