"""The S3 / MinIO object store, through ``obstore`` (``_cloud_store``): configuration and DataFusion.

Create-only writes send ``If-None-Match: *`` on a single ``PUT``, as Micromegas's Rust
``put_if_absent`` does (``micromegas-wire.md`` §3): the server refuses to replace an existing
object with ``412 Precondition Failed``. AWS S3, current MinIO and moto (checked: 5.2.6, see
``tests/lakehouse/test_object_store.py``) honour the header. A server that ignores it would
overwrite; block payloads of a retried request are byte-identical, so that degrades to a
harmless rewrite rather than to data loss.

Credentials: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` when set; otherwise the rest of the
AWS chain as ``object_store`` resolves it (session token, web identity, container or instance
metadata).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from obstore.store import S3Store

from . import _environment_variables as env
from ._cloud_store import CLIENT_OPTIONS, RETRY_CONFIG, CloudObjectStore, check_location
from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from datafusion import SessionContext

__all__ = ["S3Config", "S3ObjectStore"]

_DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
_DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where and how to reach the S3-protocol server, resolved once.

    Attributes:
        endpoint: ``host[:port]`` of the server.
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

    @property
    def custom_endpoint(self) -> str | None:
        """``http(s)://host[:port]`` of a server other than AWS's default endpoint, else None."""
        if self.secure and self.endpoint == _DEFAULT_ENDPOINT.removeprefix("https://"):
            return None
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

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


class S3ObjectStore(CloudObjectStore):
    """Objects in an S3 bucket under an optional key prefix.

    Args:
        bucket: an existing bucket.
        prefix: prepended to every key (``lake`` → keys live under ``lake/``).
        config: endpoint and credentials (default: ``S3Config.from_env()``).

    Raises:
        ConfigurationError: the bucket name or the environment is malformed.
    """

    def __init__(self, bucket: str, prefix: str = "", config: S3Config | None = None) -> None:
        prefix = check_location("S3", bucket, prefix)
        self._config = config if config is not None else S3Config.from_env()
        cfg = self._config
        options: dict[str, object] = {"region": cfg.region}
        if cfg.custom_endpoint is not None:
            # MinIO and other S3-protocol servers: path-style requests to the given address. On
            # AWS itself object_store builds the regional endpoint (https://s3.<region>.amazonaws.com).
            options["endpoint"] = cfg.custom_endpoint
            options["virtual_hosted_style_request"] = False
        if cfg.access_key is not None and cfg.secret_key is not None:
            options["access_key_id"] = cfg.access_key
            options["secret_access_key"] = cfg.secret_key
        try:
            store = S3Store(
                bucket,
                prefix=prefix or None,
                client_options={**CLIENT_OPTIONS, "allow_http": not cfg.secure},
                retry_config=RETRY_CONFIG,
                **options,  # type: ignore[arg-type]
            )
        except Exception as exc:  # obstore raises its own errors and ValueError for bad settings
            raise ConfigurationError(f"bad S3 configuration: {exc}") from exc
        super().__init__("S3", "s3", bucket, prefix, store)

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
    def config(self) -> S3Config:
        """Endpoint and credentials (for readers that open the same bucket, e.g. DataFusion)."""
        return self._config

    def register_on(self, ctx: SessionContext) -> None:
        """Register the bucket on a DataFusion session (``s3://bucket/…`` URLs)."""
        from datafusion.object_store import AmazonS3

        cfg = self._config
        s3 = AmazonS3(
            bucket_name=self.bucket,
            region=cfg.region,
            access_key_id=cfg.access_key,
            secret_access_key=cfg.secret_key,
            session_token=(os.environ.get(env.AWS_SESSION_TOKEN) or None) if cfg.access_key else None,
            endpoint=cfg.custom_endpoint,
            allow_http=not cfg.secure,
        )
        ctx.register_object_store("s3://", s3, self.bucket)
