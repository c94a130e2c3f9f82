"""One ``sirius`` process per data directory: an exclusive lock on ``DATA_DIR/sirius.pid``.

``sirius up`` and ``sirius demo`` take the lock before touching the directory and hold it until
they exit. The lock is an ``flock`` on an open file, so the kernel releases it when the process
dies however it dies (``kill -9`` included): a held lock means a live owner, a free lock means
that whatever is left in the directory (a PostgreSQL server, temporary files) is an orphan. The
file holds the owner's PID so a refused start can name it; it is never deleted (deleting a
lock file races with the next process opening it).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ._exceptions import AdminError, DataDirInUseError

LOCK_FILE = "sirius.pid"


class DataDirLock:
    """The exclusive lock of one data directory.

    Args:
        data_dir: the directory (created when missing).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting and write our PID into the file.

        Raises:
            DataDirInUseError: another process holds it (its PID in the error when known).
            AdminError: the directory or its lock file cannot be created.
        """
        if self._fd is not None:
            return
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        except OSError as exc:
            msg = f"cannot use data directory {self.data_dir}: {exc}"
            raise AdminError(msg) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"PID {pid}" if pid is not None else "PID unknown"
            msg = f"data directory {self.data_dir} is in use by another sirius process ({who})"
            raise DataDirInUseError(msg, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases it); a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # the holder is between truncating and writing the file
