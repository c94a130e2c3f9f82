"""``sirius sail``: run a Sail ``local-cluster`` on loopback until interrupted, printing its address.

The address is what ``SIRIUS_SAIL_CLUSTER`` (for ``sirius flight`` / ``sirius up``) and
``sirius query --engine sail --cluster`` take.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import IO

from ._environment_variables import SIRIUS_SAIL_WORKERS
from ._exceptions import DistributedError
from ._sail_server import SailCluster, SailClusterConfig

__all__ = ["default_workers", "run_sail_command"]

_DEFAULT_WORKERS = 2


def default_workers() -> int:
    """``SIRIUS_SAIL_WORKERS``, else 2.

    Raises:
        ValueError: the variable is not a non-negative integer.
    """
    raw = os.environ.get(SIRIUS_SAIL_WORKERS, "").strip()
    if not raw:
        return _DEFAULT_WORKERS
    if not raw.isdigit():
        raise ValueError(f"{SIRIUS_SAIL_WORKERS} must be a non-negative integer, got {raw!r}")
    return int(raw)


def run_sail_command(
    workers: int | None, host: str, port: int, *, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """Start the cluster, print ``sc://host:port``, wait for SIGINT/SIGTERM, stop it; the exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        config = SailClusterConfig(workers=default_workers() if workers is None else workers, host=host, port=port)
    except ValueError as exc:
        err.write(f"sirius sail: {exc}\n")
        return 2
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    cluster = SailCluster(config)
    try:
        url = cluster.start()
        out.write(f"Sail local-cluster with {config.workers} worker(s): {url}\n")
        out.flush()
        stop.wait()
        return 0
    except DistributedError as exc:
        err.write(f"sirius sail: {exc}\n")
        return 1
    finally:
        cluster.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
