"""Sirius administration: the ``sirius`` CLI, ``sirius up`` and the embedded PostgreSQL."""

from __future__ import annotations

from ._embedded_postgres import EmbeddedPostgres
from ._event_loop import EVENT_LOOP_ENV, event_loop_name, run_service_loop, service_loop_factory
from ._exceptions import AdminError, DataDirInUseError, EmbeddedPostgresError, PortInUseError, PostgresInUseError

__all__ = [
    "EVENT_LOOP_ENV",
    "AdminError",
    "DataDirInUseError",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "PortInUseError",
    "PostgresInUseError",
    "event_loop_name",
    "run_service_loop",
    "service_loop_factory",
]
