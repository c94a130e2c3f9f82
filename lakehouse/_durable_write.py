"""Durable create-only file writes for the local object store, with fewer syscalls per object.

A durable create-only write needs: the bytes on disk before the name can be (else a crash could
leave a named, truncated object that a retried request then finds and keeps), the name created
only if absent (``link`` fails on an existing name: two racing writers cannot both win), and the
new directory entry on disk before the write is acknowledged (an acknowledged block survives
``kill -9`` and a power cut). The plain way is a named temporary file, ``fsync`` of it, ``link``,
``fsync`` of the directory, ``unlink`` of the temporary name. Two savings keep every one of
those guarantees:

- **An unnamed temporary file** (``O_TMPFILE``, Linux): the data goes into an inode that has no
  name, which is then linked into place with ``linkat`` through ``/proc/self/fd`` (still
  create-only: ``EEXIST``). No random name to create, no ``unlink`` afterwards (one directory
  change fewer for the directory sync to carry), and nothing left behind by a crash. Where the
  filesystem or ``/proc`` lacks it, the named temporary file is used as before.
- **Group commit of the directory sync** (``DirectorySync``): a write's ``fsync`` of the
  directory also makes durable every link made in it before that ``fsync`` started. Concurrent
  writers to one directory (the blocks of one stream, or of the OTLP receivers' streams) each
  take a ticket after their link; one of them syncs the directory for every ticket taken so
  far while the others wait, and each returns once a sync that started after its own link has
  finished. A failed sync fails only its caller; the waiters then sync for themselves.

The unnamed-file write (open, write, ``fsync``, ``linkat``, close) and a directory ``fsync`` are
each **one C call** (``native/durable_write.c``, cffi): CPython releases and re-takes the GIL
around every ``os`` syscall, and with the event loop's thread wanting it back each hand-off is a
futex wake-up; cffi releases it once for the whole sequence. Same syscalls, same order, same
guarantees; the Python sequence below stays as the reference and the fallback (``_Native``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ._durable_native import ffi, lib
from ._object_keys import TMP_PREFIX

__all__ = [
    "DirectorySync",
    "directory_names_pending",
    "fsync_directory",
    "make_directories",
    "native_unnamed_writes",
    "wait_for_directory_names",
    "write_new_file",
]

_PROC_FD = Path("/proc/self/fd")
# O_TMPFILE is refused with one of these where the filesystem (or kernel) does not offer it.
_NO_TMPFILE = frozenset((errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS))


class _Native:
    """Whether the writes go through the C helper (one GIL release each); tests switch it off."""

    enabled: bool = True


def _raise_errno(code: int, path: Path | str) -> None:
    # OSError(errno, ...) is the matching subclass: FileNotFoundError for ENOENT, and so on.
    raise OSError(-code, os.strerror(-code), str(path))


def fsync_directory(directory: Path | str) -> None:
    """``fsync`` a directory: its entries (new links) reach the disk, not only the files' bytes."""
    if _Native.enabled:
        code = lib.sirius_fsync_directory(os.fsencode(directory))
        if code < 0:
            _raise_errno(code, directory)
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _NewDirectories:
    """Directories this process is creating whose names are not yet synced into their parents.

    A writer that links an object into a directory another writer has just created must not
    answer before that creator's parent fsync: its own fsyncs (the file's, the directory's) do
    not make the directory's name durable. A directory is registered before its ``mkdir``, so a
    writer that can link into it finds it here until its name is synced. (Other processes'
    directories are not seen: a scale-out writer sharing the store relies on the filesystem.)
    """

    condition = threading.Condition()
    unsynced: ClassVar[dict[Path, int]] = {}  # directory -> creators syncing its name
    waiting = 0  # writers in wait_for_directory_names (the tests observe it)


def directory_names_pending(directory: Path) -> bool:
    """Whether ``directory`` or an ancestor is being created here, its name not yet synced."""
    unsynced = _NewDirectories.unsynced
    return bool(unsynced) and (directory in unsynced or any(parent in unsynced for parent in directory.parents))


def wait_for_directory_names(directory: Path) -> None:
    """Return once no directory on ``directory``'s path is being created with its name unsynced."""
    # Lock-free first look (the common case: nothing is being created). A directory is
    # registered before its mkdir, so a writer that could link into it sees the entry.
    if not directory_names_pending(directory):
        return
    with _NewDirectories.condition:
        while directory_names_pending(directory):
            _NewDirectories.waiting += 1
            try:
                _NewDirectories.condition.wait()
            finally:
                _NewDirectories.waiting -= 1


def make_directories(directory: Path, *, durable: bool) -> None:
    """Create ``directory`` and its missing ancestors; with ``durable``, make each new entry durable.

    A new directory is an entry in its parent: until the parent is fsynced, a power cut may drop
    the directory and every object later linked into it (their own fsyncs and the new
    directory's fsync do not make its name durable). Directories are created rarely (a stream's
    first object), so one parent fsync per created directory costs nothing measurable.
    """
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for path in reversed(missing):  # outermost first, so each parent exists
        if not durable:
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            continue
        with _NewDirectories.condition:
            _NewDirectories.unsynced[path] = _NewDirectories.unsynced.get(path, 0) + 1
        try:
            try:
                path.mkdir()
            except FileExistsError:
                continue  # a concurrent writer created it: its writers wait for its parent fsync
            fsync_directory(path.parent)
        finally:
            with _NewDirectories.condition:
                if _NewDirectories.unsynced[path] == 1:
                    del _NewDirectories.unsynced[path]
                else:
                    _NewDirectories.unsynced[path] -= 1
                _NewDirectories.condition.notify_all()


@dataclass(slots=True)
class _Directory:
    condition: threading.Condition
    requested: int = 0  # tickets handed out (one per link waiting to be made durable)
    synced: int = 0  # every ticket up to this one is durable
    syncing: bool = False
    users: int = 0


class DirectorySync:
    """Group commit of directory ``fsync`` calls made by concurrent threads (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directories: dict[str, _Directory] = {}

    def sync(self, directory: str) -> None:
        """Return once a ``fsync`` of ``directory`` that started after this call has finished.

        Raises:
            OSError: the ``fsync`` this thread made failed.
        """
        with self._lock:
            state = self._directories.get(directory)
            if state is None:
                state = self._directories[directory] = _Directory(threading.Condition(self._lock))
            state.users += 1
            state.requested += 1
            ticket = state.requested
            try:
                while state.synced < ticket:
                    if state.syncing:
                        state.condition.wait()
                        continue
                    state.syncing = True
                    target = state.requested  # every link counted here is done before the fsync starts
                    self._lock.release()
                    try:
                        fsync_directory(directory)
                    except BaseException:
                        self._lock.acquire()
                        state.syncing = False
                        state.condition.notify_all()
                        raise
                    self._lock.acquire()
                    state.syncing = False
                    state.synced = max(state.synced, target)
                    state.condition.notify_all()
            finally:
                state.users -= 1
                if state.users == 0:
                    del self._directories[directory]


class _Tmpfile:
    """Whether ``O_TMPFILE`` works here; learnt from the first refusal, shared by all writes."""

    supported: bool = hasattr(os, "O_TMPFILE") and _PROC_FD.is_dir()


def native_unnamed_writes() -> bool:
    """Whether writes go through the C helper with ``O_TMPFILE`` (so the C writer pool may serve)."""
    return _Native.enabled and _Tmpfile.supported


def write_new_file(path: Path, data: bytes | memoryview, *, durable: bool, syncer: DirectorySync | None) -> bool:
    """Create ``path`` holding ``data`` if no file has that name; return False if one has.

    The directory must exist (``FileNotFoundError`` otherwise, also when a concurrent prune
    removes it before the link: the caller recreates it and calls again). With ``durable``, the
    data is synced before the link and the directory after it (through ``syncer`` when given).
    Readers never see a partial file: the name appears only once the bytes are written.
    """
    if _Tmpfile.supported:
        link_unnamed = _link_unnamed_native if _Native.enabled else _link_unnamed
        created = link_unnamed(path, data, durable)
        if created is not None:
            # Synced also when the name existed: its writer (a concurrent retry) may not have
            # synced the directory yet, and this write must not be acknowledged before it is.
            _sync_parent(path.parent, durable, syncer)
            return created
    return _link_named(path, data, durable, syncer)


def _link_unnamed_native(path: Path, data: bytes | memoryview, durable: bool) -> bool | None:
    """``_link_unnamed`` in one C call (one GIL release); None where ``O_TMPFILE`` is refused."""
    code = lib.sirius_durable_create(
        os.fsencode(path.parent), os.fsencode(path), b"", 0, ffi.from_buffer(data), len(data), durable
    )
    if code == lib.SIRIUS_DURABLE_NO_TMPFILE:
        _Tmpfile.supported = False
        return None
    if code < 0:
        _raise_errno(code, path)
    return code == 1


def _link_unnamed(path: Path, data: bytes | memoryview, durable: bool) -> bool | None:
    """Write an unnamed file, sync it, link it as ``path``; None where ``O_TMPFILE`` is refused."""
    try:
        fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError as exc:
        if exc.errno not in _NO_TMPFILE:
            raise
        _Tmpfile.supported = False
        return None
    with os.fdopen(fd, "wb") as unnamed:
        unnamed.write(data)
        unnamed.flush()
        if durable:
            os.fsync(unnamed.fileno())
        try:
            # CPython calls linkat (needed for AT_SYMLINK_FOLLOW: plain link() would link
            # the /proc symlink itself, EXDEV) only when a dir fd is given; the kernel
            # ignores it for an absolute path, so the file's own fd serves.
            fd = unnamed.fileno()
            os.link(_PROC_FD / str(fd), path, src_dir_fd=fd, follow_symlinks=True)
        except FileExistsError:
            return False
    return True


def _link_named(path: Path, data: bytes | memoryview, durable: bool, syncer: DirectorySync | None) -> bool:
    """The fallback: a named temporary file, synced, linked as ``path``, synced, unlinked."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            if durable:
                tmp.flush()
                os.fsync(tmp.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            created = False
        else:
            created = True
        _sync_parent(path.parent, durable, syncer)  # also when it existed (see write_new_file)
        return created
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _sync_parent(parent: Path, durable: bool, syncer: DirectorySync | None) -> None:
    if not durable:
        return
    if syncer is None:
        fsync_directory(parent)
    else:
        syncer.sync(str(parent))
    wait_for_directory_names(parent)  # a directory another writer is creating: its name too
