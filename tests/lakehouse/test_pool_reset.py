"""The pool's reset on release: asyncpg's reset query by default, skipped for untouched sessions.

``DataLake.insert_blocks`` releases its connection under ``release_unchanged`` (its INSERT leaves
no session state), saving a PostgreSQL round trip per batch; every other release must still
reset the session (``SET``, ``LISTEN``, session advisory locks do not leak to the next user).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from sirius.lakehouse._datalake import DataLake
from sirius.lakehouse._migrations import migrate
from sirius.lakehouse._pool import create_pool, release_unchanged
from sirius.tracing.transit._wire_format import Block, BlockPayload

_RESET_MARK = "pg_advisory_unlock_all"


def _with_one_connection(dsn: str, scenario: Callable[[asyncpg.Pool, list[str]], Awaitable[Any]]) -> Any:
    """Run ``scenario`` on a one-connection pool whose every query is logged in the list."""

    async def main() -> Any:
        setup = await create_pool(dsn, max_size=2)
        try:
            await migrate(setup)
        finally:
            await setup.close()
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            queries: list[str] = []
            async with pool.acquire() as conn:
                conn.add_query_logger(lambda record: queries.append(record.query))
            queries.clear()
            return await scenario(pool, queries)
        finally:
            await pool.close()

    return asyncio.run(main())


def _block(index: int) -> Block:
    return Block(
        block_id=uuid.uuid4(),
        stream_id=uuid.uuid4(),
        process_id=uuid.uuid4(),
        begin_time_ns=1_700_000_000_000_000_000 + index,
        begin_ticks=index,
        end_time_ns=1_700_000_000_000_000_100 + index,
        end_ticks=index + 100,
        payload=BlockPayload(b"", b"objs"),
        object_offset=0,
        nb_objects=1,
    )


def test_ordinary_release_still_resets_the_session(pg_dsn: str) -> None:
    async def scenario(pool: asyncpg.Pool, queries: list[str]) -> tuple[str, bool]:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'changed by a user'")
            await conn.execute("SELECT pg_advisory_lock(4242)")
        async with pool.acquire() as conn:  # the same connection (pool of one)
            name = await conn.fetchval("SHOW application_name")
            held = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return name, held == 0 and any(_RESET_MARK in query for query in queries)

    name, reset = _with_one_connection(pg_dsn, scenario)
    assert name == "sirius"  # RESET ALL restored the pool's server setting
    assert reset


def test_insert_blocks_releases_without_the_reset_round_trip(pg_dsn: str) -> None:
    async def scenario(pool: asyncpg.Pool, queries: list[str]) -> tuple[list[str], int]:
        lake = DataLake(pool)
        await lake.insert_blocks([(_block(i), 10 + i) for i in range(3)])
        await lake.insert_blocks([(_block(9), 1)])
        return list(queries), await pool.fetchval("SELECT count(*) FROM blocks")

    queries, rows = _with_one_connection(pg_dsn, scenario)
    assert rows == 4
    assert any(query.startswith("INSERT INTO blocks") for query in queries)
    assert not any(_RESET_MARK in query for query in queries)


def test_release_unchanged_keeps_the_rollback_of_an_open_transaction(pg_dsn: str) -> None:
    async def scenario(pool: asyncpg.Pool, queries: list[str]) -> tuple[bool, int]:
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_open (a int)")
        with release_unchanged():
            await pool.release(conn)
        async with pool.acquire() as again:
            exists = await again.fetchval("SELECT to_regclass('left_open') IS NOT NULL")
        return exists, sum(_RESET_MARK in query for query in queries)

    exists, resets = _with_one_connection(pg_dsn, scenario)
    assert not exists  # rolled back by asyncpg before the (skipped) reset query
    assert resets == 1  # only the ordinary release after it
