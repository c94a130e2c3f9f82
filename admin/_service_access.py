"""The access policy of a service started by a ``sirius`` command, and the key store behind it.

``sirius up`` builds its policies in ``_stack.py``; the single-service commands (``sirius ingest``,
``otlp``, ``flight``, ``gateway``) call :func:`service_access` once at start. It resolves the
identity configuration (``MICROMEGAS_API_KEYS``, ``MICROMEGAS_ADMINS``, the database keys when the
service has a database), starts the key store, builds the one policy every listener of the
service uses, and refuses a public bind that nothing protects. :func:`close_service_access`
stops the key stores when the command ends.
"""

from __future__ import annotations

import asyncio

from ..collector import check_bind_is_safe
from ..identity import AccessPolicy, IdentityConfig, KeyStore, ServiceRole, build_authenticator, start_key_store
from ..identity import stop_key_store as _stop_key_store
from ..lakehouse import ConfigurationError, LakehouseConfig

__all__ = ["close_service_access", "first_env_key", "optional_dsn", "service_access"]

_OPEN_STORES: list[KeyStore] = []


def optional_dsn(sql_connection_string: str | None = None) -> str | None:
    """The service's database (argument, else ``MICROMEGAS_SQL_CONNECTION_STRING``), or None."""
    try:
        return LakehouseConfig.resolve_dsn(sql_connection_string)
    except ConfigurationError:
        return None


async def service_access(
    role: ServiceRole, sql_connection_string: str | None, host: str, *, disable_auth: bool
) -> AccessPolicy:
    """Start the key store (when there is a database) and build the service's access policy.

    Raises:
        IdentityConfigurationError: a malformed variable, or the key tables cannot be read.
        AuthConfigurationError: a public bind that no credential protects, without ``--disable-auth``.
    """
    config = IdentityConfig.resolve(sql_connection_string)
    store = await asyncio.to_thread(start_key_store, config)
    if store is not None:
        _OPEN_STORES.append(store)
    access = build_authenticator(config, role, store)
    check_bind_is_safe(host, access, disable_auth=disable_auth)
    return access


async def close_service_access() -> None:
    """Stop the key stores :func:`service_access` started."""
    while _OPEN_STORES:
        await asyncio.to_thread(_stop_key_store, _OPEN_STORES.pop())


def first_env_key() -> str | None:
    """The first ``MICROMEGAS_API_KEYS`` key (a service tracing itself sends with it), or None."""
    keys = IdentityConfig.resolve().env_keys.keys
    return keys[0][1] if keys else None
