"""Environment variables read by ``sirius.collector``: one documented constant each."""

from __future__ import annotations

MICROMEGAS_API_KEYS = "MICROMEGAS_API_KEYS"
"""JSON list of ``{"name": …, "key": …}``: Bearer keys accepted by the ingestion routes."""

MICROMEGAS_SHUTDOWN_GRACE_PERIOD_SECONDS = "MICROMEGAS_SHUTDOWN_GRACE_PERIOD_SECONDS"
"""How long a stopping service waits for in-flight requests (default 25 s, as Micromegas)."""

SIRIUS_OTLP_MAX_REQUEST_BYTES = "SIRIUS_OTLP_MAX_REQUEST_BYTES"
"""Largest OTLP request accepted, after decompression (default 64 MiB); larger gets 413 / RESOURCE_EXHAUSTED."""

SIRIUS_OTLP_MAX_INFLIGHT_REQUESTS = "SIRIUS_OTLP_MAX_INFLIGHT_REQUESTS"
"""OTLP requests handled at once per service (default 64); more get 429 / UNAVAILABLE with a retry delay."""

SIRIUS_OTLP_MAX_INFLIGHT_BYTES = "SIRIUS_OTLP_MAX_INFLIGHT_BYTES"
"""Decompressed bytes of the OTLP requests handled at once (default 256 MiB); past it, 429 / UNAVAILABLE."""
