"""``sirius up`` restarts that never lie: signals, a directory in use, orphans, ports, durability.

Real ``sirius up`` subprocesses on the embedded default (system binaries as the postgres user
when run as root, as in CI), real PostgreSQL queried over its own socket. Waiting is polling
with a deadline; each test reuses one data directory for its starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import asyncpg
import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner
from waiting import wait_until as _wait_until_shared  # tests/ is on sys.path

from sirius.admin._postmaster import PostmasterInfo, process_is_alive, read_postmaster_pid
from sirius.tracing._process import current_process_info
from sirius.tracing._sink import SinkConfig, TelemetrySink
from sirius.tracing.transit._layouts import Level
from sirius.tracing.transit._writer import LogMetadata, TransitWriter

DEADLINE_S = 60.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with reachable_tmp_dir("sirius-life-") as path:
        yield path / "data"
        _stop_leftover_postmaster(path / "data")


def _stop_leftover_postmaster(data_dir: Path) -> None:
    # A failing test must not leave a server behind: SIGQUIT is PostgreSQL's immediate stop.
    info = _postmaster(data_dir)
    if info is not None and process_is_alive(info.pid):
        os.kill(info.pid, signal.SIGQUIT)
        _wait_until(lambda: not process_is_alive(info.pid), "the leftover postmaster to stop")


def _wait_until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    _wait_until_shared(what, condition, deadline_s)


def _postmaster(data_dir: Path) -> PostmasterInfo | None:
    for name in ("system-pg", "pgserver"):
        info = read_postmaster_pid(data_dir / "postgres" / name)
        if info is not None:
            return info
    return None


def _pg_dsn(info: PostmasterInfo) -> str:
    # Both methods put the socket into a directory named in postmaster.pid.
    return f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"


async def _fetch(dsn: str, *queries: str) -> list[object]:
    conn = await asyncpg.connect(dsn)
    try:
        return [await conn.fetchval(query) for query in queries]
    finally:
        await conn.close()


def _start(data_dir: Path, *flags: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [*SIRIUS, "up", "--data-dir", str(data_dir), *ZERO_PORTS, *flags],
        env=embedded_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, read_up_banner(proc).urls


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=DEADLINE_S)
    return out, err


def _ingest(url: str, blocks: int) -> None:
    """Send ``blocks`` log blocks through the telemetry sink; every one must be acknowledged."""
    process = current_process_info({"sirius.test": "lifecycle"}, exe="sirius-lifecycle-test")
    log = TransitWriter(process, "log")
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    for i in range(blocks):
        log.log_string(LogMetadata("{}", target="lifecycle", level=Level.INFO), f"event {i}", ticks=time.monotonic_ns())
        sink.send_block(log.seal())
    assert sink.flush(timeout=DEADLINE_S)
    assert sink.stats().sent_blocks == blocks
    sink.shutdown(timeout=5)


COUNTS = ("SELECT count(*) FROM processes", "SELECT count(*) FROM streams", "SELECT count(*) FROM blocks")


def test_version() -> None:
    result = subprocess.run([*SIRIUS, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sirius {version('sirius')}"


@pytest.mark.parametrize(("service", "flag"), [("ingestion", "--ingestion-port"), ("flightsql", "--flight-port")])
def test_a_taken_port_is_one_line_and_exit_code_2(data_dir: Path, service: str, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SIRIUS, "up", "--data-dir", str(data_dir), *ZERO_PORTS, flag, str(port)],
            env=embedded_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == f"sirius up: port {port} ({service}) is in use; pick another with {flag}"
    assert not data_dir.exists(), "the port is checked before the data directory is touched"


def test_sighup_stops_everything_and_a_second_up_is_refused(data_dir: Path) -> None:
    first, _ = _start(data_dir, "--fast-unsafe")
    try:
        info = _postmaster(data_dir)
        assert info is not None
        assert process_is_alive(info.pid)
        fsync, sync_commit = asyncio.run(_fetch(_pg_dsn(info), "SHOW fsync", "SHOW synchronous_commit"))
        assert (fsync, sync_commit) == ("off", "off"), "--fast-unsafe turns durability off"

        second = subprocess.run(
            [*SIRIUS, "up", "--data-dir", str(data_dir), *ZERO_PORTS],
            env=embedded_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by another sirius process (PID {first.pid})" in second.stderr
        assert f"its PostgreSQL is PID {info.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert sorted(p.name for p in (data_dir / "postgres").iterdir()) == ["method", "system-pg"], "no new cluster"
        assert process_is_alive(info.pid), "the running server is left alone"
    finally:
        out, err = _stop(first, signal.SIGHUP)
    assert first.returncode == 0, err
    assert "sirius stopped" in out
    _wait_until(lambda: not process_is_alive(info.pid), f"the postmaster (PID {info.pid}) to stop")
    assert _postmaster(data_dir) is None, "a clean shutdown removes postmaster.pid"


def test_restart_after_kill_9_keeps_every_row(data_dir: Path) -> None:
    first, urls = _start(data_dir)
    try:
        orphan = _postmaster(data_dir)
        assert orphan is not None
        settings = asyncio.run(_fetch(_pg_dsn(orphan), "SHOW fsync", "SHOW synchronous_commit"))
        assert settings == ["on", "on"], "durable by default"
        _ingest(urls["ingestion"], blocks=20)
        before = asyncio.run(_fetch(_pg_dsn(orphan), *COUNTS))
        assert before == [1, 1, 20]
    finally:
        first.kill()
        first.communicate(timeout=DEADLINE_S)
    assert process_is_alive(orphan.pid), "kill -9 of sirius up orphans its postmaster"
    # What a crash in the middle of a write leaves in the store (one per in-flight write).
    process_dir = next((data_dir / "objects" / "blobs").iterdir())
    stream_dir = next(process_dir.iterdir())
    stale = [stream_dir / ".sirius-tmp-crashed1", data_dir / "objects" / "blobs" / ".sirius-tmp-crashed2"]
    for path in stale:
        path.write_bytes(b"half a block")
        os.utime(path, (time.time() - 5, time.time() - 5))

    second, _ = _start(data_dir)
    try:
        _wait_until(lambda: not process_is_alive(orphan.pid), "the orphan to be stopped")
        info = _postmaster(data_dir)
        assert info is not None
        assert info.pid != orphan.pid
        after = asyncio.run(_fetch(_pg_dsn(info), *COUNTS))
        assert after == before, "every acknowledged row is still there"
        assert asyncio.run(_fetch(_pg_dsn(info), "SHOW fsync")) == ["on"]
        assert not any(path.exists() for path in stale), "stale temporary files are removed at start"
        assert len(list(stream_dir.iterdir())) == 20, "the blocks themselves are kept"
    finally:
        out, err = _stop(second)
    assert second.returncode == 0, err
    assert "sirius stopped" in out
    _wait_until(lambda: not process_is_alive(info.pid), "the postmaster to stop")


def test_a_stand_alone_ingest_removes_only_clearly_orphaned_temp_files(pg_dsn: str, tmp_path: Path) -> None:
    # Replicas may share a local store: only files older than any write could take are removed.
    stream_dir = tmp_path / "blobs" / "p1" / "s1"
    stream_dir.mkdir(parents=True)
    old, recent = stream_dir / ".sirius-tmp-old", stream_dir / ".sirius-tmp-recent"
    for path, age_s in ((old, 3600), (recent, 5)):
        path.write_bytes(b"half a block")
        os.utime(path, (time.time() - age_s, time.time() - age_s))
    env = {
        **embedded_env(),
        "MICROMEGAS_SQL_CONNECTION_STRING": pg_dsn,
        "MICROMEGAS_OBJECT_STORE_URI": tmp_path.as_uri(),
    }
    proc = subprocess.Popen(
        [*SIRIUS, "ingest", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ingestion")  # listening: the cleanup is done
        assert not old.exists()
        assert recent.exists()
    finally:
        _, err = _stop(proc)
    assert proc.returncode == 0, err
