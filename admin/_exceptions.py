"""Exceptions of ``sirius.admin``.

::

    AdminError
     └── EmbeddedPostgresError   no way to start the embedded PostgreSQL
"""

from __future__ import annotations


class AdminError(Exception):
    """Base class of every error raised by ``sirius.admin``."""


class EmbeddedPostgresError(AdminError):
    """The embedded PostgreSQL could not be started."""
