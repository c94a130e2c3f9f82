"""Environment variables read by ``sirius.collector``: one documented constant each."""

from __future__ import annotations

MICROMEGAS_API_KEYS = "MICROMEGAS_API_KEYS"
"""JSON list of ``{"name": …, "key": …}``: Bearer keys accepted by the ingestion routes."""

MICROMEGAS_SHUTDOWN_GRACE_PERIOD_SECONDS = "MICROMEGAS_SHUTDOWN_GRACE_PERIOD_SECONDS"
"""How long a stopping service waits for in-flight requests (default 25 s, as Micromegas)."""
