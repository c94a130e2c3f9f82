"""The Google Cloud Storage object store (``gs://bucket/prefix``), through ``obstore``.

Credentials, resolved once into ``GCSConfig``: a service-account JSON file named by
``GOOGLE_SERVICE_ACCOUNT`` or ``GOOGLE_APPLICATION_CREDENTIALS`` (which may also name a user's
``authorized_user`` login file), or the key's text in ``GOOGLE_SERVICE_ACCOUNT_KEY``; with none of
them, ``object_store`` uses gcloud's application default credentials, then the metadata server of
the VM the service runs on.

``STORAGE_EMULATOR_HOST`` (the Google client libraries' convention) points every part of Sirius
at an emulator instead: the services' store and DataFusion's reader get a service-account JSON
whose ``gcs_base_url`` is the emulator and whose ``disable_oauth`` keeps anything from asking a
metadata server for a token. On an emulator one call takes another road: ``object_store`` uploads
through GCS's XML API, which fake-gcs-server does not implement (its issue #331), so the
create-only put goes through the JSON API's multipart upload with ``ifGenerationMatch=0``, the
same precondition the XML API's ``x-goog-if-generation-match: 0`` carries on real GCS.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from obstore.store import GCSStore

from . import _environment_variables as env
from ._cloud_store import CLIENT_OPTIONS, RETRY_CONFIG, CloudObjectStore, check_location
from ._exceptions import ConfigurationError, ObjectStoreError

if TYPE_CHECKING:
    from datafusion import SessionContext

__all__ = ["GCSConfig", "GCSObjectStore"]

_EMULATOR_TIMEOUT = 60.0
_files_lock = threading.Lock()
_credential_files: dict[str, str] = {}  # JSON text -> the file holding it (DataFusion reads a path)


@dataclass(frozen=True, slots=True)
class GCSConfig:
    """How to reach GCS, resolved once.

    Attributes:
        emulator_url: ``http(s)://host:port`` of an emulator, or None for Google's service.
        service_account_path: a service-account JSON file, or None.
        service_account_key: a service-account JSON text (kept out of ``repr``), or None.
        user_credentials_path: an ``authorized_user`` credentials file (``gcloud auth
            application-default login``) named by ``GOOGLE_APPLICATION_CREDENTIALS``, or None.
    """

    emulator_url: str | None = None
    service_account_path: str | None = None
    service_account_key: str | None = field(default=None, repr=False)
    user_credentials_path: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GCSConfig:
        """Read ``STORAGE_EMULATOR_HOST`` and the Google credential variables.

        Raises:
            ConfigurationError: the emulator address is malformed.
        """
        environ = os.environ if environ is None else environ
        emulator = environ.get(env.STORAGE_EMULATOR_HOST) or None
        if emulator is not None:
            # The client libraries accept host:port as well as a URL.
            url = emulator if "://" in emulator else f"http://{emulator}"
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                msg = f"{env.STORAGE_EMULATOR_HOST} must be http(s)://host:port, got {emulator!r}"
                raise ConfigurationError(msg)
            emulator = f"{parts.scheme}://{parts.netloc}"
        path = environ.get(env.GOOGLE_SERVICE_ACCOUNT) or None
        user_path = None
        adc = environ.get(env.GOOGLE_APPLICATION_CREDENTIALS) or None
        if path is None and adc is not None:
            # Application Default Credentials are a service-account key or a user's login.
            if _credential_type(adc) == "authorized_user":
                user_path = adc
            else:
                path = adc
        return cls(
            emulator_url=emulator,
            service_account_path=path,
            service_account_key=environ.get(env.GOOGLE_SERVICE_ACCOUNT_KEY) or None,
            user_credentials_path=user_path,
        )

    def emulator_credentials(self) -> str | None:
        """The service-account JSON that points ``object_store`` at the emulator, if one is set."""
        if self.emulator_url is None:
            return None
        # client_email/private_key(_id) are required fields of the format; with disable_oauth they
        # are never used to sign anything.
        fields = {
            "gcs_base_url": self.emulator_url,
            "disable_oauth": True,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        }
        return json.dumps(fields, sort_keys=True)


def _credential_type(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as source:
            kind = json.load(source).get("type")
    except (OSError, ValueError, AttributeError) as exc:
        msg = f"{env.GOOGLE_APPLICATION_CREDENTIALS}: cannot read a JSON credentials file at {path!r}: {exc}"
        raise ConfigurationError(msg) from exc
    return kind if isinstance(kind, str) else None


def _credentials_file(text: str) -> str:
    """A private file holding ``text``, written once per process (DataFusion takes only a path)."""
    with _files_lock:
        path = _credential_files.get(text)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="sirius-gcs-", suffix=".json")  # mode 0600
            with os.fdopen(fd, "w") as out:
                out.write(text)
            _credential_files[text] = path
        return path


class GCSObjectStore(CloudObjectStore):
    """Objects in a GCS bucket under an optional key prefix.

    Args:
        bucket: an existing bucket.
        prefix: prepended to every key.
        config: emulator and credentials (default: ``GCSConfig.from_env()``).

    Raises:
        ConfigurationError: the bucket name or the environment is malformed.
    """

    def __init__(self, bucket: str, prefix: str = "", config: GCSConfig | None = None) -> None:
        prefix = check_location("GCS", bucket, prefix)
        self._config = config if config is not None else GCSConfig.from_env()
        cfg = self._config
        options: dict[str, object] = {}
        emulator_key = cfg.emulator_credentials()
        if emulator_key is not None:
            options["service_account_key"] = emulator_key
        elif cfg.service_account_key is not None:
            options["service_account_key"] = cfg.service_account_key
        elif cfg.service_account_path is not None:
            options["service_account"] = cfg.service_account_path
        elif cfg.user_credentials_path is not None:
            options["application_credentials"] = cfg.user_credentials_path
        allow_http = cfg.emulator_url is not None and cfg.emulator_url.startswith("http://")
        try:
            store = GCSStore(
                bucket,
                prefix=prefix or None,
                client_options={**CLIENT_OPTIONS, "allow_http": allow_http},
                retry_config=RETRY_CONFIG,
                **options,  # type: ignore[arg-type]
            )
        except Exception as exc:  # obstore raises its own errors and ValueError for bad settings
            raise ConfigurationError(f"bad GCS configuration: {exc}") from exc
        super().__init__("GCS", "gs", bucket, prefix, store)

    @classmethod
    def from_uri(cls, uri: str, config: GCSConfig | None = None) -> GCSObjectStore:
        """Open ``gs://bucket[/prefix]``.

        Raises:
            ConfigurationError: the URI is malformed.
        """
        parts = urlsplit(uri)
        if parts.scheme != "gs" or not parts.netloc or parts.query or parts.fragment:
            msg = f"GCS object store URI must be gs://bucket/prefix, got {uri!r}"
            raise ConfigurationError(msg)
        return cls(parts.netloc, parts.path, config)

    @property
    def config(self) -> GCSConfig:
        """Emulator and credentials."""
        return self._config

    def register_on(self, ctx: SessionContext) -> None:
        """Register the bucket on a DataFusion session (``gs://bucket/…`` URLs)."""
        from datafusion.object_store import GoogleCloud

        cfg = self._config
        # DataFusion's GoogleCloud takes a service-account file or nothing; with nothing it
        # finds gcloud's own login file and then the metadata server, not a user file named by
        # GOOGLE_APPLICATION_CREDENTIALS elsewhere (docs/configuration.md says so).
        path = cfg.service_account_path
        text = cfg.emulator_credentials() or cfg.service_account_key
        if text is not None:
            path = _credentials_file(text)
        ctx.register_object_store("gs://", GoogleCloud(bucket_name=self.bucket, service_account_path=path), self.bucket)

    async def _put_create(self, key: str, data: bytes | memoryview) -> bool:
        if self._config.emulator_url is None:
            return await super()._put_create(key, data)
        return await asyncio.to_thread(self._emulator_put_sync, self._prefix + key, data)

    def _emulator_put_sync(self, name: str, data: bytes | memoryview) -> bool:
        boundary = f"sirius-{uuid.uuid4().hex}"
        metadata = json.dumps({"name": name, "contentType": "application/octet-stream"})
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n".encode(),
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        url = (
            f"{self._config.emulator_url}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
            "?uploadType=multipart&ifGenerationMatch=0"
        )
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s)
            url, data=body, method="POST", headers={"Content-Type": f"multipart/related; boundary={boundary}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_EMULATOR_TIMEOUT) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 412:
                return False  # ifGenerationMatch=0 failed: an object is already there
            msg = f"GCS put {name!r}: HTTP {exc.code} {exc.reason}"
            raise ObjectStoreError(msg) from exc
        except OSError as exc:
            msg = f"GCS put {name!r}: {exc}"
            raise ObjectStoreError(msg) from exc
        return True
