"""Sirius collector: network ingestion (Micromegas HTTP routes; OTLP later)."""

from __future__ import annotations

from ._auth import ApiKeys, check_bind_is_safe, is_loopback
from ._exceptions import AuthConfigurationError, CollectorError
from ._http_server import HttpServer
from ._ingestion_service import MAX_BODY_BYTES, IngestionService, block_object_key

__all__ = [
    "MAX_BODY_BYTES",
    "ApiKeys",
    "AuthConfigurationError",
    "CollectorError",
    "HttpServer",
    "IngestionService",
    "block_object_key",
    "check_bind_is_safe",
    "is_loopback",
]
