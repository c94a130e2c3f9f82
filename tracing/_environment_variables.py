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

SIRIUS_SINK_MAX_QUEUE_BYTES = "SIRIUS_SINK_MAX_QUEUE_BYTES"
"""Byte budget of the sink's queue of unsent blocks (default 64 MiB)."""
