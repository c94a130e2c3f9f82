"""The cloud object stores (S3, GCS, Azure Blob) on one library: ``obstore``, the Rust ``object_store``.

``object_store`` is the crate DataFusion itself reads Parquet with, so the services and the query
engine speak to a bucket through the same client code. This module holds what the three clouds
share: the ``ObjectStore`` interface over an ``obstore`` store, create-only puts
(``PutMode::Create``: ``If-None-Match: *`` on S3 and Azure, ``x-goog-if-generation-match: 0`` on
GCS, a refusal mapped to ``False``), listings by plain string prefix, and the mapping of the
library's errors to ours. The per-cloud modules (``_s3_store``, ``_gcs_store``, ``_azure_store``)
resolve configuration from the environment and tell DataFusion how to open the same location.

Calls are native coroutines of ``obstore`` (a Tokio runtime of its own): no worker threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError, PreconditionError

from ._exceptions import ConfigurationError, ObjectNotFoundError, ObjectStoreError
from ._object_keys import validate_key, validate_prefix

if TYPE_CHECKING:
    from datafusion import SessionContext
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["CloudObjectStore", "check_location"]

# Bounded waits (object_store's defaults retry for three minutes), and a few retries with short
# backoff for 5xx replies and dropped connections. A retried create-only put whose first attempt
# landed is refused and reports False: the object still holds exactly the bytes we sent.
CLIENT_OPTIONS: ClientConfig = {"connect_timeout": timedelta(seconds=10), "timeout": timedelta(seconds=60)}
RETRY_CONFIG: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=30),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2},
}
_CONFLICT_RETRIES = 3
_MAX_SINGLE_PUT = 5 * 1024**3  # S3's limit for one PUT; larger objects would need multipart


def check_location(kind: str, container: str, prefix: str) -> str:
    """Validate a bucket/container name and key prefix; return the prefix without slashes.

    Raises:
        ConfigurationError: either is malformed.
    """
    if not container or "/" in container or any(c.isspace() for c in container):
        msg = f"bad {kind} bucket name {container!r}"
        raise ConfigurationError(msg)
    prefix = prefix.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except ObjectStoreError as exc:
            raise ConfigurationError(f"bad {kind} key prefix {prefix!r}") from exc
    return prefix


def _is_conflict(exc: BaseError) -> bool:
    # S3 answers 409 ConditionalRequestConflict while another conditional write of the key is in
    # flight; its outcome decides ours, so the put is asked again (AWS documents a retry).
    text = str(exc)
    return "409" in text or "ConditionalRequestConflict" in text


class CloudObjectStore(ABC):
    """Objects in a cloud bucket (or Azure container) under an optional key prefix.

    Subclasses build the ``obstore`` store and say how DataFusion opens the same location.

    Args:
        kind: the user-facing name of the service, for messages (``S3``, ``GCS``, ``Azure``).
        scheme: the URI scheme (``s3``, ``gs``, ``az``).
        container: the bucket or container; must already exist.
        prefix: prepended to every key (``lake`` → keys live under ``lake/``).
        store: the ``obstore`` store, already scoped to ``prefix``.
    """

    def __init__(self, kind: str, scheme: str, container: str, prefix: str, store: Any) -> None:
        self._kind = kind
        self._scheme = scheme
        self._container = container
        self._prefix = f"{prefix}/" if prefix else ""
        self._store = store

    @property
    def uri(self) -> str:
        """``scheme://container/prefix`` (no trailing slash)."""
        return f"{self._scheme}://{self._container}/{self._prefix.rstrip('/')}".rstrip("/")

    @property
    def bucket(self) -> str:
        """The bucket (or Azure container) name."""
        return self._container

    @property
    def key_prefix(self) -> str:
        """What is prepended to every key (``""`` or ``"prefix/"``)."""
        return self._prefix

    @property
    def parquet_url_prefix(self) -> str:
        """The URL DataFusion reads a key at, less the key (``s3://bucket/prefix/``)."""
        return f"{self._scheme}://{self._container}/{self._prefix}"

    @abstractmethod
    def register_on(self, ctx: SessionContext) -> None:
        """Register this location as an object store of a DataFusion session."""

    def _error(self, exc: BaseException, what: str) -> ObjectStoreError:
        if isinstance(exc, NotFoundError | FileNotFoundError):
            return ObjectNotFoundError(f"{what}: no such object")
        # object_store's messages end with a multi-line debug dump; the first line says it all.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ObjectStoreError(f"{self._kind} {what}: {first}")

    # -- the interface ----------------------------------------------------------------------

    async def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """See ``ObjectStore.put_if_absent``."""
        validate_key(key)
        if len(data) > _MAX_SINGLE_PUT:
            msg = f"put {key!r}: {len(data)} bytes exceed the single-request limit"
            raise ObjectStoreError(msg)
        return await self._put_create(key, data)

    async def _put_create(self, key: str, data: bytes | memoryview) -> bool:
        for _ in range(_CONFLICT_RETRIES):
            try:
                await obstore.put_async(self._store, key, data, mode="create", use_multipart=False)
            except (AlreadyExistsError, PreconditionError, FileExistsError):
                return False  # an object is already there; it is left untouched
            except BaseError as exc:
                if _is_conflict(exc):
                    continue
                raise self._error(exc, f"put {key!r}") from exc
            except OSError as exc:
                raise self._error(exc, f"put {key!r}") from exc
            return True
        msg = f"put {key!r}: conditional write kept conflicting"
        raise ObjectStoreError(msg)

    async def get(self, key: str) -> bytes:
        """See ``ObjectStore.get``."""
        validate_key(key)
        try:
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())
        except (BaseError, OSError) as exc:
            raise self._error(exc, f"get {key!r}") from exc

    async def exists(self, key: str) -> bool:
        """See ``ObjectStore.exists``."""
        validate_key(key)
        try:
            await obstore.head_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        except (BaseError, OSError) as exc:
            raise self._error(exc, f"head {key!r}") from exc
        return True

    async def delete(self, key: str) -> None:
        """See ``ObjectStore.delete``."""
        await self.delete_many([key])

    async def delete_many(self, keys: Iterable[str]) -> None:
        """See ``ObjectStore.delete_many``."""
        checked = [validate_key(k) for k in keys]
        if not checked:
            return
        try:
            # S3 and Azure: one bulk request per 1000 keys; GCS: one request per key.
            await obstore.delete_async(self._store, checked)
        except (NotFoundError, FileNotFoundError):
            # GCS reports a missing object on delete; missing is not an error here, so the
            # rest are deleted one by one, each tolerating its own absence.
            for key in checked:
                try:
                    await obstore.delete_async(self._store, key)
                except (NotFoundError, FileNotFoundError):
                    continue
                except (BaseError, OSError) as exc:
                    raise self._error(exc, f"delete {key!r}") from exc
        except (BaseError, OSError) as exc:
            raise self._error(exc, "delete objects") from exc

    async def _sizes(self, prefix: str) -> dict[str, int]:
        validate_prefix(prefix)
        # object_store lists whole path segments; list below the deepest complete segment and
        # keep the keys that start with the plain string prefix, as S3 would.
        head, _, _ = prefix.rpartition("/")
        sizes: dict[str, int] = {}
        try:
            async for batch in obstore.list(self._store, head or None, chunk_size=1000):
                for meta in batch:
                    path = meta["path"]
                    if path.startswith(prefix):
                        sizes[path] = meta["size"]
        except (BaseError, OSError) as exc:
            raise self._error(exc, f"list {prefix!r}") from exc
        return sizes

    async def list_keys(self, prefix: str) -> list[str]:
        """See ``ObjectStore.list_keys``."""
        return sorted(await self._sizes(prefix))

    async def total_size(self, prefix: str = "") -> int:
        """See ``ObjectStore.total_size``."""
        return sum((await self._sizes(prefix)).values())

    async def probe(self) -> None:
        """See ``ObjectStore.probe``; also checks that the bucket exists and is readable."""
        try:
            await obstore.list_with_delimiter_async(self._store, None)
        except (BaseError, OSError) as exc:
            text = str(exc)
            if "NoSuchBucket" in text or "ContainerNotFound" in text or "404" in text:
                msg = f"{self._kind} bucket {self._container!r} does not exist"
                raise ObjectStoreError(msg) from exc
            raise self._error(exc, f"probe bucket {self._container!r}") from exc

    async def close(self) -> None:  # noqa: B027 - not abstract: no cloud store has anything to release
        """See ``ObjectStore.close``; the HTTP client's sockets go with the store object."""
