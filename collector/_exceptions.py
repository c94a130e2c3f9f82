"""Exceptions of ``sirius.collector``.

::

    CollectorError
     └── AuthConfigurationError   bad MICROMEGAS_API_KEYS, or an unauthenticated public bind

Request-level problems never become exceptions that leave a handler: they are answered with
the documented HTTP status (400, 401, 413, 503) and a reason.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of every error raised by ``sirius.collector``."""


class AuthConfigurationError(CollectorError):
    """The authentication settings are malformed or unsafe for the requested bind address."""
