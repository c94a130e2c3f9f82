"""Exceptions of ``sirius.identity``.

::

    IdentityError
     ├── AuthenticationError      401 / UNAUTHENTICATED: missing, unknown, expired or forged credentials
     ├── PermissionDeniedError    403 / PERMISSION_DENIED: authenticated, but not allowed (not an admin,
     │                            another audience's process)
     └── IdentityConfigurationError   bad keys, issuer or TLS configuration, found at start
"""

from __future__ import annotations

__all__ = ["AuthenticationError", "IdentityConfigurationError", "IdentityError", "PermissionDeniedError"]


class IdentityError(Exception):
    """Base class of every error raised by ``sirius.identity``."""


class AuthenticationError(IdentityError):
    """The credential is missing or invalid; the message is the reason shown to the caller."""


class PermissionDeniedError(IdentityError):
    """The principal is authenticated but may not do this."""


class IdentityConfigurationError(IdentityError):
    """The identity configuration (keys, issuers, certificates) is unusable."""
