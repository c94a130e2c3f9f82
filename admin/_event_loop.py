"""The event loop the services run on: uvloop when it is installed, asyncio's own loop otherwise.

uvloop (libuv) runs the loop's socket I/O in C and calls ``send``/``recv`` without releasing the
GIL. That matters for the ingestion service: every GIL release on the loop thread lets one of the
object store's writer threads take the GIL, and under load the loop then waits for the OS to run
that thread again before it can go on (``bench/README.md``, ``bench/ingest.py``). aiohttp,
asyncpg and grpc.aio (the OTLP gRPC receiver, which shares the loop in ``sirius up``) all run on
it.

``SIRIUS_EVENT_LOOP=asyncio`` picks asyncio's loop even when uvloop is installed (a fallback if a
platform's uvloop misbehaves, and the baseline of the benchmark); ``uvloop`` requires it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["SIRIUS_EVENT_LOOP", "event_loop_name", "run_service_loop", "service_loop_factory"]

SIRIUS_EVENT_LOOP = "SIRIUS_EVENT_LOOP"
"""Env var: the services' event loop, ``auto`` (default), ``uvloop`` or ``asyncio`` (docs/configuration.md)."""

_CHOICES = ("auto", "uvloop", "asyncio")
_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")


def service_loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the services' loops, or None for asyncio's default loop.

    Args:
        choice: ``auto`` (uvloop when importable), ``uvloop`` or ``asyncio``; None reads
            ``SIRIUS_EVENT_LOOP`` (default ``auto``).

    Raises:
        ValueError: an unknown choice.
        ImportError: ``uvloop`` asked for and not installed.
    """
    choice = (choice or os.environ.get(SIRIUS_EVENT_LOOP) or "auto").strip().lower()
    if choice not in _CHOICES:
        msg = f"{SIRIUS_EVENT_LOOP} must be one of {', '.join(_CHOICES)}, not {choice!r}"
        raise ValueError(msg)
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise
        _LOG.debug("uvloop is not installed: the services run on asyncio's event loop")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def event_loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: which implementation ``loop`` is."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run_service_loop(main: Coroutine[Any, Any, _T], choice: str | None = None) -> _T:
    """Run ``main`` to completion on a new service loop (as ``asyncio.run`` does)."""
    with asyncio.Runner(loop_factory=service_loop_factory(choice)) as runner:
        return runner.run(main)
