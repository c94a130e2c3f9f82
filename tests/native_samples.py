"""Sample registrations of a native app (``ProcessInfo``, a cpu ``StreamInfo``) for the ingestion tests.

Each call has fresh ids; keyword arguments replace fields (``dataclasses.replace``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sirius.tracing import ProcessInfo, StreamInfo
from sirius.tracing.transit._layouts import CPU

START_NS = 1_750_000_000_123_456_789
"""The sample process's start time."""


def sample_process(**changes: Any) -> ProcessInfo:
    """A process as a native app registers it."""
    process = ProcessInfo(
        process_id=uuid.uuid4(),
        exe="/usr/bin/app",
        username="alice",
        realname="Alice",
        computer="host-1",
        distro="Debian 12",
        cpu_brand="EPYC",
        tsc_frequency=2_000_000_000,
        start_time_ns=START_NS,
        start_ticks=0,
    )
    return replace(process, **changes)


def sample_cpu_stream(process: ProcessInfo, **changes: Any) -> StreamInfo:
    """A cpu (thread) stream of ``process``."""
    stream = StreamInfo(
        process_id=process.process_id,
        stream_id=uuid.uuid4(),
        dependencies_metadata=CPU.dependencies_metadata,
        objects_metadata=CPU.objects_metadata,
        tags=CPU.tags,
    )
    return replace(stream, **changes)
