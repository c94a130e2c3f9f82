"""Building the one authenticator each service uses, from configuration resolved once at start.

Every listener of a service (native ingestion, OTLP gRPC and HTTP, the integration routes,
FlightSQL, the gateway and Explore) authenticates through the :class:`~sirius.identity.AccessPolicy`
built here, so a credential means the same thing everywhere::

    config = IdentityConfig.resolve(sql_connection_string)      # environment, once
    store = start_key_store(config)                             # database keys (None: no database)
    access = build_authenticator(config, ServiceRole.INGESTION, store)
    ...
    stop_key_store(store)

The policy's members are tried in order: environment keys, database keys (the table of the
service's role), then the OIDC issuers. A service without a database (a stand-alone gateway with
no ``MICROMEGAS_SQL_CONNECTION_STRING``) has no database keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ._access import AccessPolicy
from ._audiences import AudienceGrants
from ._env_keys import EnvKeys
from ._environment_variables import (
    MICROMEGAS_ADMINS,
    MICROMEGAS_API_KEY_CACHE_TTL_SECONDS,
    MICROMEGAS_API_KEYS,
    MICROMEGAS_AUDIENCE_GRANTS,
    MICROMEGAS_OIDC_CONFIG,
)
from ._exceptions import IdentityConfigurationError
from ._key_store import DatabaseKeys, KeyKind, KeyStore
from ._oidc import OidcAuthenticator
from ._oidc_config import OidcSettings, parse_admins
from ._principal import Authenticator

__all__ = [
    "IdentityConfig",
    "ServiceRole",
    "build_authenticator",
    "start_key_store",
    "stop_key_store",
]

DEFAULT_KEY_CACHE_TTL_SECONDS = 5.0


class ServiceRole(Enum):
    """What a service does, hence which database keys it accepts (Micromegas keeps them apart)."""

    INGESTION = "ingestion"
    """Native ingestion, OTLP, webhook and Firehose routes: ``ingestion_api_keys``."""
    ANALYTICS = "analytics"
    """FlightSQL, the gateway and Explore: ``analytics_api_keys``."""

    @property
    def key_kind(self) -> KeyKind:
        """The key table this role accepts."""
        return KeyKind(self.value)


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Who may call the services, resolved once at start.

    Attributes:
        env_keys: ``MICROMEGAS_API_KEYS``.
        admins: ``MICROMEGAS_ADMINS``: principal names (key names, OIDC emails or subjects)
            that are admins, besides the members of the stored ``admins`` group.
        sql_connection_string: the database holding the key tables (None: no database keys).
        key_cache_ttl_seconds: ``MICROMEGAS_API_KEY_CACHE_TTL_SECONDS``: the longest a key
            change can go unseen if PostgreSQL's notification is lost.
        oidc: ``MICROMEGAS_OIDC_CONFIG``: the OIDC issuers whose tokens are accepted (None: none).
        grants: ``MICROMEGAS_AUDIENCE_GRANTS``: read grants of audiences.
    """

    env_keys: EnvKeys = field(default_factory=EnvKeys)
    admins: frozenset[str] = frozenset()
    sql_connection_string: str | None = None
    key_cache_ttl_seconds: float = DEFAULT_KEY_CACHE_TTL_SECONDS
    oidc: OidcSettings | None = None
    grants: AudienceGrants = field(default_factory=AudienceGrants)

    @classmethod
    def resolve(
        cls,
        sql_connection_string: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> IdentityConfig:
        """Read the configuration from the environment (``environ``, default ``os.environ``).

        Args:
            sql_connection_string: the service's database, or None when it has none.
            environ: the variables to read (tests pass their own).

        Raises:
            IdentityConfigurationError: a variable is malformed.
        """
        env = os.environ if environ is None else environ
        admins = parse_admins(env.get(MICROMEGAS_ADMINS))
        oidc_text = env.get(MICROMEGAS_OIDC_CONFIG, "")
        return cls(
            env_keys=EnvKeys.parse(env.get(MICROMEGAS_API_KEYS)),
            admins=admins,
            oidc=OidcSettings.parse(oidc_text, admins) if oidc_text.strip() else None,
            sql_connection_string=sql_connection_string or None,
            key_cache_ttl_seconds=_positive_float(env, MICROMEGAS_API_KEY_CACHE_TTL_SECONDS),
            grants=AudienceGrants.parse(env.get(MICROMEGAS_AUDIENCE_GRANTS)),
        )


def _positive_float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_KEY_CACHE_TTL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        msg = f"{name} must be a positive number of seconds, got {raw!r}"
        raise IdentityConfigurationError(msg)
    return value


def start_key_store(config: IdentityConfig) -> KeyStore | None:
    """Start the database key store when the service has a database (blocking: call it off the loop).

    Raises:
        IdentityConfigurationError: PostgreSQL cannot be read.
    """
    if config.sql_connection_string is None:
        return None
    ttl = config.key_cache_ttl_seconds
    return KeyStore(config.sql_connection_string, ttl_seconds=ttl, max_staleness_seconds=max(60.0, ttl * 3)).start()


def stop_key_store(store: KeyStore | None) -> None:
    """Stop a store :func:`start_key_store` started (None is fine)."""
    if store is not None:
        store.stop()


def build_authenticator(
    config: IdentityConfig,
    role: ServiceRole,
    key_store: KeyStore | None = None,
    *,
    internal: Sequence[Authenticator] = (),
) -> AccessPolicy:
    """The access policy of a service of ``role``: every listener of the service uses it.

    Members, in order: ``MICROMEGAS_API_KEYS`` (when set), then the database keys of the role's
    table (when ``key_store`` is given). Further authenticators (OIDC issuers) are appended to
    ``members`` the same way, each with whether it can name admins by itself. ``internal``
    authenticators come last: credentials of the process's own clients (``sirius up`` tracing
    itself), accepted but never what turns authentication on.
    """
    members: list[Authenticator] = []
    always_enforced = False  # a credential configured outside the database: requests need one
    admin_possible = False  # a member can name admins itself (OIDC with MICROMEGAS_ADMINS)
    if config.env_keys.enabled:
        members.append(config.env_keys)
        always_enforced = True
    if key_store is not None:
        members.append(DatabaseKeys(key_store, role.key_kind))
    if config.oidc is not None:  # JWTs only: API keys (mmk_…, env keys) pass through it untouched
        oidc = OidcAuthenticator(config.oidc)
        members.append(oidc)
        always_enforced = True
        admin_possible = oidc.can_grant_admin
    members.extend(internal)
    return AccessPolicy(
        members,
        admins=config.admins,
        directory=key_store,
        always_enforced=always_enforced,
        admin_possible=admin_possible,
        grants=config.grants,
    )
