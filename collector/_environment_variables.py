"""Environment variables read by ``sirius.collector``: one documented constant each, and their integer reader."""

from __future__ import annotations

import os

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

SIRIUS_INGESTION_MAX_BODY_BYTES = "SIRIUS_INGESTION_MAX_BODY_BYTES"
"""Largest body of a native ``/ingestion/insert_*``, webhook or Firehose request (default 100 MiB); larger gets 413."""

SIRIUS_INGESTION_MAX_INFLIGHT_REQUESTS = "SIRIUS_INGESTION_MAX_INFLIGHT_REQUESTS"
"""Native ingestion requests handled at once (default 64); more get 429 with ``Retry-After``."""

SIRIUS_INGESTION_MAX_INFLIGHT_BYTES = "SIRIUS_INGESTION_MAX_INFLIGHT_BYTES"
"""Body bytes of the native ingestion requests handled at once (default 256 MiB); past it, 429 with ``Retry-After``."""

SIRIUS_HTTP_FAST_LANE = "SIRIUS_HTTP_FAST_LANE"
"""``0``: aiohttp serves every HTTP request; ``1`` (default): OTLP and native ingestion POSTs are served below it."""

SIRIUS_TLS_CERT_FILE = "SIRIUS_TLS_CERT_FILE"
"""PEM certificate chain (server certificate first) every listener of the process serves TLS with."""

SIRIUS_TLS_KEY_FILE = "SIRIUS_TLS_KEY_FILE"
"""PEM private key (unencrypted) of ``SIRIUS_TLS_CERT_FILE``; both are set, or neither."""


def read_int(name: str) -> int | None:
    """The integer value of the environment variable ``name``; None when it is unset or blank.

    Raises:
        ValueError: the variable is set to something that is not an integer.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        msg = f"{name} must be an integer, got {raw!r}"
        raise ValueError(msg) from None
