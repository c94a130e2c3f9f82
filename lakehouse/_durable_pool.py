"""Local object writes on C threads, completed on the event loop through an eventfd.

``asyncio.to_thread`` of a durable write wakes a Python worker thread, which takes the GIL
before and after the C call, then wakes the loop through its self-pipe. Measured inside the
OTLP writer on two busy cores, those hand-offs cost the loop thread ~150 µs per request more
than an in-memory store, before any ``fsync``. ``DurablePool`` instead hands each write to the C
pool of ``native/durable_pool.c`` (one call), whose threads never touch Python: they write, sync
and link the file (``sirius_durable_create``), a sync thread group-commits the directory
``fsync`` of every link made so far, and one eventfd read on the loop completes every write
finished since the last.

The guarantees are ``write_new_file``'s (``_durable_write.py``): data synced before the name
exists, the name created only if absent, the directory synced by an ``fsync`` that started
after the link, before the write's future completes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from ._durable_native import ffi, lib

__all__ = ["DurablePool", "loop_pool"]

_DRAIN = 64  # completions moved per drain call
_WRITER_THREADS = 8  # each may block in an fsync for milliseconds

# One pool per event loop, shared by every store on it (a pool's jobs carry absolute paths): a
# test suite opening hundreds of stores must not start hundreds of thread sets.
_loop_pools: dict[asyncio.AbstractEventLoop, DurablePool] = {}
_loop_pools_lock = threading.Lock()
# Every pool of this process, for _stop_at_exit (a pool made directly is in no _loop_pools).
_live_pools: weakref.WeakSet[DurablePool] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # The child has none of the parent's pool threads, and another thread of the parent may
    # have held the lock at the fork: the child starts with a fresh lock (its loops' pools are
    # made anew, the parent's are dropped unstopped by loop_pool's pid check).
    global _loop_pools_lock  # noqa: PLW0603 - replaced, never shared with the parent
    _loop_pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


@atexit.register
def _stop_at_exit() -> None:
    """Let every queued write finish before the interpreter frees the buffers it is writing.

    ``asyncio.run`` cancels the tasks awaiting writes and closes the loop, but the C threads go
    on with the queued jobs, reading the data that ``_pending`` keeps alive; interpreter
    finalization then frees ``_pending`` while they read it (use-after-free: a file could be
    linked with bytes that are no longer the object's). Stopping joins the threads first.
    """
    with _loop_pools_lock:
        for pool in list(_live_pools):
            if pool.pid == os.getpid() and pool._pool is not None:
                lib.sirius_durable_pool_stop(pool._pool)


def loop_pool() -> DurablePool:
    """The running loop's pool, created on first use; pools of closed loops are stopped here.

    Raises:
        OSError: the pool's threads or eventfd could not be created.
    """
    loop = asyncio.get_running_loop()
    pool = _loop_pools.get(loop)
    if pool is not None and pool.pid == os.getpid():
        return pool
    with _loop_pools_lock:
        for other in [other for other, stale in _loop_pools.items() if other.is_closed() or stale.pid != os.getpid()]:
            stale = _loop_pools.pop(other)
            if stale.pid == os.getpid():  # a forked child has none of the parent's pool threads
                stale.close()
        pool = _loop_pools[loop] = DurablePool(loop, _WRITER_THREADS)
    return pool


class DurablePool:
    """The C writer pool of one event loop (create it on that loop's thread).

    Args:
        loop: the loop whose futures the writes complete.
        threads: writer threads (each may block in an ``fsync`` for milliseconds).

    Raises:
        OSError: the pool's threads or eventfd could not be created.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int = _WRITER_THREADS) -> None:
        pool = lib.sirius_durable_pool_new(threads)
        if pool == ffi.NULL:
            code = ffi.errno
            raise OSError(code, os.strerror(code))
        self.loop = loop
        self.pid = os.getpid()  # a forked child has none of the threads: it needs its own pool
        self._pool: Any = pool
        self._fd = int(lib.sirius_durable_pool_fd(pool))
        # token -> (future, data, cdata buffer): the data must stay alive until the C write is done.
        self._pending: dict[int, tuple[asyncio.Future[int], object, object]] = {}
        self._tokens = itertools.count(1)
        self._done_tokens = ffi.new("uint64_t[]", _DRAIN)
        self._done_results = ffi.new("int32_t[]", _DRAIN)
        loop.add_reader(self._fd, self._on_completions)
        _live_pools.add(self)

    async def write_new_file(self, path: Path, data: bytes | memoryview, *, durable: bool) -> bool | None:
        """``write_new_file`` on the pool: True created, False the name exists, None no ``O_TMPFILE`` here.

        Raises:
            OSError: the write, link or directory ``fsync`` failed (``FileNotFoundError``: no
                directory; create it and call again).
        """
        if self._pool is None:
            msg = "DurablePool is closed"
            raise RuntimeError(msg)
        token = next(self._tokens)
        buffer = ffi.from_buffer(data)
        directory, name = os.fsencode(path.parent), os.fsencode(path)
        future: asyncio.Future[int] = self.loop.create_future()
        # Registered before the submit: nothing between the submit and the await may fail and
        # leave the C thread writing from a buffer no one keeps alive.
        self._pending[token] = (future, data, buffer)
        code = lib.sirius_durable_pool_submit(
            self._pool, token, directory, name, ffi.NULL, 0, buffer, len(buffer), durable
        )
        if code < 0:
            del self._pending[token]
            raise OSError(-code, os.strerror(-code), str(path))
        # A cancelled caller leaves the entry (and so the data) in _pending until the C thread
        # is done with it: only _drain removes entries.
        result = await future
        if result == lib.SIRIUS_DURABLE_NO_TMPFILE:
            return None
        if result < 0:
            raise OSError(-result, os.strerror(-result), str(path))
        return result == 1

    def _on_completions(self) -> None:
        with contextlib.suppress(BlockingIOError):  # another drain may have taken them already
            os.read(self._fd, 8)  # reset the eventfd's counter; completions are drained below
        self._drain(self._pool)

    def _drain(self, pool: Any) -> None:
        while True:
            count = lib.sirius_durable_pool_completed(pool, self._done_tokens, self._done_results, _DRAIN)
            for i in range(count):
                future, _, _ = self._pending.pop(int(self._done_tokens[i]))
                if not future.done():
                    future.set_result(int(self._done_results[i]))
            if count < _DRAIN:
                return

    def close(self) -> None:
        """Finish the queued writes (blocking), complete their futures, stop the threads."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        lib.sirius_durable_pool_stop(pool)  # every queued write finishes first
        if self.loop.is_closed():
            self._pending.clear()
        else:
            self._drain(pool)
        lib.sirius_durable_pool_free(pool)
