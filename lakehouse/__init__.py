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
from ._tick_converter import TickConverter, estimate_frequency
from ._transit_dependencies import Dependencies
from ._transit_reader import POSITION, DecodedBlock, decode_block, decode_queues

__all__ = [
    "DATA_LAKE_SCHEMA_VERSION",
    "LAKEHOUSE_SCHEMA_VERSION",
    "POSITION",
    "BlockRecord",
    "ConfigurationError",
    "CorruptBlockError",
    "DataLake",
    "DecodedBlock",
    "Dependencies",
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
    "TickConverter",
    "create_pool",
    "decode_block",
    "decode_queues",
    "estimate_frequency",
    "migrate",
    "open_object_store",
    "schema_versions",
]
