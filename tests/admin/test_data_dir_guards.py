"""The guards ``sirius up`` relies on, without a database: the data-dir lock, postmaster.pid, ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sirius.admin._data_dir_lock import LOCK_FILE, DataDirLock
from sirius.admin._exceptions import AdminError, DataDirInUseError, PortInUseError
from sirius.admin._ports import PortClaim, check_ports_free, port_in_use
from sirius.admin._postmaster import live_postmaster, process_is_alive, process_is_zombie, read_postmaster_pid

POSTMASTER_PID = "{pid}\n{pgdata}\n1796585102\n39727\n{pgdata}\n127.0.0.1\n  2147572         9\nready   \n"


def test_the_lock_admits_one_holder_and_names_it(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path / "data")
    first.acquire()
    assert (tmp_path / "data" / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataDirInUseError, match=f"PID {os.getpid()}") as refused:
        DataDirLock(tmp_path / "data").acquire()
    assert refused.value.pid == os.getpid()
    first.release()
    again = DataDirLock(tmp_path / "data")
    again.acquire()  # free once released
    assert again.held
    again.release()


def test_the_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sirius.admin._data_dir_lock import DataDirLock; "
            "DataDirLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(DataDirInUseError, match=f"PID {holder.pid}"):
            DataDirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    lock = DataDirLock(tmp_path)
    lock.acquire()  # the kernel released the dead holder's lock
    lock.release()


def test_postmaster_pid_parsing(tmp_path: Path) -> None:
    assert read_postmaster_pid(tmp_path) is None
    (tmp_path / "postmaster.pid").write_text(POSTMASTER_PID.format(pid=1234, pgdata=tmp_path))
    info = read_postmaster_pid(tmp_path)
    assert info is not None
    assert (info.pid, info.port, info.socket_dir, info.status) == (1234, 39727, str(tmp_path), "ready")
    (tmp_path / "postmaster.pid").write_text("")  # being written
    assert read_postmaster_pid(tmp_path) is None


def test_a_stale_postmaster_pid_is_not_a_live_server(tmp_path: Path) -> None:
    # Our own PID is alive but is not a postgres process (a PID reused after a crash).
    (tmp_path / "postmaster.pid").write_text(POSTMASTER_PID.format(pid=os.getpid(), pgdata=tmp_path))
    assert process_is_alive(os.getpid())
    assert live_postmaster(tmp_path) is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    (tmp_path / "postmaster.pid").write_text(POSTMASTER_PID.format(pid=child.pid, pgdata=tmp_path))
    assert not process_is_alive(child.pid)
    assert not process_is_zombie(child.pid)
    assert live_postmaster(tmp_path) is None


def test_a_zombie_is_not_alive() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert not process_is_alive(pid)
        assert process_is_zombie(pid)  # PostgreSQL would still take it for a live postmaster
    finally:
        os.waitpid(pid, 0)


def test_a_listening_port_is_reported_with_its_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        assert port_in_use("0.0.0.0", port)
        claims = [PortClaim("ingestion", 0, "--ingestion-port"), PortClaim("gateway", port, "--gateway-port")]
        with pytest.raises(PortInUseError) as refused:
            check_ports_free("127.0.0.1", claims)
    assert str(refused.value) == f"port {port} (gateway) is in use; pick another with --gateway-port"
    assert not port_in_use("127.0.0.1", port)  # closed
    assert not port_in_use("127.0.0.1", 0)


def test_an_unusable_directory_is_an_admin_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(AdminError, match="cannot use data directory"):
        DataDirLock(tmp_path / "file" / "data").acquire()
