"""The lakehouse runtime: pool, object store, clock, view sets and ETL counters in one object.

Everything above the storage layer (JIT, the daemon's passes, retention, query sessions, the
admin functions) takes a ``Lakehouse``. It owns nothing it did not open: ``Lakehouse(pool,
store)`` borrows them; ``Lakehouse.open(config)`` opens (and ``close()`` closes) its own.
The clock is injectable so tests drive time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg

from ._config import LakehouseConfig
from ._environment_variables import MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS
from ._migrations import migrate
from ._object_store import ObjectStore, open_object_store
from ._pool import create_pool
from ._sql_view_set import load_view_sets
from ._time_range import NS_PER_DAY, NS_PER_HOUR, to_ns
from ._view_set import ViewRegistry
from .views import default_view_sets

__all__ = ["Clock", "EtlStats", "Lakehouse", "LakehouseSettings"]

_log = logging.getLogger(__name__)

_LEASE_CONNECTIONS = 4  # the daemon's pass kinds (second, minute, hour, day) each hold one

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC ``datetime``."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class EtlStats:
    """Counters of ETL work done through one ``Lakehouse`` (tests assert on them).

    Attributes:
        partitions_written: partitions committed (created from source or merged).
        partitions_merged: of those, the ones built by merging existing partitions.
        partitions_up_to_date: partition checks that found nothing to do.
        partitions_retired: partitions removed (replaced, retired or expired).
        jit_updates: JIT checks of a view instance (one per ``view_instance`` in a query) and
            in-memory extractions of a DDL view's rows not yet materialised (one per query).
        blocks_processed: source blocks read to build partitions.
        events_processed: their ``nb_objects``.
        view_failures: views of a daemon pass that failed and were skipped.
    """

    partitions_written: int = 0
    partitions_merged: int = 0
    partitions_up_to_date: int = 0
    partitions_retired: int = 0
    jit_updates: int = 0
    blocks_processed: int = 0
    events_processed: int = 0
    view_failures: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a dict (compare two snapshots to see what a call did)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LakehouseSettings:
    """Tunables of partition writing.

    Attributes:
        replaced_file_ttl_ns: how long a replaced or retired partition file stays readable
            (queries planned before the replacement may still read it); reference: 1 h.
        in_flight_file_ttl_ns: a file being written is registered in ``temporary_files`` with
            this expiry until its partition row commits, so a crash in between leaves an
            orphan that the cleanup deletes.
        parquet_compression: Parquet codec of new partitions (``zstd`` or ``lz4`` = LZ4_RAW).
        view_definition_refresh_seconds: how often the DDL-defined view sets are reloaded
            (``MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS``, default 60), checked when a query
            session is built and before each daemon pass.
    """

    replaced_file_ttl_ns: int = NS_PER_HOUR
    in_flight_file_ttl_ns: int = NS_PER_DAY
    parquet_compression: str = "zstd"
    view_definition_refresh_seconds: float = 60.0

    @classmethod
    def from_env(cls) -> LakehouseSettings:
        """Defaults, with ``MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS`` when set.

        Raises:
            ValueError: the variable is not a non-negative number.
        """
        text = os.environ.get(MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS)
        if not text:
            return cls()
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            msg = f"{MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS} must be a non-negative number of seconds, got {text!r}"
            raise ValueError(msg)
        return cls(view_definition_refresh_seconds=seconds)

    def __post_init__(self) -> None:
        if self.parquet_compression not in ("zstd", "lz4", "snappy", "none"):
            msg = f"unsupported Parquet compression {self.parquet_compression!r}"
            raise ValueError(msg)
        if self.replaced_file_ttl_ns < 0 or self.in_flight_file_ttl_ns <= 0:
            msg = "file expiries must be positive"
            raise ValueError(msg)


class Lakehouse:
    """The lakehouse as the ETL and query code sees it.

    Args:
        pool: asyncpg pool on a migrated database (at least 2 connections; JIT and the daemon
            hold one per partition being written).
        store: where blocks and partitions live.
        clock: current time (``insert_time`` of nothing here; partition ``updated``, file
            expiries, JIT's "now", the daemon's schedule).
        views: the built-in view sets (default: ``sirius.lakehouse.views.default_view_sets()``);
            ``views`` adds the DDL-defined ones (``reload_view_definitions``).
        settings: partition-writing tunables.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: ObjectStore,
        *,
        clock: Clock = _utc_now,
        views: ViewRegistry | None = None,
        settings: LakehouseSettings | None = None,
    ) -> None:
        if views is None:
            views = default_view_sets()
        self.pool = pool
        self.store = store
        self.clock = clock
        self.base_views = views
        self._views = views
        self.settings = settings or LakehouseSettings.from_env()
        self.stats = EtlStats()
        self._owned = False
        self._views_loaded_at: float | None = None
        self._views_lock = asyncio.Lock()
        # Every partition writer (each daemon pass, JIT from any query) holds one connection for
        # its partition lock and borrows one or two more while it writes; with several pass kinds
        # each holding a lease connection, unbounded writers could take every connection and
        # all wait for their second one. The slots leave the leases (one per pass kind) and
        # two more connections free, so one writer can always finish.
        slots = max(1, (pool.get_max_size() - _LEASE_CONNECTIONS - 2) // 2)
        self.partition_writers = asyncio.Semaphore(slots)

    @property
    def views(self) -> ViewRegistry:
        """The view sets served: the built-ins plus the DDL-defined ones last loaded."""
        return self._views

    @views.setter
    def views(self, registry: ViewRegistry) -> None:
        # Assigning views replaces the built-ins; DDL-defined ones are added at the next refresh.
        self.base_views = registry
        self._views = registry
        self._views_loaded_at = None

    async def reload_view_definitions(self) -> None:
        """Rebuild ``views``: the built-ins plus every stored DDL definition that plans.

        Raises:
            MetadataStoreError: the definitions could not be read (``views`` is unchanged).
        """
        async with self._views_lock:
            self._views = await load_view_sets(self)
            self._views_loaded_at = time.monotonic()

    async def refresh_view_definitions(self) -> None:
        """Reload the DDL-defined view sets when the last load is older than the refresh period.

        A failure is logged and the current view sets kept (retried at the next call).
        """
        loaded = self._views_loaded_at
        if loaded is not None and time.monotonic() - loaded < self.settings.view_definition_refresh_seconds:
            return
        try:
            await self.reload_view_definitions()
        except Exception as exc:  # noqa: BLE001 - serving the known views beats failing every query
            self._views_loaded_at = time.monotonic()
            _log.warning("view set definitions not reloaded (kept the current ones): %s", exc)

    def now_ns(self) -> int:
        """The clock's current time in Unix nanoseconds."""
        return to_ns(self.clock())

    @classmethod
    async def open(cls, config: LakehouseConfig, *, clock: Clock = _utc_now, max_connections: int = 10) -> Lakehouse:
        """Open a pool and a store from ``config``, migrate the schema, and own both.

        Raises:
            ConfigurationError: the store URI is malformed.
            MetadataStoreError: PostgreSQL is unreachable or the migration failed.
        """
        store = open_object_store(config.object_store_uri)
        pool = await create_pool(config.sql_connection_string, max_size=max_connections)
        try:
            await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        lake = cls(pool, store, clock=clock)
        lake._owned = True
        return lake

    async def close(self) -> None:
        """Close the pool and store if ``open`` created them (borrowed ones are left alone)."""
        if self._owned:
            self._owned = False
            await self.store.close()
            await self.pool.close()
