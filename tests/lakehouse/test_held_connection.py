"""LingeringConnection: one pool connection held across back-to-back batches, given back when idle.

Real PostgreSQL; the connection's identity is read back from the rows (``pg_backend_pid()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from sirius.lakehouse._held_connection import LingeringConnection
from sirius.lakehouse._pool import create_pool

_INSERT = "INSERT INTO seen (n, pid) SELECT $1::int, pg_backend_pid()"


def _run(dsn: str, scenario: Callable[[asyncpg.Pool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        pool = await create_pool(dsn, min_size=2, max_size=2)
        try:
            await pool.execute("CREATE TABLE IF NOT EXISTS seen (n int PRIMARY KEY, pid int)")
            return await scenario(pool)
        finally:
            # close() waits for every connection: it returns only once the held one is given back.
            await asyncio.wait_for(pool.close(), 30)

    return asyncio.run(main())


def test_back_to_back_batches_share_one_held_connection(pg_dsn: str) -> None:
    async def scenario(pool: asyncpg.Pool) -> tuple[bool, int, int, int]:
        rows = LingeringConnection(pool, linger=60)  # longer than the test: still held at the end
        for batch in range(5):
            await rows.executemany(_INSERT, [(batch * 10 + i,) for i in range(3)])
        pids = await pool.fetchval("SELECT count(DISTINCT pid) FROM seen")
        count = await pool.fetchval("SELECT count(*) FROM seen")
        state = rows.held, pool.get_idle_size()
        await rows.release()
        return (*state, pids, count)

    held, idle, pids, count = _run(pg_dsn, scenario)
    assert held
    assert idle == 1  # the other connection is the held one
    assert (pids, count) == (1, 15)


def test_idle_connection_is_given_back_without_a_reset(pg_dsn: str) -> None:
    queries: list[str] = []

    async def scenario(pool: asyncpg.Pool) -> LingeringConnection:
        rows = LingeringConnection(pool, linger=0.01)
        await rows.executemany(_INSERT, [(1,)])
        rows._conn.add_query_logger(lambda record: queries.append(record.query))
        await rows.executemany(_INSERT, [(2,)])
        return rows  # _run's pool.close() returns only once the timer has given the connection back

    rows = _run(pg_dsn, scenario)
    assert not rows.held
    assert queries == [_INSERT]
    assert not any("pg_advisory_unlock_all" in query for query in queries)


def test_failed_batch_gives_the_connection_back_and_the_next_one_works(pg_dsn: str) -> None:
    async def scenario(pool: asyncpg.Pool) -> tuple[bool, int]:
        rows = LingeringConnection(pool, linger=60)
        await rows.executemany(_INSERT, [(1,)])
        with pytest.raises(asyncpg.UniqueViolationError):
            await rows.executemany(_INSERT, [(2,), (1,)])  # the whole batch rolls back
        held_after_failure = rows.held
        await rows.executemany(_INSERT, [(2,), (3,)])
        await rows.release()
        return held_after_failure, await pool.fetchval("SELECT count(*) FROM seen")

    held_after_failure, count = _run(pg_dsn, scenario)
    assert not held_after_failure
    assert count == 3


def test_concurrent_batches_use_a_second_connection(pg_dsn: str) -> None:
    async def scenario(pool: asyncpg.Pool) -> tuple[int, int]:
        rows = LingeringConnection(pool, linger=60)
        await asyncio.gather(*(rows.executemany(_INSERT, [(n,)]) for n in range(6)))
        await rows.release()
        return await pool.fetchval("SELECT count(*) FROM seen"), await pool.fetchval(
            "SELECT count(DISTINCT pid) FROM seen"
        )

    count, pids = _run(pg_dsn, scenario)
    assert count == 6
    assert pids == 2
