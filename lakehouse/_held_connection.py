"""One pool connection kept between back-to-back statements, for the OTLP block-row batches.

Under load the OTLP writer inserts a batch of block rows every few hundred microseconds. Taking
a connection from the asyncpg pool and giving it back each time costs the event loop about as
much as the INSERT itself (the pool's bookkeeping, a task shielding the release from
cancellation, and — without ``release_unchanged`` — a reset round trip). ``LingeringConnection``
keeps the connection after a statement and gives it back once ``linger`` seconds pass without
another one, so a steady stream of batches takes it from the pool once, and an idle service (or
``pool.close()``, which waits for every connection) gets it back within ``linger``.

A statement that fails gives its connection back at once with asyncpg's full reset (the pool
terminates a broken one); a statement issued while the held one is busy, or while the pool is
closing, takes a connection from the pool as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from ._pool import release_unchanged

__all__ = ["DEFAULT_LINGER_SECONDS", "LingeringConnection"]

DEFAULT_LINGER_SECONDS = 0.05
"""How long an unused connection is kept: long enough to span the gaps of a busy receiver."""


class LingeringConnection:
    """``executemany`` on a pool connection held while statements keep coming.

    Only for statements that leave no session state (a plain INSERT in its implicit
    transaction): the connection goes back to the pool without asyncpg's reset query.

    Args:
        pool: the service's pool.
        linger: seconds without a statement after which the connection is given back.
    """

    def __init__(self, pool: asyncpg.Pool, linger: float = DEFAULT_LINGER_SECONDS) -> None:
        self._pool = pool
        self._linger = linger
        self._conn: Any = None  # asyncpg's pool proxy of the held connection
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> bool:
        """Whether a connection is held right now (for tests)."""
        return self._conn is not None

    async def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run ``query`` once per row in one round trip and one transaction (``Connection.executemany``).

        Raises:
            asyncpg errors and ``OSError`` as ``Connection.executemany`` does (callers map them).
        """
        if self._busy or self._pool.is_closing():
            conn = await self._pool.acquire()
            try:
                await conn.executemany(query, rows)
            except BaseException:
                await self._pool.release(conn)
                raise
            with release_unchanged():
                await self._pool.release(conn)
            return
        self._busy = True
        try:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._conn is None:
                self._conn = await self._pool.acquire()
            conn = self._conn
            try:
                await conn.executemany(query, rows)
            except BaseException:
                # Unknown state (failed, cancelled mid-statement, connection lost): the pool's
                # full release rolls back, resets or terminates it.
                self._conn = None
                await self._pool.release(conn)
                raise
        finally:
            self._busy = False
        self._timer = asyncio.get_running_loop().call_later(self._linger, self._give_back)

    async def release(self) -> None:
        """Give the held connection back now (e.g. before closing the pool without waiting ``linger``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or self._conn is None:
            return
        conn, self._conn = self._conn, None
        await self._release(conn)

    def _give_back(self) -> None:
        self._timer = None
        if self._busy or self._conn is None:
            return
        conn, self._conn = self._conn, None
        task = asyncio.get_running_loop().create_task(self._release(conn))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, conn: Any) -> None:
        # A failed reset terminates the connection inside the pool; nothing is waiting on it.
        with contextlib.suppress(Exception), release_unchanged():
            await self._pool.release(conn)
