"""Sirius lakehouse: PostgreSQL metadata, object store, transit reader, views and ETL."""

from __future__ import annotations

from ._config import LakehouseConfig
from ._datalake import BlockRecord, DataLake, ProcessRecord, StreamRecord
from ._exceptions import (
    ConfigurationError,
    CorruptBlockError,
    LakehouseError,
    MetadataStoreError,
    MigrationError,
    ObjectNotFoundError,
    ObjectStoreError,
)
from ._migrations import DATA_LAKE_SCHEMA_VERSION, LAKEHOUSE_SCHEMA_VERSION, migrate, schema_versions
from ._object_store import InMemoryObjectStore, LocalObjectStore, ObjectStore, open_object_store
from ._pool import create_pool

__all__ = [
    "DATA_LAKE_SCHEMA_VERSION",
    "LAKEHOUSE_SCHEMA_VERSION",
    "BlockRecord",
    "ConfigurationError",
    "CorruptBlockError",
    "DataLake",
    "InMemoryObjectStore",
    "LakehouseConfig",
    "LakehouseError",
    "LocalObjectStore",
    "MetadataStoreError",
    "MigrationError",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "ProcessRecord",
    "StreamRecord",
    "create_pool",
    "migrate",
    "open_object_store",
    "schema_versions",
]
