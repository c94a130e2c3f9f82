"""The Azure Blob Storage object store (``az://container/prefix``), through ``obstore``.

Configuration comes from the usual ``AZURE_STORAGE_*`` variables, resolved once into
``AzureConfig``: the account (``AZURE_STORAGE_ACCOUNT_NAME``) and either its key
(``AZURE_STORAGE_ACCOUNT_KEY``) or a SAS token (``AZURE_STORAGE_SAS_TOKEN``); with neither,
``object_store`` tries the other Azure identities it knows (client secret, workload identity,
managed identity, Azure CLI) from their own ``AZURE_*`` variables. ``AZURE_STORAGE_USE_EMULATOR=true``
talks to Azurite over HTTP (``AZURITE_BLOB_STORAGE_URL``, default ``http://127.0.0.1:10000``)
with its well-known development account unless another is set.

Create-only puts send ``If-None-Match: *``; Azure answers ``409 BlobAlreadyExists``, which
``object_store`` reports as "already exists".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from obstore.store import AzureStore

from . import _environment_variables as env
from ._cloud_store import CLIENT_OPTIONS, RETRY_CONFIG, CloudObjectStore, check_location
from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from datafusion import SessionContext

__all__ = ["AzureConfig", "AzureObjectStore"]

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class AzureConfig:
    """How to reach Azure Blob Storage, resolved once.

    Attributes:
        account: the storage account, or None (required unless ``use_emulator``).
        access_key: the account key (kept out of ``repr``), or None.
        sas_token: a SAS token (kept out of ``repr``), or None.
        use_emulator: talk to Azurite over HTTP.
    """

    account: str | None = None
    access_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    use_emulator: bool = False

    def __post_init__(self) -> None:
        if self.account is None and not self.use_emulator:
            need = f"{env.AZURE_STORAGE_ACCOUNT_NAME} (or {env.AZURE_STORAGE_USE_EMULATOR}=true)"
            msg = f"az:// object stores need {need}"
            raise ConfigurationError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AzureConfig:
        """Read the ``AZURE_STORAGE_*`` variables.

        Raises:
            ConfigurationError: no account is named and no emulator is asked for.
        """
        environ = os.environ if environ is None else environ
        return cls(
            account=environ.get(env.AZURE_STORAGE_ACCOUNT_NAME) or None,
            access_key=environ.get(env.AZURE_STORAGE_ACCOUNT_KEY) or None,
            sas_token=(environ.get(env.AZURE_STORAGE_SAS_TOKEN) or "").lstrip("?") or None,
            use_emulator=(environ.get(env.AZURE_STORAGE_USE_EMULATOR) or "").lower() in _TRUE,
        )


class AzureObjectStore(CloudObjectStore):
    """Objects in an Azure Blob container under an optional key prefix.

    Args:
        container: an existing container.
        prefix: prepended to every key.
        config: account and credentials (default: ``AzureConfig.from_env()``).

    Raises:
        ConfigurationError: the container name or the environment is malformed.
    """

    def __init__(self, container: str, prefix: str = "", config: AzureConfig | None = None) -> None:
        prefix = check_location("Azure", container, prefix)
        self._config = config if config is not None else AzureConfig.from_env()
        cfg = self._config
        options: dict[str, object] = {"use_emulator": cfg.use_emulator}
        if cfg.account is not None:
            options["account_name"] = cfg.account
        if cfg.access_key is not None:
            options["account_key"] = cfg.access_key
        if cfg.sas_token is not None:
            options["sas_key"] = cfg.sas_token
        try:
            store = AzureStore(
                container,
                prefix=prefix or None,
                client_options={**CLIENT_OPTIONS, "allow_http": cfg.use_emulator},
                retry_config=RETRY_CONFIG,
                **options,  # type: ignore[arg-type]
            )
        except Exception as exc:  # obstore raises its own errors and ValueError for bad settings
            raise ConfigurationError(f"bad Azure configuration: {exc}") from exc
        super().__init__("Azure", "az", container, prefix, store)

    @classmethod
    def from_uri(cls, uri: str, config: AzureConfig | None = None) -> AzureObjectStore:
        """Open ``az://container[/prefix]``.

        Raises:
            ConfigurationError: the URI is malformed.
        """
        parts = urlsplit(uri)
        if parts.scheme != "az" or not parts.netloc or parts.query or parts.fragment:
            msg = f"Azure object store URI must be az://container/prefix, got {uri!r}"
            raise ConfigurationError(msg)
        return cls(parts.netloc, parts.path, config)

    @property
    def config(self) -> AzureConfig:
        """Account and credentials."""
        return self._config

    def register_on(self, ctx: SessionContext) -> None:
        """Register the container on a DataFusion session (``az://container/…`` URLs)."""
        from datafusion.object_store import MicrosoftAzure

        cfg = self._config
        store = MicrosoftAzure(
            container_name=self.bucket,
            account=cfg.account,
            access_key=cfg.access_key,
            sas_query_pairs=dict(parse_qsl(cfg.sas_token)) if cfg.sas_token else None,
            use_emulator=cfg.use_emulator or None,
            allow_http=cfg.use_emulator or None,
        )
        ctx.register_object_store("az://", store, self.bucket)
