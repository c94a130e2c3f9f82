"""Sirius administration: the ``sirius`` CLI, ``sirius up`` and the embedded PostgreSQL."""

from __future__ import annotations

from ._embedded_postgres import EmbeddedPostgres
from ._event_loop import SIRIUS_EVENT_LOOP, event_loop_name, run_service_loop, service_loop_factory
from ._exceptions import AdminError, DataDirInUseError, EmbeddedPostgresError, PortInUseError, PostgresInUseError

__all__ = [
    "SIRIUS_EVENT_LOOP",
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
