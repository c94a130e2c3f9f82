"""The exception hierarchy of ``sirius.distributed``."""

from __future__ import annotations

__all__ = ["ClusterError", "DistributedError", "EngineUnavailableError", "StatementError", "UnreadableStoreError"]


class DistributedError(Exception):
    """Base class of every error of ``sirius.distributed``."""


class EngineUnavailableError(DistributedError):
    """The distributed engine's packages are not installed (``pip install 'sirius[distributed]'``)."""


class ClusterError(DistributedError):
    """The Sail server could not be started, reached, or failed a statement."""


class UnreadableStoreError(DistributedError):
    """The lakehouse's store has no location Sail can read (the in-memory store of tests and demos)."""


class StatementError(DistributedError, ValueError):
    """The statement calls one of our functions wrongly (found before it reaches the cluster)."""
