"""Publishing the global views as Iceberg tables: each table lists exactly the view's partition files.

After a daemon pass the publisher reconciles, for every global view, two lists: the view's
committed partitions in PostgreSQL (the same selection as a query session: the global instance,
the view's current schema, non-empty) and the data files of the view's Iceberg table. Files the
view has and the table lacks are registered as they are (their Parquet footer gives the row
count and column bounds; nothing is rewritten); files the table has and the view no longer has
(merged into a longer partition, retired, expired) are removed from the table. Both go into one
snapshot, so a reader never sees a merged file next to its sources.

Comparing the lists, never replaying what a pass did, makes publishing idempotent and
self-repairing: a daemon killed between its partition commit and its Iceberg commit leaves a
difference the next pass of any daemon closes. A view whose definition changed schema gets a new
table; tables of views that no longer exist are dropped.

One publisher works at a time across all daemons (a session advisory lock; the others skip, the
next pass catches up). Iceberg commits are optimistic besides: a commit that lost a race is
retried on the refreshed table. Snapshots older than ``snapshot_retention_seconds`` are expired,
since merged-away files are deleted from the store after a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import logging
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from ._exceptions import IcebergError, LakehouseError
from ._iceberg_catalog import IcebergConfig, open_catalog
from ._iceberg_schema import iceberg_schema, schema_shape, table_properties
from ._partitions import Partition, partitions_for_query
from ._pool import pg_errors
from ._view_set import GLOBAL_INSTANCE

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

    from ._lakehouse import Lakehouse
    from ._view_set import ViewSet

__all__ = ["IcebergPublisher", "PublishReport", "TablePublish", "publish_lock_key", "publisher_from_env"]

_log = logging.getLogger(__name__)

_PUBLISHED_BY = "sirius.published-by"
_PUBLISHABLE_SCHEMES = ("file", "s3", "gs")
"""Store schemes pyiceberg's Arrow file IO writes (``az://`` is not one: Azure stores are skipped)."""


def publish_lock_key() -> int:
    """Advisory-lock key held by the one publisher at work."""
    digest = hashlib.blake2b(b"iceberg publisher", digest_size=8).digest()
    return int(struct.unpack("<q", digest)[0])


@contextlib.asynccontextmanager
async def _publish_lease(pool: asyncpg.Pool) -> AsyncIterator[bool]:
    """Hold the publisher lock for the block if no other publisher does; yield whether held."""
    key = publish_lock_key()
    with pg_errors("taking the Iceberg publisher lock"):
        conn = await pool.acquire()
    try:
        with pg_errors("taking the Iceberg publisher lock"):
            held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        if held:
            try:
                yield True
            finally:
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)
        else:
            yield False
    finally:
        await pool.release(conn)


@dataclass(frozen=True, slots=True)
class TablePublish:
    """What publishing did to one table.

    Attributes:
        identifier: ``namespace.view``.
        added: data files registered.
        removed: data files removed.
        data_files: data files in the table afterwards.
        snapshot_id: the current snapshot afterwards (None: the view has no partition yet).
        attempts: commits tried (more than one when another writer committed first).
        created: the table was created (first publish, or a new schema).
    """

    identifier: str
    added: int
    removed: int
    data_files: int
    snapshot_id: int | None
    attempts: int = 0
    created: bool = False


@dataclass(slots=True)
class PublishReport:
    """One publish: per view, its table; failures by view; tables dropped; or skipped."""

    tables: dict[str, TablePublish] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    skipped: bool = False
    elapsed_seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether any table was created, changed or dropped."""
        return bool(self.dropped) or any(t.added or t.removed or t.created for t in self.tables.values())


class IcebergPublisher:
    """Keeps the Iceberg tables of a lakehouse's global views equal to the views.

    Args:
        config: catalog, namespace and locations.
        max_commit_attempts: commits tried per table per publish before giving up until the next.
    """

    def __init__(self, config: IcebergConfig, *, max_commit_attempts: int = 5) -> None:
        if max_commit_attempts < 1:
            msg = "max_commit_attempts must be at least 1"
            raise ValueError(msg)
        self.config = config
        self._max_attempts = max_commit_attempts
        self._catalog: SqlCatalog | None = None
        self._lock = asyncio.Lock()
        # Per table: the snapshot whose file list (URIs) we know, that list, and the view's schema
        # hash when last published: an unchanged table is compared without pyiceberg.
        self._known: dict[str, tuple[int | None, frozenset[str]]] = {}
        self._schema_hashes: dict[str, bytes] = {}
        self._last_expiry: dict[str, float] = {}
        # Per snapshot (immutable): the metadata files it names, its manifest list first.
        self._snapshot_files: dict[int, frozenset[str]] = {}
        # Per table: the metadata file this publisher last left it at (or found it at).
        self._locations: dict[str, str] = {}

    async def publish(self, lake: Lakehouse) -> PublishReport:
        """Reconcile every global view's table with the view's committed partitions.

        A view that fails is reported in ``failures`` and retried by the next publish.

        Raises:
            MetadataStoreError: PostgreSQL failed while reading the partitions or the lock.
        """
        report = PublishReport()
        started = time.monotonic()
        async with self._lock, _publish_lease(lake.pool) as held:
            if not held:
                report.skipped = True
                return report
            views = lake.views.global_views()
            found = await partitions_for_query(
                lake.pool, [(v.name, v.file_schema_hash) for v in views], GLOBAL_INSTANCE, None
            )
            locations = await self._metadata_locations(lake.pool)
            pending = []
            for view in views:
                want = {self.config.file_uri(p.file_path): p for p in found[view.name] if p.file_path}
                unchanged = self._unchanged(view, want, locations.get(view.name))
                if unchanged is not None:
                    report.tables[view.name] = unchanged
                else:
                    pending.append((view, want))
            try:
                if pending:
                    await asyncio.to_thread(self._open)
                # Tables are independent: their commits run side by side.
                results = await asyncio.gather(
                    *(asyncio.to_thread(self._reconcile, v.name, v.schema, want) for v, want in pending),
                    return_exceptions=True,
                )
            except LakehouseError as exc:
                results = [exc] * len(pending)
            for (view, _), result in zip(pending, results, strict=True):
                if isinstance(result, LakehouseError):
                    report.failures[view.name] = str(result)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    report.tables[view.name] = result
                    self._schema_hashes[view.name] = view.file_schema_hash
            if set(locations) - {v.name for v in views}:
                try:
                    report.dropped = await asyncio.to_thread(self._drop_stale, {v.name for v in views})
                except LakehouseError as exc:
                    report.failures["(dropping old tables)"] = str(exc)
        report.elapsed_seconds = time.monotonic() - started
        return report

    async def _metadata_locations(self, pool: asyncpg.Pool) -> dict[str, str]:
        """Each table's current metadata file, from the catalog's rows: one query tells what changed."""
        try:
            with pg_errors("reading the Iceberg catalog"):
                rows = await pool.fetch(
                    "SELECT table_name, metadata_location FROM iceberg_tables"
                    " WHERE catalog_name = $1 AND table_namespace = $2",
                    self.config.catalog_name,
                    self.config.namespace,
                )
        except LakehouseError as exc:
            if isinstance(exc.__cause__, asyncpg.UndefinedTableError):
                return {}  # no catalog yet: the first publish creates it
            raise
        return {r["table_name"]: r["metadata_location"] for r in rows}

    def _unchanged(self, view: ViewSet, want: Mapping[str, Partition], location: str | None) -> TablePublish | None:
        """The result of a publish that has nothing to do, when that is known without pyiceberg."""
        known, name = self._known.get(view.name), view.name
        if location is None or known is None or self._locations.get(name) != location or known[1] != want.keys():
            return None
        if self._schema_hashes.get(name) != view.file_schema_hash:
            return None  # a redefined view: its table may need the new schema
        return TablePublish(self.config.table_identifier(name), 0, 0, len(known[1]), known[0])

    async def close(self) -> None:
        """Close the catalog's database connections (the publisher reopens them if used again)."""
        async with self._lock:
            catalog, self._catalog = self._catalog, None
            if catalog is not None:
                await asyncio.to_thread(catalog.engine.dispose)

    # -- blocking part: worker threads, one table per thread, one publish at a time --------------

    def _open(self) -> SqlCatalog:
        if self._catalog is None:
            catalog = _guard("opening the Iceberg catalog", open_catalog, self.config)
            _guard("creating the Iceberg namespace", catalog.create_namespace_if_not_exists, self.config.namespace)
            self._catalog = catalog
        return self._catalog

    def _table(self, name: str, schema: pa.Schema) -> tuple[Table, bool]:
        """The view's table, created (or replaced, when the view's schema changed) as needed."""
        from pyiceberg.exceptions import NoSuchTableError

        catalog = self._open()
        identifier = self.config.table_identifier(name)
        expected = iceberg_schema(schema)
        try:
            table = _guard(f"loading table {identifier}", catalog.load_table, identifier)
        except IcebergError as exc:
            if not isinstance(exc.__cause__, NoSuchTableError):
                raise
        else:
            if schema_shape(table.schema()) == schema_shape(expected):
                wanted = table_properties(expected)
                stale = {k: v for k, v in wanted.items() if k != "format-version" and table.properties.get(k) != v}
                if stale:  # a table of an older Sirius: bring its properties up to date
                    update = table.transaction().set_properties(stale)
                    _guard(f"updating the properties of {identifier}", update.commit_transaction)
                return table, False
            _guard(f"dropping table {identifier} (schema changed)", catalog.drop_table, identifier)
            self._known.pop(name, None)
        properties = table_properties(expected)
        try:
            created = catalog.create_table(identifier, schema=expected, properties=properties)
        except Exception as exc:  # another publisher created it first, or the catalog failed
            with contextlib.suppress(Exception):
                return catalog.load_table(identifier), False
            raise IcebergError(f"creating table {identifier}: {exc}") from exc
        return created, True

    def _files(self, name: str, table: Table) -> frozenset[str]:
        """URIs of the table's data files (cached per snapshot)."""
        snapshot_id = _snapshot_id(table)
        known = self._known.get(name)
        if known is not None and known[0] == snapshot_id:
            return known[1]
        files = frozenset(_entries(table))
        self._known[name] = (snapshot_id, files)
        return files

    def _reconcile(self, name: str, schema: pa.Schema, want: Mapping[str, Partition]) -> TablePublish:
        from pyiceberg.exceptions import CommitFailedException

        built: dict[str, DataFile] = {}
        identifier = self.config.table_identifier(name)
        for attempt in range(1, self._max_attempts + 1):
            table, created = self._table(name, schema)
            have = self._files(name, table)
            adds = sorted(want.keys() - have)
            removes = sorted(have - want.keys())
            if not adds and not removes:
                self._locations[name] = table.metadata_location
                return TablePublish(identifier, 0, 0, len(have), _snapshot_id(table), attempt - 1, created)
            for uri in adds:
                if uri not in built:
                    built[uri] = _data_file(table, uri, want[uri], schema)
            # The entries to remove as the manifests hold them (what an overwrite matches).
            entries = _entries(table) if removes else {}
            try:
                _commit(table, [built[u] for u in adds], [entries[u] for u in removes])
            except CommitFailedException:
                self._known.pop(name, None)
                continue
            except Exception as exc:
                self._known.pop(name, None)
                raise IcebergError(f"committing to {identifier}: {exc}") from exc
            have = (have - set(removes)) | set(adds)
            self._known[name] = (_snapshot_id(table), have)
            self._expire(name, table)
            self._locations[name] = table.metadata_location
            return TablePublish(identifier, len(adds), len(removes), len(have), _snapshot_id(table), attempt, created)
        msg = f"{identifier}: {self._max_attempts} commits lost to concurrent writers; retrying next pass"
        raise IcebergError(msg)

    def _expire(self, name: str, table: Table) -> None:
        """Expire old snapshots (at most once per ``expiry_interval_seconds`` per table) and their files.

        Iceberg's expiry only edits the metadata; the manifest lists of the expired snapshots and
        the manifests no remaining snapshot names are deleted here, or every publish would leave
        a few files in the store forever. Data files are the lakehouse's and are never touched.
        Best effort: a failure leaves old snapshots or files for the next expiry.
        """
        now = time.monotonic()
        if now - self._last_expiry.get(name, 0.0) < self.config.expiry_interval_seconds:
            return
        self._last_expiry[name] = now
        horizon = datetime.now(UTC) - timedelta(seconds=self.config.snapshot_retention_seconds)
        before = list(table.metadata.snapshots)
        try:
            table.maintenance.expire_snapshots().older_than(horizon).commit()
        except Exception:  # noqa: BLE001 - best effort, see above
            _log.debug("expiring snapshots of %s failed", name, exc_info=True)
            return
        remaining = {s.snapshot_id for s in table.metadata.snapshots}
        expired = [s for s in before if s.snapshot_id not in remaining]
        if not expired:
            return
        try:
            keep = frozenset().union(*(self._metadata_files(table, s) for s in table.metadata.snapshots))
            drop = frozenset().union(*(self._metadata_files(table, s) for s in expired))
        except Exception:  # noqa: BLE001 - best effort: without the full picture, delete nothing
            _log.debug("listing the metadata files of %s failed", name, exc_info=True)
            return
        for path in sorted(drop - keep):
            with contextlib.suppress(Exception):
                table.io.delete(path)
        for snapshot in expired:
            self._snapshot_files.pop(snapshot.snapshot_id, None)

    def _metadata_files(self, table: Table, snapshot: Any) -> frozenset[str]:
        """The manifest list of ``snapshot`` and the manifests it names (read once, then cached)."""
        files = self._snapshot_files.get(snapshot.snapshot_id)
        if files is None:
            manifests = [m.manifest_path for m in snapshot.manifests(io=table.io)]
            files = frozenset([snapshot.manifest_list, *manifests])
            self._snapshot_files[snapshot.snapshot_id] = files
        return files

    def _drop_stale(self, names: set[str]) -> list[str]:
        catalog = self._open()
        dropped = []
        for identifier in _guard("listing tables", catalog.list_tables, self.config.namespace):
            view = identifier[-1]
            if view in names:
                continue
            table = _guard(f"loading table {'.'.join(identifier)}", catalog.load_table, identifier)
            if table.properties.get(_PUBLISHED_BY) != "sirius":
                continue  # not ours: leave it
            _guard(f"dropping table {'.'.join(identifier)}", catalog.drop_table, identifier)
            self._known.pop(view, None)
            dropped.append(".".join(identifier))
        return dropped


def publisher_from_env(
    sql_connection_string: str, object_store_uri: str, environ: Mapping[str, str] | None = None
) -> IcebergPublisher | None:
    """The daemon's publisher: on unless ``SIRIUS_ICEBERG=0``; None when off or impossible.

    Impossible means a store no outside reader can open (the in-memory store), one pyiceberg
    cannot write (``az://``), or pyiceberg not installed; each is logged once as a warning, and
    the daemon runs without publishing.

    Raises:
        ConfigurationError: ``SIRIUS_ICEBERG`` or ``SIRIUS_ICEBERG_NAMESPACE`` is malformed.
    """
    if not IcebergConfig.enabled_from_env(environ):
        return None
    if importlib.util.find_spec("pyiceberg") is None:
        _log.warning("Iceberg tables not published: pyiceberg is not installed (pip install 'sirius[iceberg]')")
        return None
    scheme = object_store_uri.split(":", 1)[0]
    if scheme == "memory":
        _log.warning("Iceberg tables not published: the in-memory object store is not readable from outside")
        return None
    if scheme not in _PUBLISHABLE_SCHEMES:
        _log.warning("Iceberg tables not published: pyiceberg cannot write %s:// locations", scheme)
        return None
    return IcebergPublisher(IcebergConfig.resolve(sql_connection_string, object_store_uri, environ))


def _guard(what: str, fn: Any, *args: Any) -> Any:
    """Call ``fn``; any failure of pyiceberg, SQLAlchemy or the file IO becomes an ``IcebergError``."""
    try:
        return fn(*args)
    except LakehouseError:
        raise
    except Exception as exc:
        raise IcebergError(f"{what}: {exc}") from exc


def _entries(table: Table) -> dict[str, DataFile]:
    """The live data files of the current snapshot by URI, read from its manifests."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return {}

    def read() -> dict[str, DataFile]:
        return {
            entry.data_file.file_path: entry.data_file
            for manifest in snapshot.manifests(io=table.io)
            for entry in manifest.fetch_manifest_entry(io=table.io, discard_deleted=True)
        }

    return _guard(f"listing the files of {'.'.join(table.name())}", read)  # type: ignore[no-any-return]


def _snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot is not None else None


def _commit(table: Table, adds: list[DataFile], removes: list[DataFile]) -> None:
    """One snapshot: removes and adds together (an overwrite), or an append when nothing goes."""
    with table.transaction() as tx:
        if removes:
            with tx.update_snapshot().overwrite() as op:
                for data_file in removes:
                    op.delete_data_file(data_file)
                for data_file in adds:
                    op.append_data_file(data_file)
        else:
            with tx.update_snapshot().merge_append() as op:
                for data_file in adds:
                    op.append_data_file(data_file)


def _data_file(table: Table, uri: str, partition: Partition, schema: pa.Schema) -> DataFile:
    """The Iceberg entry of one partition file, from its Parquet footer (row count, bounds)."""
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

    def footer() -> pq.FileMetaData:
        with table.io.new_input(uri).open() as stream:
            return pq.read_metadata(stream)

    metadata = _guard(f"reading the footer of {uri}", footer)
    columns = metadata.schema.to_arrow_schema().names
    if columns != schema.names:
        msg = f"{uri}: columns {columns} differ from the view's {schema.names}"
        raise IcebergError(msg)
    iceberg = table.metadata.schema()
    stats = _guard(
        f"reading the statistics of {uri}",
        lambda: data_file_statistics_from_parquet_metadata(
            parquet_metadata=metadata,
            stats_columns=compute_statistics_plan(iceberg, table.metadata.properties),
            parquet_column_mapping=parquet_path_to_id_mapping(iceberg),
        ),
    )
    data_file = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=uri,
        file_format=FileFormat.PARQUET,
        partition=stats.partition(table.metadata.spec(), iceberg),
        file_size_in_bytes=partition.file_size,
        sort_order_id=None,
        spec_id=table.metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **stats.to_serialized_dict(),
    )
    data_file.spec_id = table.metadata.default_spec_id  # not one of from_args's fields
    return data_file
