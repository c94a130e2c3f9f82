"""Environment variables read by ``sirius.tracing``: one documented constant each.

Names follow Micromegas where it has one, so an app configured for a Micromegas ingestion
service works unchanged against Sirius.
"""

from __future__ import annotations

MICROMEGAS_TELEMETRY_URL = "MICROMEGAS_TELEMETRY_URL"
"""Base URL of the ingestion service, e.g. ``http://127.0.0.1:9000``."""

MICROMEGAS_INGESTION_API_KEY = "MICROMEGAS_INGESTION_API_KEY"
"""Bearer token sent to the ingestion service."""

MICROMEGAS_PROCESS_PROPERTIES = "MICROMEGAS_PROCESS_PROPERTIES"
"""Extra process properties, ``k=v,k2=v2``, merged into ``ProcessInfo.properties``."""

MICROMEGAS_TELEMETRY_PARENT_PROCESS = "MICROMEGAS_TELEMETRY_PARENT_PROCESS"
"""Process id of the parent process, recorded as ``parent_process_id``."""

SIRIUS_TLS_CA_FILE = "SIRIUS_TLS_CA_FILE"
"""PEM bundle of the certificate authorities the sink trusts for an ``https://`` ingestion service
(default: the system's trust store); the spool flush and the in-process OTel exporters use it too."""

SIRIUS_SINK_MAX_QUEUE_BYTES = "SIRIUS_SINK_MAX_QUEUE_BYTES"
"""Byte budget of the sink's queue of unsent blocks (default 64 MiB)."""

SIRIUS_TRACING_FLUSH_PERIOD = "SIRIUS_TRACING_FLUSH_PERIOD"
"""Seconds after its first event at which the native tracer seals a block (default 1)."""

SIRIUS_TRACING_CHUNK_SIZE = "SIRIUS_TRACING_CHUNK_SIZE"
"""Bytes per chunk of a thread's event buffer (default 65536, at least 1024)."""

SIRIUS_TRACING_CHUNKS_PER_THREAD = "SIRIUS_TRACING_CHUNKS_PER_THREAD"
"""Chunks in each thread's ring (default 16, at least 2)."""

SIRIUS_TRACING_BLOCK_SIZE = "SIRIUS_TRACING_BLOCK_SIZE"
"""Uncompressed bytes of events that seal a block (default 1 MiB)."""

SIRIUS_TRACING_MAX_THREADS = "SIRIUS_TRACING_MAX_THREADS"
"""Threads traced at once; later ones stay untraced, counted (default 4096)."""

SIRIUS_TRACING_CLOCK = "SIRIUS_TRACING_CLOCK"
"""Tick source: ``auto`` (TSC when invariant), ``tsc`` or ``monotonic``."""

SIRIUS_SPOOL_DIR = "SIRIUS_SPOOL_DIR"
"""Spool of undelivered telemetry (default ``$XDG_CACHE_HOME/sirius/spool`` or
``~/.cache/sirius/spool``); ``off`` disables spooling."""

SIRIUS_SPOOL_MAX_BYTES = "SIRIUS_SPOOL_MAX_BYTES"
"""Cap on the bytes of entries in the spool (default 256 MiB); past it, blocks are dropped and counted."""

XDG_CACHE_HOME = "XDG_CACHE_HOME"
"""The user's cache directory (XDG base directory spec), under which the default spool lives."""
