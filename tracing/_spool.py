"""The spool: ingestion bodies the sink could not deliver, kept on disk for a later delivery.

Layout: ``<root>/<pid>-<random>/`` per writing sink (its *session directory*), holding
``<sequence>.entry`` files and a ``.lock`` file. The writer holds an exclusive ``flock`` on
``.lock`` for as long as it may write, so a deliverer (the next process's sink, or
``sirius spool flush``) claims a directory by taking that lock without blocking: it fails while
the writer lives, succeeds once it has exited or crashed (the kernel releases the lock), and
only one of two concurrent deliverers gets it.

Entries are written atomically (temporary file, ``fsync``, ``rename``, ``fsync`` of the
directory): a crash leaves a ``.tmp-*`` file, never a partial ``.entry``. Each entry carries a
CRC-32 of its body, so a damaged one is detected, skipped and counted instead of delivered.
Every session directory is self-contained: the process and stream bodies its blocks need are
written into it before the first block, and delivery follows the sequence numbers.

Entry format (little-endian): ``b"SRSP"``, u8 version (1), u8 kind (1 process, 2 stream,
3 block), u16 reserved (0), u32 nb_objects, u32 body length, u32 CRC-32 of the body, body.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ._environment_variables import SIRIUS_SPOOL_DIR, SIRIUS_SPOOL_MAX_BYTES, XDG_CACHE_HOME
from ._exceptions import SpoolEntryError

try:  # POSIX only: without flock the spool is disabled (never shared unsafely)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
SPOOL_DISABLED = "off"
ENTRY_SUFFIX = ".entry"
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"
RESCAN_INTERVAL = 1.0  # seconds between rescans of a spool that looks full

_MAGIC = b"SRSP"
_VERSION = 1
_HEADER = struct.Struct("<4sBBHIII")
_KINDS = {"process": 1, "stream": 2, "block": 3}
_KIND_NAMES = {code: name for name, code in _KINDS.items()}
MAX_ENTRY_BODY = 1 << 31


def default_spool_dir() -> Path:
    """``$XDG_CACHE_HOME/sirius/spool``, else ``~/.cache/sirius/spool``."""
    cache = os.environ.get(XDG_CACHE_HOME) or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sirius" / "spool"


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Where undelivered bodies go and how much disk they may take.

    Attributes:
        directory: the spool root, shared by every process using it.
        max_bytes: cap on the entries under the root (all session directories); past it,
            bodies are dropped and counted. Concurrent writers check it independently, so the
            root may exceed it by at most one entry per writer.
    """

    directory: Path
    max_bytes: int = DEFAULT_SPOOL_MAX_BYTES

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            msg = "spool max_bytes must be positive"
            raise ValueError(msg)

    @classmethod
    def resolve(
        cls, directory: str | os.PathLike[str] | None = None, max_bytes: int | None = None
    ) -> SpoolConfig | None:
        """Explicit values, then ``SIRIUS_SPOOL_DIR`` / ``SIRIUS_SPOOL_MAX_BYTES``, then defaults.

        Returns None (spooling disabled) when the directory is ``"off"`` or the platform has no
        ``flock``.
        """
        if fcntl is None:
            return None
        env = os.environ
        raw_dir = os.fspath(directory) if directory is not None else env.get(SIRIUS_SPOOL_DIR, "").strip()
        if raw_dir == SPOOL_DISABLED:
            return None
        if max_bytes is None:
            raw = env.get(SIRIUS_SPOOL_MAX_BYTES, "").strip()
            if raw and not raw.isdigit():
                msg = f"{SIRIUS_SPOOL_MAX_BYTES}={raw!r} is not a byte count"
                raise ValueError(msg)
            max_bytes = int(raw) if raw else DEFAULT_SPOOL_MAX_BYTES
        return cls(directory=Path(raw_dir) if raw_dir else default_spool_dir(), max_bytes=max_bytes)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled ingestion body: ``kind`` is ``process``, ``stream`` or ``block``."""

    kind: str
    body: bytes
    nb_objects: int = 0


def encode_spool_entry(entry: SpoolEntry) -> bytes:
    """The bytes of an entry file.

    >>> decode_spool_entry(encode_spool_entry(SpoolEntry("block", b"cbor", 3)))
    SpoolEntry(kind='block', body=b'cbor', nb_objects=3)
    """
    if entry.kind not in _KINDS:
        msg = f"unknown spool entry kind {entry.kind!r}"
        raise ValueError(msg)
    if not 0 <= entry.nb_objects < 1 << 32 or len(entry.body) >= MAX_ENTRY_BODY:
        msg = "spool entry out of range (nb_objects < 2**32, body < 2 GiB)"
        raise ValueError(msg)
    head = _HEADER.pack(
        _MAGIC, _VERSION, _KINDS[entry.kind], 0, entry.nb_objects, len(entry.body), zlib.crc32(entry.body)
    )
    return head + entry.body


def decode_spool_entry(data: bytes) -> SpoolEntry:
    """Parse an entry file's bytes.

    Raises:
        SpoolEntryError: wrong magic or version, unknown kind, a length that does not match the
            data, or a body whose CRC-32 does not match.
    """
    if len(data) < _HEADER.size:
        msg = f"spool entry truncated: {len(data)} bytes, header needs {_HEADER.size}"
        raise SpoolEntryError(msg)
    magic, version, kind, reserved, nb_objects, length, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _VERSION or reserved != 0:
        msg = f"not a version-{_VERSION} spool entry (magic {magic!r}, version {version})"
        raise SpoolEntryError(msg)
    if kind not in _KIND_NAMES:
        msg = f"unknown spool entry kind {kind}"
        raise SpoolEntryError(msg)
    body = data[_HEADER.size :]
    if len(body) != length:
        msg = f"spool entry body is {len(body)} bytes, header says {length}"
        raise SpoolEntryError(msg)
    if zlib.crc32(body) != crc:
        msg = "spool entry body does not match its CRC-32"
        raise SpoolEntryError(msg)
    return SpoolEntry(_KIND_NAMES[kind], bytes(body), nb_objects)


def entry_size(entry: SpoolEntry) -> int:
    """Bytes the entry takes on disk."""
    return _HEADER.size + len(entry.body)


def spool_usage(root: Path) -> int:
    """Bytes of the entries under ``root`` (0 when it does not exist)."""
    total = 0
    with contextlib.suppress(OSError):
        for session in os.scandir(root):
            if not session.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                for item in os.scandir(session.path):
                    if item.name.endswith(ENTRY_SUFFIX):
                        with contextlib.suppress(OSError):
                            total += item.stat(follow_symlinks=False).st_size
    return total


def write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Write ``directory/name`` so that it exists complete or not at all, even across a crash."""
    tmp = directory / f"{TMP_PREFIX}{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power loss
    finally:
        os.close(dir_fd)


class SpoolWriter:
    """This sink's session directory: created on the first write, locked until ``close``.

    Thread-safe. ``write`` never raises: it returns False when the entry could not be kept (cap
    reached, disk error, closed), and the caller counts it as dropped.
    """

    def __init__(self, config: SpoolConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._lock_fd = -1
        self._seq = 0
        self._usage: int | None = None  # bytes under the root, scanned then tracked
        self._scanned_at = 0.0
        self._written_metadata: set[bytes] = set()
        self._closed = False
        self.failures = 0

    @property
    def directory(self) -> Path | None:
        """The session directory once created."""
        return self._dir

    def _open(self) -> Path:
        root = self._config.directory
        root.mkdir(parents=True, exist_ok=True)
        session = root / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        session.mkdir(mode=0o700)
        fd = os.open(session / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # new file: nobody else can hold it
        self._lock_fd = fd
        self._dir = session
        return session

    def write(self, entry: SpoolEntry, metadata: Iterable[SpoolEntry] = ()) -> bool:
        """Keep ``entry``, first writing each of ``metadata`` this directory does not hold yet."""
        with self._lock:
            if self._closed:
                return False
            try:
                needed = [m for m in metadata if m.body not in self._written_metadata]
                items = [*needed, entry]
                if entry.kind != "block" and (entry.body in self._written_metadata or entry in needed):
                    items = needed  # metadata already there (or about to be): once is enough
                size = sum(entry_size(item) for item in items)
                now = time.monotonic()
                if self._usage is None or (
                    self._usage + size > self._config.max_bytes and now - self._scanned_at >= RESCAN_INTERVAL
                ):
                    # Others' deliveries shrink the spool: rescan when it looks full (rarely).
                    self._usage, self._scanned_at = spool_usage(self._config.directory), now
                if self._usage + size > self._config.max_bytes:
                    return False
                session = self._dir or self._open()
                for item in items:
                    self._seq += 1
                    write_atomically(session, f"{self._seq:012d}{ENTRY_SUFFIX}", encode_spool_entry(item))
                    self._usage += entry_size(item)
                    if item.kind != "block":
                        self._written_metadata.add(item.body)
            except OSError:
                self.failures += 1
                return False
            return True

    def close(self) -> None:
        """Release the directory to deliverers (removed when nothing was written)."""
        with self._lock:
            self._closed = True
            if self._lock_fd < 0 or self._dir is None:
                return
            with contextlib.suppress(OSError):
                if self._seq == 0:
                    (self._dir / LOCK_NAME).unlink()
                    self._dir.rmdir()
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def rotate(self) -> bool:
        """Release the current directory to deliverers; the next write starts a new one.

        Returns:
            True when a directory holding entries was released.
        """
        with self._lock:
            if self._closed or self._dir is None or self._seq == 0:
                return False
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the flock: a deliverer may claim it now
            self._dir, self._lock_fd, self._seq = None, -1, 0
            self._written_metadata = set()  # a new directory needs its own copies
            return True

    def after_fork_in_child(self) -> None:
        """The parent owns its directory and lock: the child starts a new one when it spools."""
        with contextlib.suppress(OSError):
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing the child's copy leaves the parent's flock
        self._lock = threading.Lock()
        self._dir, self._lock_fd, self._seq, self._usage = None, -1, 0, None
        self._written_metadata = set()
        self._closed = False
