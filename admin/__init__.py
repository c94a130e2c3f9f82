"""Sirius administration: the ``sirius`` CLI, ``sirius up`` and the embedded PostgreSQL."""

from __future__ import annotations

from ._embedded_postgres import EmbeddedPostgres
from ._exceptions import AdminError, DataDirInUseError, EmbeddedPostgresError, PortInUseError, PostgresInUseError

__all__ = [
    "AdminError",
    "DataDirInUseError",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "PortInUseError",
    "PostgresInUseError",
]
