"""The S3 / MinIO object store, through the ``minio`` SDK (the optional ``[s3]`` extra).

Create-only writes send ``If-None-Match: *`` on a single ``PUT``, as Micromegas's Rust
``put_if_absent`` does (``micromegas-wire.md`` §3): the server refuses to replace an existing
object with ``412 Precondition Failed``. AWS S3, current MinIO and moto (checked: 5.2.5, see
``tests/lakehouse/test_object_store.py``) honour the header. A server that ignores it would
overwrite; block payloads of a retried request are byte-identical, so that degrades to a
harmless rewrite rather than to data loss.

``minio`` is synchronous; every call runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from . import _environment_variables as env
from ._exceptions import ConfigurationError, ObjectNotFoundError, ObjectStoreError
from ._object_keys import validate_key, validate_prefix

__all__ = ["S3Config", "S3ObjectStore"]

_T = TypeVar("_T")

_DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
_DEFAULT_REGION = "us-east-1"
_MAX_SINGLE_PUT = 5 * 1024**3  # S3's limit for one PUT; larger objects need multipart
_CONFLICT_RETRIES = 3

# Errors the SDK and its HTTP stack raise: S3 error replies, non-XML server errors, transport
# failures (urllib3), socket errors, and ValueError for names minio refuses client-side.
_FOREIGN_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where and how to reach the S3-protocol server, resolved once.

    Attributes:
        endpoint: ``host[:port]`` as minio expects it.
        secure: HTTPS when true.
        region: the signing region.
        access_key: access key id, or None for anonymous access.
        secret_key: secret key (kept out of ``repr``).
    """

    endpoint: str
    secure: bool = True
    region: str = _DEFAULT_REGION
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoint or "/" in self.endpoint:
            msg = f"S3 endpoint must be host[:port], got {self.endpoint!r}"
            raise ConfigurationError(msg)
        if (self.access_key is None) != (self.secret_key is None):
            msg = f"set both {env.AWS_ACCESS_KEY_ID} and {env.AWS_SECRET_ACCESS_KEY}, or neither"
            raise ConfigurationError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Config:
        """Read ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``.

        Args:
            environ: the variables to read (default ``os.environ``).

        Raises:
            ConfigurationError: a variable is malformed.
        """
        environ = os.environ if environ is None else environ
        url = environ.get(env.AWS_ENDPOINT_URL) or _DEFAULT_ENDPOINT
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            msg = f"{env.AWS_ENDPOINT_URL} must be http(s)://host[:port], got {url!r}"
            raise ConfigurationError(msg)
        return cls(
            endpoint=parts.netloc,
            secure=parts.scheme == "https",
            region=environ.get(env.AWS_REGION) or _DEFAULT_REGION,
            access_key=environ.get(env.AWS_ACCESS_KEY_ID) or None,
            secret_key=environ.get(env.AWS_SECRET_ACCESS_KEY) or None,
        )


def _map_error(exc: BaseException, what: str) -> ObjectStoreError:
    if isinstance(exc, S3Error) and exc.code in ("NoSuchKey", "NoSuchObject"):
        return ObjectNotFoundError(f"{what}: no such object")
    if isinstance(exc, S3Error):
        return ObjectStoreError(f"{what}: {exc.code}: {exc.message}")
    return ObjectStoreError(f"{what}: {exc}")


class S3ObjectStore:
    """Objects in an S3 bucket under an optional key prefix.

    Args:
        bucket: an existing bucket.
        prefix: prepended to every key (``lake`` → keys live under ``lake/``).
        config: endpoint and credentials (default: ``S3Config.from_env()``).

    Raises:
        ConfigurationError: the bucket name or the environment is malformed.
    """

    def __init__(self, bucket: str, prefix: str = "", config: S3Config | None = None) -> None:
        if not bucket or "/" in bucket:
            msg = f"bad S3 bucket name {bucket!r}"
            raise ConfigurationError(msg)
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except ObjectStoreError as exc:
                raise ConfigurationError(f"bad S3 key prefix {prefix!r}") from exc
        self._bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._config = config if config is not None else S3Config.from_env()
        # Our own pool manager so close() can release its sockets, with bounded timeouts
        # (minio's default waits five minutes) and retries on transient 5xx replies. A retried
        # conditional PUT whose first attempt landed gets 412 and reports False: the object
        # still holds exactly the bytes we sent, which is what callers need.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10.0, read=60.0),
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        try:
            self._client = Minio(
                self._config.endpoint,
                access_key=self._config.access_key,
                secret_key=self._config.secret_key,
                secure=self._config.secure,
                region=self._config.region,
                http_client=self._http,
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad S3 configuration: {exc}") from exc

    @classmethod
    def from_uri(cls, uri: str, config: S3Config | None = None) -> S3ObjectStore:
        """Open ``s3://bucket[/prefix]``.

        Raises:
            ConfigurationError: the URI is malformed.
        """
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            msg = f"S3 object store URI must be s3://bucket/prefix, got {uri!r}"
            raise ConfigurationError(msg)
        return cls(parts.netloc, parts.path, config)

    @property
    def uri(self) -> str:
        """``s3://bucket/prefix`` (no trailing slash)."""
        return f"s3://{self._bucket}/{self._prefix.rstrip('/')}".rstrip("/")

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def key_prefix(self) -> str:
        """What is prepended to every key (``""`` or ``"prefix/"``)."""
        return self._prefix

    @property
    def config(self) -> S3Config:
        """Endpoint and credentials (for readers that open the same bucket, e.g. DataFusion)."""
        return self._config

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    async def _call(self, what: str, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return await asyncio.to_thread(fn, *args)
        except _FOREIGN_ERRORS as exc:
            raise _map_error(exc, what) from exc

    # -- blocking helpers, run in a worker thread ------------------------------------------

    def _put_sync(self, name: str, data: bytes | memoryview) -> bool:
        # minio's public put_object turns unknown headers into x-amz-meta-* user metadata, so
        # the conditional header goes through _put_object (minio >= 7.1): one plain PUT with the
        # headers as given. The object-store tests fail loudly if a minio release changes it.
        headers = {"Content-Type": "application/octet-stream", "If-None-Match": "*"}
        for _ in range(_CONFLICT_RETRIES):
            try:
                self._client._put_object(self._bucket, name, data, headers)
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    return False  # an object is already there; it is left untouched
                if exc.code == "ConditionalRequestConflict":
                    # 409: another conditional write of this key is in flight; its outcome
                    # decides ours, so ask again (AWS documents a retry).
                    continue
                raise
            return True
        msg = f"put {name!r}: conditional write kept conflicting"
        raise ObjectStoreError(msg)

    def _get_sync(self, name: str) -> bytes:
        response = self._client.get_object(self._bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _exists_sync(self, name: str) -> bool:
        try:
            self._client.stat_object(self._bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def _delete_many_sync(self, names: list[str]) -> None:
        # One DeleteObjects request per 1000 keys (minio batches); the iterator is lazy, so it
        # must be consumed for the requests to be sent at all.
        errors = list(self._client.remove_objects(self._bucket, (DeleteObject(n) for n in names)))
        if errors:
            first = errors[0]
            msg = f"delete failed for {len(errors)} objects, first {first.name!r}: {first.code} {first.message}"
            raise ObjectStoreError(msg)

    def _sizes_sync(self, prefix: str) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for obj in self._client.list_objects(self._bucket, prefix=self._prefix + prefix, recursive=True):
            if obj.is_dir or obj.object_name is None:
                continue
            sizes[obj.object_name[len(self._prefix) :]] = obj.size or 0
        return sizes

    def _probe_sync(self) -> None:
        if not self._client.bucket_exists(self._bucket):
            msg = f"S3 bucket {self._bucket!r} does not exist"
            raise ObjectStoreError(msg)

    # -- the interface ----------------------------------------------------------------------

    async def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """See ``ObjectStore.put_if_absent``."""
        name = self._name(key)
        if len(data) > _MAX_SINGLE_PUT:
            msg = f"put {key!r}: {len(data)} bytes exceed the single-PUT limit of S3"
            raise ObjectStoreError(msg)
        # No copy: minio hashes and urllib3 sends any buffer (urllib3 2 takes a memoryview as is).
        return await self._call(f"put {key!r}", self._put_sync, name, data)

    async def get(self, key: str) -> bytes:
        """See ``ObjectStore.get``."""
        return await self._call(f"get {key!r}", self._get_sync, self._name(key))

    async def exists(self, key: str) -> bool:
        """See ``ObjectStore.exists``."""
        return await self._call(f"stat {key!r}", self._exists_sync, self._name(key))

    async def delete(self, key: str) -> None:
        """See ``ObjectStore.delete``."""
        await self._call(f"delete {key!r}", self._client.remove_object, self._bucket, self._name(key))

    async def delete_many(self, keys: Iterable[str]) -> None:
        """See ``ObjectStore.delete_many``."""
        names = [self._name(k) for k in keys]
        if names:
            await self._call("delete objects", self._delete_many_sync, names)

    async def list_keys(self, prefix: str) -> list[str]:
        """See ``ObjectStore.list_keys``."""
        validate_prefix(prefix)
        return sorted(await self._call(f"list {prefix!r}", self._sizes_sync, prefix))

    async def total_size(self, prefix: str = "") -> int:
        """See ``ObjectStore.total_size``."""
        validate_prefix(prefix)
        return sum((await self._call(f"list {prefix!r}", self._sizes_sync, prefix)).values())

    async def probe(self) -> None:
        """See ``ObjectStore.probe``; also checks that the bucket exists."""
        await self._call(f"probe bucket {self._bucket!r}", self._probe_sync)

    async def close(self) -> None:
        """See ``ObjectStore.close``."""
        self._http.clear()
