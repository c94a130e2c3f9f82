"""Block rows of concurrent exports are inserted in batches, each export answered after its own row."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sirius.collector._otlp_writer import BlockRowBatcher
from sirius.lakehouse import DataLake, LakehouseError, create_pool, migrate
from sirius.tracing import Block, BlockPayload

T0 = 1_750_000_000_000_000_000


def block(n: int) -> Block:
    return Block(
        block_id=uuid.UUID(int=n + 1),
        stream_id=uuid.UUID(int=1000),
        process_id=uuid.UUID(int=2000),
        begin_time_ns=T0 + n,
        begin_ticks=T0 + n,
        end_time_ns=T0 + n + 5,
        end_ticks=T0 + n + 5,
        payload=BlockPayload(dependencies=b"", objects=b"x"),
        object_offset=0,
        nb_objects=n + 1,
    )


def test_concurrent_inserts_share_round_trips_and_keep_each_row_once(pg_dsn: str) -> None:
    async def scenario() -> tuple[list, int]:
        pool = await create_pool(pg_dsn)
        try:
            await migrate(pool)
            lake = DataLake(pool)
            batches: list[int] = []
            insert_blocks = lake.insert_blocks

            async def counting(rows):  # the real insert, its batch sizes recorded
                batches.append(len(rows))
                await insert_blocks(rows)

            lake.insert_blocks = counting  # type: ignore[method-assign]
            rows = BlockRowBatcher(lake)
            # 40 exports at once, every block twice (a retried request racing the first one)
            await asyncio.gather(*(rows.insert(block(n % 20), 100 + n % 20) for n in range(40)))
            stored = await pool.fetch("SELECT block_id, nb_objects, payload_size FROM blocks ORDER BY block_id")
            return [tuple(r) for r in stored], len(batches)
        finally:
            await pool.close()

    stored, round_trips = asyncio.run(scenario())
    assert stored == [(uuid.UUID(int=n + 1), n + 1, 100 + n) for n in range(20)]
    assert round_trips < 40


def test_a_failed_batch_fails_every_export_in_it_and_the_next_batch_works(pg_dsn: str) -> None:
    async def scenario() -> int:
        pool = await create_pool(pg_dsn)
        try:
            await migrate(pool)
            await pool.execute("ALTER TABLE blocks ADD CONSTRAINT small CHECK (nb_objects < 10)")
            rows = BlockRowBatcher(DataLake(pool))
            results = await asyncio.gather(*(rows.insert(block(n), 1) for n in (1, 2, 11)), return_exceptions=True)
            assert all(isinstance(r, LakehouseError) for r in results), results  # one batch, one transaction
            await rows.insert(block(3), 1)
            return await pool.fetchval("SELECT count(*) FROM blocks")
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == 1


@pytest.mark.parametrize("count", [0, 1])
def test_insert_blocks_of_few_rows(pg_dsn: str, count: int) -> None:
    async def scenario() -> int:
        pool = await create_pool(pg_dsn)
        try:
            await migrate(pool)
            await DataLake(pool).insert_blocks([(block(n), 1) for n in range(count)])
            return await pool.fetchval("SELECT count(*) FROM blocks")
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == count
