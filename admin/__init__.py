"""Sirius administration: the ``sirius`` CLI, ``sirius up`` and the embedded PostgreSQL."""

from __future__ import annotations

from ._embedded_postgres import EmbeddedPostgres
from ._exceptions import AdminError, EmbeddedPostgresError

__all__ = ["AdminError", "EmbeddedPostgres", "EmbeddedPostgresError"]
