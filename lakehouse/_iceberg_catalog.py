"""Where the Iceberg tables of the views live: the catalog, its namespace and file locations.

The catalog is pyiceberg's SQL catalog in the lakehouse's own PostgreSQL (its tables
``iceberg_tables`` and ``iceberg_namespace_properties`` sit beside ``lakehouse_partitions``), so
there is no catalog service to run. Table metadata (metadata JSON, manifest lists, manifests) is
written under ``<object store URI>/iceberg/<namespace>.db/<view>``; data files are the partition
files where the daemon wrote them, named by URI (``<object store URI>/<partition file_path>``).

Everything here is at the level of URIs: a store kind pyiceberg's Arrow file IO can open
(``file://``, ``s3://``, ``gs://``) works without changes; the credentials are the ones the
object store reads from the environment (``AWS_*``; Google's defaults and ``STORAGE_EMULATOR_HOST``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from . import _environment_variables as env
from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog

__all__ = ["IcebergConfig", "TableSummary", "catalog_uri_for", "open_catalog", "table_summaries"]

DEFAULT_NAMESPACE = "sirius"
CATALOG_NAME = "sirius"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"1", "true", "yes", "on"})


def catalog_uri_for(sql_connection_string: str) -> str:
    """The SQLAlchemy URI (psycopg2 driver) of the PostgreSQL behind ``sql_connection_string``.

    >>> catalog_uri_for("postgresql://postgres@127.0.0.1:5432/lake?sslmode=disable")
    'postgresql+psycopg2://postgres@127.0.0.1:5432/lake?sslmode=disable'

    Raises:
        ConfigurationError: not a ``postgres://`` or ``postgresql://`` URI.
    """
    parts = urlsplit(sql_connection_string)
    if parts.scheme not in ("postgres", "postgresql"):
        msg = f"{env.MICROMEGAS_SQL_CONNECTION_STRING} must be a postgresql:// URI"
        raise ConfigurationError(msg)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2"))


def _io_properties(object_store_uri: str, environ: Mapping[str, str]) -> dict[str, str]:
    """FileIO properties for the store's scheme, from the variables the object store reads."""
    scheme = urlsplit(object_store_uri).scheme
    props: dict[str, str] = {}
    if scheme == "s3":
        pairs = {
            "s3.endpoint": env.AWS_ENDPOINT_URL,
            "s3.access-key-id": env.AWS_ACCESS_KEY_ID,
            "s3.secret-access-key": env.AWS_SECRET_ACCESS_KEY,
            "s3.region": env.AWS_REGION,
        }
        props = {key: environ[var] for key, var in pairs.items() if environ.get(var)}
        props.setdefault("s3.region", "us-east-1")
    elif scheme == "gs" and environ.get("STORAGE_EMULATOR_HOST"):
        # pyarrow's GcsFileSystem takes a static token only with its expiry (here: far away).
        props = {
            "gcs.service.host": environ["STORAGE_EMULATOR_HOST"],
            "gcs.oauth2.token": "anonymous",
            "gcs.oauth2.token-expires-at": str(4_102_444_800_000),  # 2100-01-01, in ms
        }
    return props


@dataclass(frozen=True, slots=True)
class IcebergConfig:
    """The catalog and locations of the published tables, resolved once.

    Attributes:
        catalog_uri: SQLAlchemy URI of the catalog's PostgreSQL (``postgresql+psycopg2://…``).
        object_store_uri: the lakehouse's object store; data files are named under it.
        namespace: the Iceberg namespace of the tables (``SIRIUS_ICEBERG_NAMESPACE``).
        io_properties: pyiceberg FileIO properties (endpoint, credentials; kept out of ``repr``).
        snapshot_retention_seconds: snapshots older than this are expired (the files a merge
            retired are deleted after a while, so old snapshots would name missing files).
        catalog_name: the SQL catalog's name (rows of other names are other catalogs).
        expiry_interval_seconds: how often, at most, each table's old snapshots are expired.
    """

    catalog_uri: str
    object_store_uri: str
    namespace: str = DEFAULT_NAMESPACE
    io_properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    snapshot_retention_seconds: float = 600.0
    catalog_name: str = CATALOG_NAME
    expiry_interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.namespace or not self.namespace.replace("_", "").isalnum():
            msg = f"{env.SIRIUS_ICEBERG_NAMESPACE} must be letters, digits and _, got {self.namespace!r}"
            raise ConfigurationError(msg)
        if urlsplit(self.object_store_uri).scheme in ("", "memory"):
            msg = f"Iceberg tables need an object store readers can reach, not {self.object_store_uri!r}"
            raise ConfigurationError(msg)
        if self.snapshot_retention_seconds <= 0 or self.expiry_interval_seconds <= 0:
            msg = "snapshot_retention_seconds and expiry_interval_seconds must be positive"
            raise ConfigurationError(msg)

    @property
    def warehouse(self) -> str:
        """Root of the tables' metadata: ``<object store URI>/iceberg``."""
        return f"{self.object_store_uri.rstrip('/')}/iceberg"

    def file_uri(self, key: str) -> str:
        """URI of the object ``key`` of the store (a partition's ``file_path``)."""
        return f"{self.object_store_uri.rstrip('/')}/{key.lstrip('/')}"

    def table_identifier(self, view_set_name: str) -> str:
        """``namespace.view``."""
        return f"{self.namespace}.{view_set_name}"

    @staticmethod
    def enabled_from_env(environ: Mapping[str, str] | None = None) -> bool:
        """Whether ``SIRIUS_ICEBERG`` leaves publishing on (the default) or turns it off.

        Raises:
            ConfigurationError: the value is neither on nor off.
        """
        environ = os.environ if environ is None else environ
        raw = environ.get(env.SIRIUS_ICEBERG, "1").strip().lower()
        if raw in _ON:
            return True
        if raw in _OFF:
            return False
        msg = f"{env.SIRIUS_ICEBERG} must be 1 or 0 (on or off), got {raw!r}"
        raise ConfigurationError(msg)

    @classmethod
    def resolve(
        cls, sql_connection_string: str, object_store_uri: str, environ: Mapping[str, str] | None = None
    ) -> IcebergConfig:
        """The configuration of the lakehouse at ``sql_connection_string`` / ``object_store_uri``.

        Raises:
            ConfigurationError: a setting is malformed.
        """
        environ = os.environ if environ is None else environ
        return cls(
            catalog_uri=catalog_uri_for(sql_connection_string),
            object_store_uri=object_store_uri,
            namespace=environ.get(env.SIRIUS_ICEBERG_NAMESPACE) or DEFAULT_NAMESPACE,
            io_properties=_io_properties(object_store_uri, environ),
        )

    def catalog_properties(self) -> dict[str, str]:
        """Everything ``SqlCatalog`` (or ``load_catalog(type="sql")``) needs to open the catalog."""
        return {"uri": self.catalog_uri, "warehouse": self.warehouse, **self.io_properties}


def open_catalog(config: IcebergConfig) -> SqlCatalog:
    """The SQL catalog (creates its two tables on first use; blocking I/O).

    Raises:
        ConfigurationError: pyiceberg is not installed.
    """
    try:
        from pyiceberg.catalog.sql import SqlCatalog
    except ImportError as exc:
        msg = "Iceberg publishing needs pyiceberg: pip install 'sirius[iceberg]'"
        raise ConfigurationError(msg) from exc
    return SqlCatalog(config.catalog_name, **config.catalog_properties())


@dataclass(frozen=True, slots=True)
class TableSummary:
    """One published table: its name, snapshots, data files and rows (current snapshot)."""

    identifier: str
    snapshots: int
    data_files: int
    rows: int


def table_summaries(config: IcebergConfig) -> list[TableSummary]:
    """Every table of the namespace, by name (blocking I/O; empty if nothing was published)."""
    catalog = open_catalog(config)
    if (config.namespace,) not in catalog.list_namespaces():
        return []
    summaries = []
    for identifier in sorted(catalog.list_tables(config.namespace)):
        table = catalog.load_table(identifier)
        snapshot = table.current_snapshot()
        summary = snapshot.summary if snapshot is not None else None
        files = int(summary["total-data-files"]) if summary and "total-data-files" in summary else 0
        rows = int(summary["total-records"]) if summary and "total-records" in summary else 0
        summaries.append(TableSummary(".".join(identifier), len(table.metadata.snapshots), files, rows))
    return summaries
