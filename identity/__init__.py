"""Identity: who may call Sirius and what they may see.

Credentials (environment keys, database keys, OIDC tokens) become a :class:`Principal` through an
:class:`Authenticator`; every listener uses the same chain.
"""

from ._exceptions import AuthenticationError, IdentityConfigurationError, IdentityError, PermissionDeniedError
from ._principal import ANONYMOUS, Authenticator, AuthenticatorChain, Principal

__all__ = [
    "ANONYMOUS",
    "AuthenticationError",
    "Authenticator",
    "AuthenticatorChain",
    "IdentityConfigurationError",
    "IdentityError",
    "PermissionDeniedError",
    "Principal",
]
