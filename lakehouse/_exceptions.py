"""Exceptions of ``sirius.lakehouse``.

::

    LakehouseError
     ├── ConfigurationError     a missing or malformed setting (URI, DSN)
     ├── ObjectStoreError       the object store failed or refused an operation
     │    └── ObjectNotFoundError
     ├── MetadataStoreError     PostgreSQL failed (connection, query)
     │    └── MigrationError    the schema could not be brought to the latest version
     ├── CorruptBlockError      a block or its stream metadata cannot be decoded
     ├── ViewError              an unknown view set, a bad instance id, a missing query range
     └── IcebergError           publishing a view as an Iceberg table failed (catalog, commit, file IO)

Foreign errors (asyncpg, obstore, OSError, lz4) are mapped to these at the module that
talks to the foreign library, with ``raise … from exc``.
"""

from __future__ import annotations


class LakehouseError(Exception):
    """Base class of every error raised by ``sirius.lakehouse``."""


class ConfigurationError(LakehouseError):
    """A setting is missing or malformed."""


class ObjectStoreError(LakehouseError):
    """The object store failed or refused an operation."""


class ObjectNotFoundError(ObjectStoreError):
    """The requested object does not exist."""


class MetadataStoreError(LakehouseError):
    """PostgreSQL failed: connection, query or constraint."""


class MigrationError(MetadataStoreError):
    """The schema could not be brought to the latest version."""


class CorruptBlockError(LakehouseError):
    """A block, its payload or its stream's metadata cannot be decoded."""


class ViewError(LakehouseError):
    """A view set or instance cannot be served: unknown name, malformed id, or a range it needs."""


class IcebergError(LakehouseError):
    """Publishing a view as an Iceberg table failed: catalog, commit or file IO (retried next pass)."""
