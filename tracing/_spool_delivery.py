"""Delivering a spool: claim each session directory nobody holds, post its entries in order.

Used by a starting sink (in a background thread, for what earlier processes left) and by
``sirius spool flush``. Exactly once in the lake: a directory is claimed with a non-blocking
``flock`` on its ``.lock`` (the writer holds it while alive; of two deliverers only one gets
it), each entry is deleted right after the service acknowledged it, and an entry delivered again
after a crash between the two is harmless because the service stores processes, streams and
blocks idempotently (their ids are the keys). Corrupt entries are deleted and counted; leftover
``.tmp-*`` files (a writer crashed mid-write) are deleted. A transient failure (network, 429,
5xx) stops the pass and leaves the rest for a later one.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import SpoolEntryError
from ._spool import ENTRY_SUFFIX, LOCK_NAME, TMP_PREFIX, SpoolConfig, decode_spool_entry, fcntl

_PATHS = {
    "process": "/ingestion/insert_process",
    "stream": "/ingestion/insert_stream",
    "block": "/ingestion/insert_block",
}

Post = Callable[[str, bytes], int]
"""POST a body to a route, return the HTTP status; raise ``OSError``/``HTTPException`` when unreachable."""


@dataclass(slots=True)
class SpoolDeliveryStats:
    """What one or more delivery passes did."""

    delivered_items: int = 0
    delivered_blocks: int = 0
    delivered_events: int = 0
    rejected_items: int = 0
    corrupt_entries: int = 0
    busy_directories: int = 0
    remaining_entries: int = 0  # entries still in the spool after the (last) pass, held ones included


class _UnreachableError(Exception):
    """The service cannot take entries now (network error, 429, 5xx)."""


def _claim(session: Path) -> int:
    """An fd holding the directory's lock, or -1 when another process holds it (or it vanished)."""
    try:
        fd = os.open(session / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _entries(session: Path) -> list[str]:
    names: list[str] = []
    try:
        listing = os.listdir(session)
    except OSError:  # delivered and removed by another deliverer after we opened its lock
        return names
    for name in listing:
        if name.startswith(TMP_PREFIX):
            with contextlib.suppress(OSError):
                (session / name).unlink()  # a write that never completed: not an entry
        elif name.endswith(ENTRY_SUFFIX):
            names.append(name)
    return sorted(names)


def _deliver_session(session: Path, post: Post, stats: SpoolDeliveryStats, stop: Callable[[], bool]) -> None:
    names = _entries(session)
    for name in names:
        if stop():
            return
        path = session / name
        try:
            entry = decode_spool_entry(path.read_bytes())
        except SpoolEntryError:
            stats.corrupt_entries += 1
            path.unlink(missing_ok=True)
            continue
        except OSError:
            return
        try:
            status = post(_PATHS[entry.kind], entry.body)
        except (OSError, http.client.HTTPException) as exc:
            raise _UnreachableError(str(exc)) from exc
        if status == 429 or status >= 500:
            msg = f"HTTP {status}"
            raise _UnreachableError(msg)
        if 200 <= status < 300:
            stats.delivered_items += 1
            if entry.kind == "block":
                stats.delivered_blocks += 1
                stats.delivered_events += entry.nb_objects
        else:
            stats.rejected_items += 1  # permanent (4xx): retrying cannot help
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (session / LOCK_NAME).unlink()
        session.rmdir()


def deliver_spool(
    config: SpoolConfig,
    post: Post,
    *,
    stop: Callable[[], bool] = lambda: False,
    skip: Path | None = None,
) -> tuple[SpoolDeliveryStats, bool]:
    """One pass over the spool: deliver every directory this process can claim.

    Args:
        config: the spool to read.
        post: sends one body (see ``Post``).
        stop: polled between entries; True ends the pass early (entries stay for later).
        skip: a session directory not to touch (the caller's own).

    Returns:
        The pass's counters, and True when the service was unreachable (the caller retries).
    """
    stats = SpoolDeliveryStats()
    try:
        sessions = sorted(p for p in config.directory.iterdir() if p.is_dir() and p != skip)
    except OSError:
        return stats, False
    unreachable = False
    for session in sessions:
        if stop() or unreachable:
            break
        fd = _claim(session)
        if fd < 0:
            stats.busy_directories += 1
            continue
        try:
            _deliver_session(session, post, stats, stop)
        except _UnreachableError:
            unreachable = True
        finally:
            os.close(fd)
    stats.remaining_entries = sum(_count_entries(session) for session in sessions)
    return stats, unreachable


def _count_entries(session: Path) -> int:
    try:
        return sum(1 for name in os.listdir(session) if name.endswith(ENTRY_SUFFIX))
    except OSError:
        return 0


def merge(total: SpoolDeliveryStats, part: SpoolDeliveryStats) -> None:
    """Add ``part``'s counters to ``total`` (``remaining``/``busy`` are the latest pass's)."""
    total.delivered_items += part.delivered_items
    total.delivered_blocks += part.delivered_blocks
    total.delivered_events += part.delivered_events
    total.rejected_items += part.rejected_items
    total.corrupt_entries += part.corrupt_entries
    total.busy_directories = part.busy_directories
    total.remaining_entries = part.remaining_entries


def deliver_until(
    config: SpoolConfig,
    post: Post,
    *,
    timeout: float,
    stop_event: threading.Event | None = None,
    skip: Path | None = None,
    backoff: tuple[float, float] = (0.05, 2.0),
) -> SpoolDeliveryStats:
    """Repeat ``deliver_spool`` while the service is unreachable, until ``timeout`` or ``stop_event``.

    Waits between attempts on ``stop_event`` (so setting it ends the wait at once).
    """
    event = stop_event or threading.Event()
    deadline = time.monotonic() + timeout
    delay, max_delay = backoff
    total = SpoolDeliveryStats()
    while True:
        part, unreachable = deliver_spool(
            config, post, stop=lambda: event.is_set() or time.monotonic() >= deadline, skip=skip
        )
        merge(total, part)
        remaining = deadline - time.monotonic()
        if not unreachable or event.is_set() or remaining <= 0:
            return total
        event.wait(min(delay, remaining))
        delay = min(delay * 2, max_delay)
