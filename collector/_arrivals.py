"""Console lines that answer "did my data arrive?": one INFO line per process seen for the first time.

Both ingestion paths (the native Micromegas routes and the OTLP receivers) register processes in
PostgreSQL with ``ON CONFLICT DO NOTHING``; when the insert actually created the row, the service
logs it here. Blocks are never logged one by one (the maintenance daemon logs a summary per pass).
"""

from __future__ import annotations

import logging

from ..tracing import ProcessInfo

__all__ = ["log_new_process"]

_LOG = logging.getLogger("sirius.collector.arrivals")


def log_new_process(info: ProcessInfo, source: str) -> None:
    """Log a process registered for the first time.

    Args:
        info: the process (``exe`` is the OTel ``service.name`` for OTLP data).
        source: how it arrived, e.g. ``"ingestion (native)"`` or ``"OTLP traces"``.
    """
    where = "".join(
        f" {name}={value}" for name, value in (("computer", info.computer), ("user", info.username)) if value
    )
    _LOG.info("new process %s: process_id=%s%s via %s", info.exe or "(no exe)", info.process_id, where, source)
