"""Identity: who may call Sirius and what they may see.

Credentials (environment keys, database keys, OIDC tokens) become a :class:`Principal` through an
:class:`Authenticator`; every listener uses the same chain.
"""

from ._access import ADMINS_GROUP, AccessPolicy, as_access_policy, refusal_detail
from ._authenticator_config import IdentityConfig, ServiceRole, build_authenticator, start_key_store, stop_key_store
from ._client_credentials import ClientCredentials
from ._env_keys import BEARER_PREFIX, EnvKeys, bearer_token
from ._exceptions import AuthenticationError, IdentityConfigurationError, IdentityError, PermissionDeniedError
from ._key_store import DatabaseKeys, KeyKind, KeyStore, hash_secret
from ._oidc import OidcAuthenticator
from ._oidc_config import OidcIssuerSettings, OidcSettings
from ._oidc_login import LoginResult, OidcLogin
from ._principal import ANONYMOUS, Authenticator, AuthenticatorChain, Principal

__all__ = [
    "ADMINS_GROUP",
    "ANONYMOUS",
    "BEARER_PREFIX",
    "AccessPolicy",
    "AuthenticationError",
    "Authenticator",
    "AuthenticatorChain",
    "ClientCredentials",
    "DatabaseKeys",
    "EnvKeys",
    "IdentityConfig",
    "IdentityConfigurationError",
    "IdentityError",
    "KeyKind",
    "KeyStore",
    "LoginResult",
    "OidcAuthenticator",
    "OidcIssuerSettings",
    "OidcLogin",
    "OidcSettings",
    "PermissionDeniedError",
    "Principal",
    "ServiceRole",
    "as_access_policy",
    "bearer_token",
    "build_authenticator",
    "hash_secret",
    "refusal_detail",
    "start_key_store",
    "stop_key_store",
]
