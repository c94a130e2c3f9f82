"""Waiting on a condition with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_until"]


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
