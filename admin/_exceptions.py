"""Exceptions of ``sirius.admin``.

::

    AdminError
     ├── EmbeddedPostgresError   no way to start the embedded PostgreSQL
     │    └── PostgresInUseError a live postmaster already holds the cluster
     ├── DataDirInUseError       another sirius process holds the data directory
     └── PortInUseError          a service's port is taken (names the flag that changes it)
"""

from __future__ import annotations


class AdminError(Exception):
    """Base class of every error raised by ``sirius.admin``."""


class EmbeddedPostgresError(AdminError):
    """The embedded PostgreSQL could not be started."""


class PostgresInUseError(EmbeddedPostgresError):
    """A running postmaster (``pid``) already serves the cluster this process was to start."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


class DataDirInUseError(AdminError):
    """Another ``sirius`` process (``pid``, None when unknown) holds the data directory."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class PortInUseError(AdminError):
    """A service cannot bind its port because something else listens there."""

    def __init__(self, service: str, port: int, flag: str) -> None:
        super().__init__(f"port {port} ({service}) is in use; pick another with {flag}")
        self.service = service
        self.port = port
        self.flag = flag
