"""The daemon's per-pass lease: a standby skips cheaply, and takes over from a daemon killed mid-pass.

Real PostgreSQL, real processes: the daemon that dies runs in its own process
(``stuck_daemon.py``, paused inside its pass by an injected view) and is killed with SIGKILL;
PostgreSQL frees its lease when the session ends, and the surviving daemon's next pass does the
work. The fake clock of the harness only dates the sample blocks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from held_view import HeldLogEntries

from sirius.lakehouse import (
    Action,
    Lakehouse,
    MaintenanceDaemon,
    PassKind,
    SessionFactory,
    create_pool,
    list_partitions,
)
from sirius.lakehouse.views import default_view_sets

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
SCHEDULED = T0 + dt.timedelta(seconds=12.5)  # the second pass over [10 s, 11 s), where the sample lies
STUCK_DAEMON = Path(__file__).with_name("stuck_daemon.py")
EXPECTED = {"log_entries": 5, "measures": 3, "blocks": 3, "processes": 1, "streams": 3, "log_stats": 4}

# Which session of this database holds an advisory lock with this 64-bit key (PostgreSQL splits
# it in two oids). Advisory locks are per database: other tests' daemons hold the same key in theirs.
LEASE_HOLDERS = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def _lease_key(kind: PassKind) -> int:
    from sirius.lakehouse._pass_lease import pass_lease_key

    return pass_lease_key(kind.value)


async def _lease_holders(pool: asyncpg.Pool, kind: PassKind) -> list[str]:
    return [r[0] for r in await pool.fetch(LEASE_HOLDERS, _lease_key(kind))]


async def _counts(lake: Lakehouse) -> dict[str, int]:
    session = await SessionFactory(lake).create()
    result = {}
    for view in EXPECTED:
        table = (await session.sql(f"SELECT count(*) AS n FROM {view}")).to_arrow_table()
        result[view] = table.column("n").to_pylist()[0]
    return result


async def _assert_each_partition_once(lake: Lakehouse) -> None:
    partitions = await list_partitions(lake.pool)
    keys = Counter((p.view_set_name, p.view_instance_id, p.begin_insert_ns, p.end_insert_ns) for p in partitions)
    assert [k for k, n in keys.items() if n > 1] == []
    live = {p.file_path for p in partitions if p.file_path}
    pending = {r[0] for r in await lake.pool.fetch("SELECT file_path FROM temporary_files")}
    assert set(await lake.store.list_keys("views/")) == live | pending


def test_a_standby_daemon_skips_the_pass_and_holds_no_connection_while_another_runs_it(
    local_lake_env: Any, pg_dsn: str
) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        holder_pool = await create_pool(pg_dsn, application_name="daemon-holder")
        standby_pool = await create_pool(pg_dsn, max_size=8, application_name="daemon-standby")
        held_view = HeldLogEntries()
        views = default_view_sets().with_view(held_view)
        holder = MaintenanceDaemon(Lakehouse(holder_pool, h.store, clock=h.clock, views=views))
        running = asyncio.create_task(holder.run_pass(PassKind.SECOND, SCHEDULED))
        try:
            standby_lake = Lakehouse(standby_pool, h.store, clock=h.clock)
            standby = MaintenanceDaemon(standby_lake)
            await asyncio.wait_for(held_view.entered.wait(), 60)  # the holder is inside its pass

            report = await standby.run_pass(PassKind.SECOND, SCHEDULED)
            assert report.skipped
            assert report.results == {}
            assert "skipped, another daemon holds the lease" in report.summary()
            assert standby_lake.stats.partitions_written == 0
            assert await _lease_holders(h.lake.pool, PassKind.SECOND) == ["daemon-holder"]
            # The standby keeps nothing busy: no connection in a transaction or waiting on a lock.
            standby_sessions = await h.lake.pool.fetch(
                "SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = 'daemon-standby'"
            )
            assert standby_sessions
            assert all(r["state"] == "idle" and r["wait_event_type"] != "Lock" for r in standby_sessions)
            # Leases are per pass kind: the minute pass's is free meanwhile.
            assert await _lease_holders(h.lake.pool, PassKind.MINUTE) == []

            held_view.release.set()
            done = await asyncio.wait_for(running, 60)
            assert not done.skipped
            assert not done.failures
            assert await _lease_holders(h.lake.pool, PassKind.SECOND) == []
            again = await standby.run_pass(PassKind.SECOND, SCHEDULED)  # free again: taken, nothing to do
            assert not again.skipped
            assert again.written == []
        finally:
            held_view.release.set()  # a failed assertion must not leave the holder's pass (and its pool) open
            await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 60)
            await holder_pool.close()
            await standby_pool.close()
        assert await _counts(h.lake) == EXPECTED
        await _assert_each_partition_once(h.lake)

    local_lake_env(scenario)


def test_a_daemon_killed_mid_pass_frees_its_lease_and_another_takes_over(
    local_lake_env: Any, pg_dsn: str, tmp_path: Path
) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        uri = (tmp_path / "objects").as_uri()
        assert Path(h.store.root) == tmp_path / "objects"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, str(STUCK_DAEMON), pg_dsn, uri, PassKind.SECOND.value, SCHEDULED.isoformat()]
        doomed = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert doomed.stdout is not None
            line = await asyncio.to_thread(doomed.stdout.readline)
            assert line == "paused\n", (line, doomed.stderr.read() if doomed.poll() is not None else "")
            assert await _lease_holders(h.lake.pool, PassKind.SECOND) == ["stuck-daemon"]
            # Mid-pass: the first update group is committed, log_entries and the rest are not.
            assert {p.view_set_name for p in await list_partitions(h.lake.pool)} >= {"blocks"}
            assert "log_entries" not in {p.view_set_name for p in await list_partitions(h.lake.pool)}

            survivor = MaintenanceDaemon(h.lake)
            standing_by = await survivor.run_pass(PassKind.SECOND, SCHEDULED)
            assert standing_by.skipped  # the doomed daemon holds the lease

            doomed.kill()  # SIGKILL: no cleanup runs in that process
            doomed.wait(30)
            deadline = time.monotonic() + 30
            while await _lease_holders(h.lake.pool, PassKind.SECOND):
                assert time.monotonic() < deadline, "PostgreSQL never freed the killed daemon's lease"
                await asyncio.sleep(0.05)  # poll interval: the loop waits on the lease being free

            report = await survivor.run_pass(PassKind.SECOND, SCHEDULED)  # its next pass takes over
        finally:
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait(30)
        assert not report.skipped
        assert not report.failures
        # What the dead daemon committed is reused, what it left undone is done now.
        assert [r.action for r in report.results["blocks"]] == [Action.UP_TO_DATE]
        assert [r.action for r in report.results["log_entries"]] == [Action.CREATE]
        assert await _counts(h.lake) == EXPECTED
        await _assert_each_partition_once(h.lake)
        minute = await survivor.run_pass(PassKind.MINUTE, T0 + dt.timedelta(seconds=150))
        assert not minute.skipped
        assert not minute.failures
        assert await _counts(h.lake) == EXPECTED
        await _assert_each_partition_once(h.lake)

    local_lake_env(scenario)


def test_partition_writers_racing_without_the_lease_still_write_each_partition_once(
    local_lake_env: Any, pg_dsn: str
) -> None:
    # The lease keeps daemons from racing, but JIT queries and the admin functions still race
    # the daemon (and each other) on partitions: their own advisory locks must suffice.
    from sirius.lakehouse import TimeRange, materialize_partitions

    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        other_pool = await create_pool(pg_dsn, max_size=8)
        try:
            twin = Lakehouse(other_pool, h.store, clock=h.clock)
            second = TimeRange(h.T0_NS + 10 * 1_000_000_000, h.T0_NS + 11 * 1_000_000_000)
            for view in h.lake.views.global_views():
                await asyncio.gather(
                    materialize_partitions(h.lake, view.name, second, 1_000_000_000),
                    materialize_partitions(twin, view.name, second, 1_000_000_000),
                )
            written = h.lake.stats.partitions_written + twin.stats.partitions_written
            assert written == len(h.lake.views.global_views())
        finally:
            await other_pool.close()
        assert await _counts(h.lake) == EXPECTED
        await _assert_each_partition_once(h.lake)

    local_lake_env(scenario)
