"""Environment variables of ``sirius.distributed``: one documented constant each."""

from __future__ import annotations

__all__ = ["SIRIUS_SAIL_CLUSTER", "SIRIUS_SAIL_WORKERS"]

SIRIUS_SAIL_CLUSTER = "SIRIUS_SAIL_CLUSTER"
"""Spark Connect URL of the Sail cluster (``sc://127.0.0.1:50071``) on which the FlightSQL server
runs statements sent with the ``x-sirius-engine: sail`` header; unset, such statements are refused."""

SIRIUS_SAIL_WORKERS = "SIRIUS_SAIL_WORKERS"
"""Workers of the Sail ``local-cluster`` that ``sirius sail`` starts when ``--workers`` is not given (default 2)."""
