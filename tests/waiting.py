"""Waiting on a condition with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_for_server", "wait_until"]


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)  # poll interval, not synchronisation: the loop waits on the condition
    raise AssertionError(f"timed out waiting for {what}; last probe: {last!r}")


def wait_for_server(server: subprocess.Popen[Any], probe: Callable[[], object], what: str, timeout: float) -> None:
    """Call ``probe`` until it stops raising ``OSError`` (the server answers).

    Raises:
        RuntimeError: the server process exited, or ``timeout`` seconds passed, first.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)  # poll interval, not synchronisation: the loop waits on the server
