"""Exceptions of ``sirius.identity``.

::

    IdentityError
     ├── AuthenticationError      401 / UNAUTHENTICATED: missing, unknown, expired or forged credentials
     ├── PermissionDeniedError    403 / PERMISSION_DENIED: authenticated, but not allowed (not an admin,
     │                            another audience's process)
     ├── IdentityConfigurationError   bad keys, issuer or TLS configuration, found at start
     └── KeyManagementError   a refused key or group change (bad name or audience, unknown key id)
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "IdentityConfigurationError",
    "IdentityError",
    "KeyManagementError",
    "PermissionDeniedError",
]


class IdentityError(Exception):
    """Base class of every error raised by ``sirius.identity``."""


class AuthenticationError(IdentityError):
    """The credential is missing or invalid; the message is the reason shown to the caller."""


class PermissionDeniedError(IdentityError):
    """The principal is authenticated but may not do this."""


class IdentityConfigurationError(IdentityError):
    """The identity configuration (keys, issuers, certificates) is unusable."""


class KeyManagementError(IdentityError):
    """A key or group change was refused; nothing was changed. The message says why."""
