"""Identity: who may call Sirius and what they may see.

Credentials (environment keys, database keys, OIDC tokens) become a :class:`Principal` through an
:class:`Authenticator`; every listener uses the same chain.
"""

from ._access import ADMINS_GROUP, AccessPolicy, as_access_policy, refusal_detail
from ._audiences import PUBLIC_AUDIENCE, AudienceGrants, read_audiences, write_audience
from ._authenticator_config import IdentityConfig, ServiceRole, build_authenticator, start_key_store, stop_key_store
from ._client_credentials import ClientCredentials
from ._env_keys import BEARER_PREFIX, EnvKeys, bearer_token
from ._exceptions import (
    AuthenticationError,
    IdentityConfigurationError,
    IdentityError,
    KeyManagementError,
    PermissionDeniedError,
)
from ._key_admin import (
    ImportedKey,
    KeyInfo,
    MintedKey,
    add_group_member,
    generate_secret,
    import_key,
    list_group_members,
    list_keys,
    mint_key,
    remove_group_member,
    revoke_key,
)
from ._key_store import DatabaseKeys, KeyKind, KeyStore, hash_secret
from ._oidc import OidcAuthenticator
from ._oidc_config import OidcIssuerSettings, OidcSettings
from ._oidc_login import LoginResult, OidcLogin
from ._principal import ANONYMOUS, Authenticator, AuthenticatorChain, Principal

__all__ = [
    "ADMINS_GROUP",
    "ANONYMOUS",
    "BEARER_PREFIX",
    "PUBLIC_AUDIENCE",
    "AccessPolicy",
    "AudienceGrants",
    "AuthenticationError",
    "Authenticator",
    "AuthenticatorChain",
    "ClientCredentials",
    "DatabaseKeys",
    "EnvKeys",
    "IdentityConfig",
    "IdentityConfigurationError",
    "IdentityError",
    "ImportedKey",
    "KeyInfo",
    "KeyKind",
    "KeyManagementError",
    "KeyStore",
    "LoginResult",
    "MintedKey",
    "OidcAuthenticator",
    "OidcIssuerSettings",
    "OidcLogin",
    "OidcSettings",
    "PermissionDeniedError",
    "Principal",
    "ServiceRole",
    "add_group_member",
    "as_access_policy",
    "bearer_token",
    "build_authenticator",
    "generate_secret",
    "hash_secret",
    "import_key",
    "list_group_members",
    "list_keys",
    "mint_key",
    "read_audiences",
    "refusal_detail",
    "remove_group_member",
    "revoke_key",
    "start_key_store",
    "stop_key_store",
    "write_audience",
]
