"""The object store: one small async interface, an in-memory and a local-directory implementation.

Blocks live at ``blobs/{process_id}/{stream_id}/{block_id}`` and Parquet partitions under
``views/…`` (DESIGN.md, Storage). Block writes are **create-only** (``put_if_absent``) so that a
retried ingestion request never replaces an object another request already acknowledged
(``micromegas-wire.md`` §3). The cloud stores (S3/MinIO, GCS, Azure) live in ``_cloud_store.py``
and its per-cloud modules, on ``obstore``; ``open_object_store`` picks the implementation from a
``MICROMEGAS_OBJECT_STORE_URI``.

Keys are ``/``-separated relative paths, validated the same way by every implementation
(``_object_keys``) so a key that works in unit tests (in memory) also works on disk and in S3.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from ._durable_pool import DurablePool, loop_pool
from ._durable_write import (
    DirectorySync,
    directory_names_pending,
    make_directories,
    native_unnamed_writes,
    wait_for_directory_names,
    write_new_file,
)
from ._exceptions import ConfigurationError, ObjectNotFoundError, ObjectStoreError
from ._object_keys import TMP_PREFIX as _TMP_PREFIX
from ._object_keys import validate_key, validate_prefix

__all__ = [
    "InMemoryObjectStore",
    "LocalObjectStore",
    "ObjectStore",
    "open_object_store",
    "validate_key",
    "validate_prefix",
]

_log = logging.getLogger(__name__)
_pool_refused = False  # a write found no writer pool (warned once per process)


@runtime_checkable
class ObjectStore(Protocol):
    """Where block payloads and Parquet partitions are stored.

    Every method is a coroutine; implementations that block (files, HTTP) run in a worker thread
    so the event loop of the ingestion service keeps serving.
    """

    @property
    def uri(self) -> str:
        """The canonical URI of the store's root (``file:///…``, ``s3://bucket/prefix``)."""
        ...

    async def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """Create ``key`` with ``data`` unless an object already exists there.

        ``data`` may be a view of a larger buffer (the ingestion service passes a slice of the
        request body): stores write it as is, without a copy, and keep no reference to it.

        Returns:
            True if this call wrote the object, False if one already existed (left untouched).

        Raises:
            ObjectStoreError: the store failed.
        """
        ...

    async def get(self, key: str) -> bytes:
        """Return the whole object.

        Raises:
            ObjectNotFoundError: there is no object at ``key``.
            ObjectStoreError: the store failed.
        """
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether an object exists at ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Delete ``key``; a missing object is not an error."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key; missing objects are not errors."""
        ...

    async def list_keys(self, prefix: str) -> list[str]:
        """Return the sorted keys that start with ``prefix`` (a plain string prefix, as in S3)."""
        ...

    async def total_size(self, prefix: str = "") -> int:
        """Return the summed size in bytes of the objects whose keys start with ``prefix``."""
        ...

    async def probe(self) -> None:
        """Cheap readiness check (for ``/ready``).

        Raises:
            ObjectStoreError: the store is unreachable or unusable.
        """
        ...

    async def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...


class InMemoryObjectStore:
    """An object store in a dict, for unit tests and the in-process demo.

    A lock keeps ``put_if_absent`` create-only even when the store is shared between threads,
    each with its own event loop (a server in a thread and a test in the main thread).
    """

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        """Always ``memory://``."""
        return "memory://"

    async def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """See ``ObjectStore.put_if_absent``."""
        validate_key(key)
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = bytes(data)
            return True

    async def get(self, key: str) -> bytes:
        """See ``ObjectStore.get``."""
        validate_key(key)
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                msg = f"no object at {key!r}"
                raise ObjectNotFoundError(msg) from None

    async def exists(self, key: str) -> bool:
        """See ``ObjectStore.exists``."""
        validate_key(key)
        with self._lock:
            return key in self._objects

    async def delete(self, key: str) -> None:
        """See ``ObjectStore.delete``."""
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """See ``ObjectStore.delete_many``."""
        checked = [validate_key(k) for k in keys]
        with self._lock:
            for key in checked:
                self._objects.pop(key, None)

    async def list_keys(self, prefix: str) -> list[str]:
        """See ``ObjectStore.list_keys``."""
        validate_prefix(prefix)
        with self._lock:
            return sorted(k for k in self._objects if k.startswith(prefix))

    async def total_size(self, prefix: str = "") -> int:
        """See ``ObjectStore.total_size``."""
        validate_prefix(prefix)
        with self._lock:
            return sum(len(v) for k, v in self._objects.items() if k.startswith(prefix))

    async def probe(self) -> None:
        """See ``ObjectStore.probe``; always ready."""

    async def close(self) -> None:
        """See ``ObjectStore.close``."""


class LocalObjectStore:
    """Objects as files under a root directory (the default store of ``sirius up``).

    Create-only writes are atomic: the bytes go to a temporary file in the destination directory
    (unnamed where ``O_TMPFILE`` works), which is then hard-linked to the final name. ``link``
    fails when the name exists, so two racing writers cannot both win, and readers never see a
    partially written object (``_durable_write.py``). Writes run on the event loop's C writer
    pool (``_durable_pool.py``: no Python worker thread, one GIL release per object), or in a
    worker thread where ``O_TMPFILE`` is refused.

    Args:
        root_dir: the root directory; created if missing.
        durable: fsync each object and its directory before ``put_if_absent`` returns, so an
            acknowledged block survives a power cut (concurrent writes to one directory share
            its fsync: group commit). Tests may turn it off for speed.

    Raises:
        ObjectStoreError: the root cannot be created.
    """

    def __init__(self, root_dir: str | os.PathLike[str], *, durable: bool = True) -> None:
        self._root = Path(root_dir).resolve()
        self._durable = durable
        self._directory_sync = DirectorySync()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create object store root {self._root}: {exc}"
            raise ObjectStoreError(msg) from exc

    @property
    def uri(self) -> str:
        """``file:///absolute/root``."""
        return self._root.as_uri()

    @property
    def root(self) -> Path:
        """The absolute root directory."""
        return self._root

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*validate_key(key).split("/"))

    # -- writes on the C writer pool (no Python worker thread) ------------------------------

    def _writer_pool(self) -> DurablePool | None:
        if not native_unnamed_writes():
            return None
        global _pool_refused  # noqa: PLW0603 - one warning per process, however many stores
        try:
            return loop_pool()
        except OSError as exc:
            # No threads or descriptors for a pool (limits reached): the writes still work on
            # Python worker threads, slower; the next write tries the pool again.
            if not _pool_refused:
                _log.warning("durable writer pool unavailable, writing on worker threads: %s", exc)
            _pool_refused = True
            return None

    async def _put_pooled(self, pool: DurablePool, path: Path, data: bytes | memoryview) -> bool | None:
        for _ in range(4):
            try:
                created = await pool.write_new_file(path, data, durable=self._durable)
            except FileNotFoundError:
                # As in _put_sync: the stream's first object, or its directory pruned meanwhile.
                await asyncio.to_thread(make_directories, path.parent, durable=self._durable)
                continue
            if self._durable and directory_names_pending(path.parent):  # another writer is creating it
                await asyncio.to_thread(wait_for_directory_names, path.parent)
            return created
        msg = f"directory {path.parent} keeps disappearing"
        raise ObjectStoreError(msg)

    # -- blocking helpers, run in a worker thread ------------------------------------------

    def _put_sync(self, path: Path, data: bytes | memoryview) -> bool:
        parent = path.parent
        for _ in range(4):
            try:
                return write_new_file(path, data, durable=self._durable, syncer=self._directory_sync)
            except FileNotFoundError:
                # The stream's first object, or a concurrent delete pruned the (then empty)
                # directory before the link (an unnamed temporary file does not keep it from
                # being empty): create it and write again. Creating it only when missing saves
                # a mkdir per object. The new directories' names are fsynced into their parents.
                make_directories(parent, durable=self._durable)
        msg = f"directory {parent} keeps disappearing"
        raise ObjectStoreError(msg)

    def _delete_sync(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return
        # Prune directories left empty (one per stream under blobs/) so retention really
        # shrinks the tree; stops at the first non-empty directory or at the root.
        parent = path.parent
        while parent != self._root:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    def _iter_files(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        # Walk only below the deepest directory the prefix pins down.
        head, _, _ = prefix.rpartition("/")
        base = self._root.joinpath(*head.split("/")) if head else self._root
        stack = [base]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                key = Path(entry.path).relative_to(self._root).as_posix()
                if key.startswith(prefix):
                    yield key, entry

    def _sizes_sync(self, prefix: str) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for key, entry in self._iter_files(prefix):
            try:
                sizes[key] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # deleted while we walked
        return sizes

    def _probe_sync(self) -> None:
        if not self._root.is_dir():
            msg = f"object store root {self._root} is not a directory"
            raise ObjectStoreError(msg)
        if not os.access(self._root, os.W_OK | os.X_OK):
            msg = f"object store root {self._root} is not writable"
            raise ObjectStoreError(msg)

    # -- the interface ----------------------------------------------------------------------

    async def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """See ``ObjectStore.put_if_absent``."""
        path = self._path(key)
        try:
            pool = self._writer_pool()
            if pool is not None:
                created = await self._put_pooled(pool, path, data)
                if created is not None:
                    return created
                # None: O_TMPFILE refused here; _put_sync learns it and writes a named file.
            return await asyncio.to_thread(self._put_sync, path, data)
        except OSError as exc:
            msg = f"cannot write {key!r}: {exc}"
            raise ObjectStoreError(msg) from exc

    async def get(self, key: str) -> bytes:
        """See ``ObjectStore.get``."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            msg = f"no object at {key!r}"
            raise ObjectNotFoundError(msg) from exc
        except OSError as exc:
            msg = f"cannot read {key!r}: {exc}"
            raise ObjectStoreError(msg) from exc

    async def exists(self, key: str) -> bool:
        """See ``ObjectStore.exists``."""
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        """See ``ObjectStore.delete``."""
        path = self._path(key)
        try:
            await asyncio.to_thread(self._delete_sync, path)
        except OSError as exc:
            msg = f"cannot delete {key!r}: {exc}"
            raise ObjectStoreError(msg) from exc

    async def delete_many(self, keys: Iterable[str]) -> None:
        """See ``ObjectStore.delete_many``."""
        paths = [self._path(k) for k in keys]

        def delete_all() -> None:
            for path in paths:
                self._delete_sync(path)

        try:
            await asyncio.to_thread(delete_all)
        except OSError as exc:
            msg = f"cannot delete objects: {exc}"
            raise ObjectStoreError(msg) from exc

    async def list_keys(self, prefix: str) -> list[str]:
        """See ``ObjectStore.list_keys``."""
        validate_prefix(prefix)
        try:
            sizes = await asyncio.to_thread(self._sizes_sync, prefix)
        except OSError as exc:
            msg = f"cannot list {prefix!r}: {exc}"
            raise ObjectStoreError(msg) from exc
        return sorted(sizes)

    async def total_size(self, prefix: str = "") -> int:
        """See ``ObjectStore.total_size``."""
        validate_prefix(prefix)
        try:
            sizes = await asyncio.to_thread(self._sizes_sync, prefix)
        except OSError as exc:
            msg = f"cannot list {prefix!r}: {exc}"
            raise ObjectStoreError(msg) from exc
        return sum(sizes.values())

    async def remove_stale_temp_files(self, older_than: float) -> int:
        """Delete the temporary files of writes that never finished; return how many.

        A process killed between creating a write's temporary file and removing it (``kill -9``
        of the ingestion service) leaves the file behind; no object is lost with it, since the
        write was never acknowledged. Only files last modified before ``older_than`` (a
        ``time.time()`` value, typically when the caller started) are removed: the caller must
        know that no other process writes to this root, so none of them is in flight.
        """

        def remove() -> int:
            removed = 0
            for directory, _, files in os.walk(self._root):
                for name in files:
                    if not name.startswith(_TMP_PREFIX):
                        continue
                    path = Path(directory, name)
                    try:
                        if path.stat(follow_symlinks=False).st_mtime >= older_than:
                            continue
                    except FileNotFoundError:
                        continue
                    self._delete_sync(path)
                    removed += 1
            return removed

        try:
            return await asyncio.to_thread(remove)
        except OSError as exc:
            msg = f"cannot remove temporary files under {self._root}: {exc}"
            raise ObjectStoreError(msg) from exc

    async def probe(self) -> None:
        """See ``ObjectStore.probe``."""
        await asyncio.to_thread(self._probe_sync)

    async def close(self) -> None:
        """See ``ObjectStore.close``."""


def open_object_store(uri: str) -> ObjectStore:
    """Open the store named by a ``MICROMEGAS_OBJECT_STORE_URI``.

    Args:
        uri: ``file:///absolute/path`` (created if missing), ``s3://bucket[/prefix]``,
            ``gs://bucket[/prefix]`` or ``az://container[/prefix]``. S3 endpoint and credentials
            come from ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
            ``AWS_REGION``; GCS's from the Google variables (``STORAGE_EMULATOR_HOST`` for an
            emulator); Azure's from ``AZURE_STORAGE_*``. The bucket must already exist; this
            function makes no network call, so call ``await store.probe()`` to check it.

    Returns:
        A ``LocalObjectStore``, an ``S3ObjectStore``, a ``GCSObjectStore`` or an ``AzureObjectStore``.

    Raises:
        ConfigurationError: the URI is malformed or its scheme unsupported.

    >>> open_object_store("s3://my-bucket/lake/").uri
    's3://my-bucket/lake'
    """
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        msg = f"object store URI must not have a query or fragment: {uri!r}"
        raise ConfigurationError(msg)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            msg = f"file object store URI must be file:///absolute/path, got {uri!r}"
            raise ConfigurationError(msg)
        try:
            return LocalObjectStore(path)
        except ObjectStoreError as exc:
            raise ConfigurationError(str(exc)) from exc
    if parts.scheme == "s3":
        from ._s3_store import S3ObjectStore

        return S3ObjectStore.from_uri(uri)
    if parts.scheme == "gs":
        from ._gcs_store import GCSObjectStore

        return GCSObjectStore.from_uri(uri)
    if parts.scheme == "az":
        from ._azure_store import AzureObjectStore

        return AzureObjectStore.from_uri(uri)
    msg = (
        f"unsupported object store URI {uri!r}: expected file:///path, s3://bucket/prefix, "
        "gs://bucket/prefix or az://container/prefix"
    )
    raise ConfigurationError(msg)
