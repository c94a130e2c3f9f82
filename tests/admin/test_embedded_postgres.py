"""Both ways of running the embedded PostgreSQL start a usable, migratable server and stop it.

Also: durable settings unless asked otherwise, one method per directory (recorded, never
swapped), a running server refused unless declared an orphan, which is then stopped cleanly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from sirius.admin import EmbeddedPostgres, EmbeddedPostgresError, _embedded_postgres
from sirius.admin._exceptions import PostgresInUseError
from sirius.admin._postmaster import process_is_alive
from sirius.lakehouse import migrate, schema_versions


@pytest.fixture
def open_dir() -> Path:
    # Under /tmp with mode 755 so the postgres OS user can reach it when tests run as root.
    path = Path(tempfile.mkdtemp(prefix="sirius-embedded-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _settings(dsn: str) -> tuple[object, ...]:
    conn = await asyncpg.connect(dsn)
    try:
        names = ("fsync", "synchronous_commit", "full_page_writes")
        return tuple([await conn.fetchval(f"SHOW {name}") for name in names])
    finally:
        await conn.close()


async def _use(dsn: str) -> tuple[int, int]:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kept(x int)")
        await conn.execute("INSERT INTO kept VALUES (1)")
        count = await conn.fetchval("SELECT count(*) FROM kept")
    finally:
        await conn.close()
    versions = await schema_versions(dsn)
    return count, versions


@pytest.mark.parametrize("method", ["system", "pgserver"])
def test_start_migrate_stop_restart(open_dir: Path, method: str) -> None:
    if method == "system" and shutil.which("pg_ctl") is None and not list(Path("/usr/lib/postgresql").glob("*/bin")):
        pytest.fail("this machine is expected to have Debian's PostgreSQL binaries")
    server = EmbeddedPostgres(open_dir / "pg", method=method, durable=False)
    with server:
        count, versions = asyncio.run(_use(server.dsn))
        assert asyncio.run(_settings(server.dsn)) == ("off", "off", "off"), "durable=False turns durability off"
    assert count == 1
    assert tuple(versions) == (7, 10)
    assert (open_dir / "pg" / "method").read_text() == f"{method}\n", "the method is recorded"
    with EmbeddedPostgres(open_dir / "pg") as again:  # data survives a clean stop; "auto" reuses the method
        assert again.used_method == method
        count, _ = asyncio.run(_use(again.dsn))
        assert asyncio.run(_settings(again.dsn)) == ("on", "on", "on"), "durable by default"
    assert count == 2


def test_unknown_method_is_refused(open_dir: Path) -> None:
    with pytest.raises(EmbeddedPostgresError):
        EmbeddedPostgres(open_dir, method="docker")


def test_a_running_server_is_refused_unless_declared_an_orphan(open_dir: Path) -> None:
    first = EmbeddedPostgres(open_dir / "pg", durable=False)
    first.start()
    try:
        asyncio.run(_use(first.dsn))
        pid = first.postmaster_pid
        assert pid is not None
        with pytest.raises(PostgresInUseError, match=f"PID {pid}") as refused:
            EmbeddedPostgres(open_dir / "pg").start()
        assert refused.value.pid == pid
        assert sorted(p.name for p in (open_dir / "pg").iterdir()) == ["method", "system-pg"], "no second cluster"
        with EmbeddedPostgres(open_dir / "pg", durable=False, stop_orphan=True) as taker:
            assert not process_is_alive(pid), "the orphan got a clean shutdown"
            assert taker.postmaster_pid != pid
            count, _ = asyncio.run(_use(taker.dsn))
        assert count == 2, "the orphan's committed row is kept"
    finally:
        first.stop()  # its server is gone already: only a warning


def test_the_recorded_method_is_never_swapped(open_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg = open_dir / "pg"
    (pg / "system-pg").mkdir(parents=True)
    (pg / "system-pg" / "PG_VERSION").write_text("15\n")  # a cluster made before the marker existed
    assert EmbeddedPostgres(pg).recorded_method() == "system"
    assert (pg / "method").read_text() == "system\n"
    with pytest.raises(EmbeddedPostgresError, match="made with system"):
        EmbeddedPostgres(pg, method="pgserver").start()
    monkeypatch.setattr(_embedded_postgres, "_system_bin_dir", lambda: None)
    with pytest.raises(EmbeddedPostgresError, match="no system PostgreSQL binaries"):
        EmbeddedPostgres(pg).start()  # the failure is reported: no fallback to pgserver
    assert not (pg / "pgserver").exists()


def test_two_clusters_without_a_marker_are_refused(open_dir: Path) -> None:
    for name in ("system-pg", "pgserver"):
        (open_dir / name).mkdir()
        (open_dir / name / "PG_VERSION").write_text("15\n")
    with pytest.raises(EmbeddedPostgresError, match="two PostgreSQL clusters"):
        EmbeddedPostgres(open_dir).start()
    (open_dir / "method").write_text("pgserver\n")
    assert EmbeddedPostgres(open_dir).recorded_method() == "pgserver"


def test_a_killed_server_restarts_with_every_committed_row(open_dir: Path) -> None:
    first = EmbeddedPostgres(open_dir / "pg")
    first.start()
    try:
        asyncio.run(_use(first.dsn))
        pid = first.postmaster_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a crash: no shutdown checkpoint, postmaster.pid left behind
        deadline = time.monotonic() + 30
        while process_is_alive(pid):
            assert time.monotonic() < deadline, "the killed postmaster is still alive"
            time.sleep(0.05)
        with EmbeddedPostgres(open_dir / "pg") as again:  # a dead (even unreaped) postmaster is no obstacle
            count, _ = asyncio.run(_use(again.dsn))
        assert count == 2, "crash recovery replays the committed row"
    finally:
        first.stop()
