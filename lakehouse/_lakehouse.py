"""The lakehouse runtime: pool, object store, clock, view sets and ETL counters in one object.

Everything above the storage layer (JIT, the daemon's passes, retention, query sessions, the
admin functions) takes a ``Lakehouse``. It owns nothing it did not open: ``Lakehouse(pool,
store)`` borrows them; ``Lakehouse.open(config)`` opens (and ``close()`` closes) its own.
The clock is injectable so tests drive time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg

from ._config import LakehouseConfig
from ._migrations import migrate
from ._object_store import ObjectStore, open_object_store
from ._pool import create_pool
from ._time_range import NS_PER_DAY, NS_PER_HOUR, to_ns
from ._view_set import ViewRegistry

__all__ = ["Clock", "EtlStats", "Lakehouse", "LakehouseSettings"]

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
        jit_updates: JIT checks of a view instance (one per ``view_instance`` in a query).
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
    """

    replaced_file_ttl_ns: int = NS_PER_HOUR
    in_flight_file_ttl_ns: int = NS_PER_DAY
    parquet_compression: str = "zstd"

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
        views: the view sets (default: ``sirius.lakehouse.views.default_view_sets()``).
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
            from .views import default_view_sets

            views = default_view_sets()
        self.pool = pool
        self.store = store
        self.clock = clock
        self.views = views
        self.settings = settings or LakehouseSettings()
        self.stats = EtlStats()
        self._owned = False

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
