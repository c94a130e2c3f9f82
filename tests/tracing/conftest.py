"""Fixtures of the native tracer tests; puts this folder on sys.path for the helper module and
the auto-span sample package (the suite runs with --import-mode=importlib)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from tracer_helpers import WatchedSink  # noqa: E402


@pytest.fixture
def tracer_sink():
    """A running tracer delivering to an in-memory sink; shut down afterwards."""
    from sirius import tracing

    sink = WatchedSink()
    # a long flush period: blocks are sealed by flush() only, however slow a loaded CI machine is
    tracing.init(sink=sink, properties={"test": "unit"}, flush_period=60)
    try:
        yield sink
    finally:
        tracing.stop_auto_spans()
        tracing.shutdown(timeout=10)
