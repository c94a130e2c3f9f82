"""Sirius lakehouse: PostgreSQL metadata, object store, transit reader, views and ETL."""

from __future__ import annotations

from ._config import LakehouseConfig
from ._exceptions import (
    ConfigurationError,
    CorruptBlockError,
    LakehouseError,
    MetadataStoreError,
    MigrationError,
    ObjectNotFoundError,
    ObjectStoreError,
)

__all__ = [
    "ConfigurationError",
    "CorruptBlockError",
    "LakehouseConfig",
    "LakehouseError",
    "MetadataStoreError",
    "MigrationError",
    "ObjectNotFoundError",
    "ObjectStoreError",
]
