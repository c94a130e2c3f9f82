"""This process's identity as a Micromegas ``ProcessInfo``.

Python producers use ``time.monotonic_ns()`` as their tick source, so ``tsc_frequency`` is
1e9 and ``start_ticks`` is the monotonic reading taken together with the wall-clock start.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Mapping

from ._environment_variables import MICROMEGAS_PROCESS_PROPERTIES, MICROMEGAS_TELEMETRY_PARENT_PROCESS
from .transit import ProcessInfo

MONOTONIC_FREQUENCY = 1_000_000_000


def _cpu_brand() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def parse_properties(text: str | None) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (``MICROMEGAS_PROCESS_PROPERTIES``); malformed items are ignored.

    >>> parse_properties("team=core, env = prod ,junk")
    {'team': 'core', 'env': 'prod'}
    """
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def _parent_from_env() -> uuid.UUID | None:
    raw = os.environ.get(MICROMEGAS_TELEMETRY_PARENT_PROCESS, "").strip()
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def current_process_info(
    properties: Mapping[str, str] | None = None,
    *,
    process_id: uuid.UUID | None = None,
    parent_process_id: uuid.UUID | None = None,
    exe: str | None = None,
) -> ProcessInfo:
    """Describe the running process.

    Args:
        properties: process properties; ``MICROMEGAS_PROCESS_PROPERTIES`` is merged under them.
        process_id: defaults to a new UUIDv4.
        parent_process_id: defaults to ``MICROMEGAS_TELEMETRY_PARENT_PROCESS``.
        exe: defaults to the main script (or the interpreter).

    Returns:
        A ``ProcessInfo`` whose ticks are ``time.monotonic_ns()`` readings.
    """
    merged = parse_properties(os.environ.get(MICROMEGAS_PROCESS_PROPERTIES))
    merged.update(properties or {})
    merged.setdefault("pid", str(os.getpid()))
    start_ticks = time.monotonic_ns()
    start_time_ns = time.time_ns()
    return ProcessInfo(
        process_id=process_id or uuid.uuid4(),
        exe=exe or (os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else sys.executable),
        username=_username(),
        realname=_username(),
        computer=socket.gethostname(),
        distro=platform.platform(),
        cpu_brand=_cpu_brand(),
        tsc_frequency=MONOTONIC_FREQUENCY,
        start_time_ns=start_time_ns,
        start_ticks=start_ticks,
        parent_process_id=parent_process_id or _parent_from_env(),
        properties=merged,
    )
