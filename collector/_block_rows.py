"""Block rows of concurrent OTLP exports inserted together: one PostgreSQL round trip per batch.

A block row costs one statement round trip, and on the OTLP receivers that round trip (the
socket writes and reads, the wake-ups) is the largest server-side cost of a 512-item request
once the request is no longer parsed in Python. Exports that reach their row while an insert is
in flight queue theirs; one task then inserts the whole queue with ``DataLake.insert_blocks``
(one transaction) and wakes each export. Under a single client the batch is one row, as before;
under N concurrent clients the row cost is shared by up to N requests.

Each export still waits for its own row to be committed before it answers, and a failed batch
fails every export in it (each client retries; rows and objects are idempotent).
"""

from __future__ import annotations

import asyncio

from ..lakehouse import DataLake
from ..tracing import Block

__all__ = ["BlockRowBatcher"]


class BlockRowBatcher:
    """Coalesces ``insert_block`` calls made while a batch is being inserted.

    Args:
        lake: where the rows go.
        max_batch: most rows in one statement batch.
    """

    def __init__(self, lake: DataLake, max_batch: int = 256) -> None:
        self._lake = lake
        self._max_batch = max_batch
        self._pending: list[tuple[Block, int, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def insert(self, block: Block, payload_size: int) -> None:
        """Insert the row of ``block`` (its object already stored); return once it is committed.

        Raises:
            LakehouseError: PostgreSQL failed (the whole batch is rolled back).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((block, payload_size, done))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    await self._lake.insert_blocks([(block, size) for block, size, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every waiting export
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._drainer = None
            for _, _, done in self._pending:  # only left when the drainer itself was cancelled
                if not done.done():
                    done.cancel()
            self._pending = []
