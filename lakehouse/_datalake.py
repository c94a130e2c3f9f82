"""The data-lake metadata store: processes, streams and blocks rows in PostgreSQL.

Writes mirror the Rust ingestion service (``rust/ingestion/src/web_ingestion_service.rs``,
``micromegas-wire.md`` §3): positional ``VALUES`` in the exact column order of §7.1,
``ON CONFLICT … DO NOTHING`` so retried requests are idempotent (for ``blocks`` without a target:
the partitioned table keeps ``block_id`` unique with a trigger, ``_block_partitions``), ``insert_time`` taken from the
ingesting host's clock, and properties stored as ``micromegas_property[]``. Reads return small
frozen records for the collector, the transit reader and the views.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..tracing.transit import (
    TRANSIT_FORMAT,
    Block,
    ProcessInfo,
    StreamInfo,
    datetime_to_ns,
    encode_udts,
    ns_to_datetime,
)
from ._held_connection import LingeringConnection
from ._pool import pg_errors

__all__ = ["AUDIENCE_PROPERTY", "BlockRecord", "DataLake", "ProcessRecord", "StreamRecord"]

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC ``datetime`` (``insert_time`` of new rows)."""

_RESERVED_PROPERTY_PREFIX = "micromegas."

AUDIENCE_PROPERTY = "micromegas.audience"
"""The reserved process and stream property holding the writer's audience (server-written only)."""

# The audience of a processes row (NULL when unstamped), as a PostgreSQL expression.
AUDIENCE_OF_ROW = f"(SELECT p.value FROM unnest(properties) AS p WHERE p.key = '{AUDIENCE_PROPERTY}' LIMIT 1)"  # noqa: S608


def _server_properties(properties: Mapping[str, str], audience: str | None) -> dict[str, str]:
    """The client's properties without the reserved namespace, stamped with ``audience`` when given."""
    kept = {k: v for k, v in properties.items() if not k.startswith(_RESERVED_PROPERTY_PREFIX)}
    if audience is not None:
        kept[AUDIENCE_PROPERTY] = audience
    return kept


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Positional: the columns of micromegas-wire.md §7.1 in order (see _block_row).
_INSERT_BLOCK = "INSERT INTO blocks VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING"


def _block_row(block: Block, payload_size: int, insert_time: datetime) -> tuple[Any, ...]:
    """The ``blocks`` row of ``block`` in ``_INSERT_BLOCK``'s column order."""
    return (
        block.block_id,
        block.stream_id,
        block.process_id,
        ns_to_datetime(block.begin_time_ns),
        block.begin_ticks,
        ns_to_datetime(block.end_time_ns),
        block.end_ticks,
        block.nb_objects,
        block.object_offset,
        payload_size,
        insert_time,
    )


def _to_sql_properties(properties: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in properties.items()]


def _from_sql_properties(value: Sequence[Any] | None) -> dict[str, str]:
    # Elements decode as asyncpg Records (key, value); NULL arrays come from foreign writers.
    return {item[0]: item[1] for item in value or ()}


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A ``processes`` row; times in Unix nanoseconds (microsecond precision in PostgreSQL)."""

    process_id: uuid.UUID
    exe: str
    username: str
    realname: str
    computer: str
    distro: str
    cpu_brand: str
    tsc_frequency: int
    start_time_ns: int
    start_ticks: int
    insert_time_ns: int
    parent_process_id: uuid.UUID | None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A ``streams`` row; the metadata columns hold CBOR arrays of UDTs (``decode_udts``)."""

    stream_id: uuid.UUID
    process_id: uuid.UUID
    tags: tuple[str, ...]
    format: str
    dependencies_metadata: bytes
    objects_metadata: bytes
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A ``blocks`` row; ticks are relative to the process's ``start_ticks``."""

    block_id: uuid.UUID
    stream_id: uuid.UUID
    process_id: uuid.UUID
    begin_time_ns: int
    begin_ticks: int
    end_time_ns: int
    end_ticks: int
    nb_objects: int
    object_offset: int
    payload_size: int
    insert_time_ns: int


def _ns(value: datetime | None) -> int:
    return 0 if value is None else datetime_to_ns(value)


class DataLake:
    """Reads and writes the data-lake tables through an ``asyncpg`` pool.

    Args:
        pool: a pool on a database migrated with ``migrate()``.
        clock: source of ``insert_time`` (injectable for deterministic tests).

    Every method raises ``MetadataStoreError`` when PostgreSQL fails.
    """

    def __init__(self, pool: asyncpg.Pool, clock: Clock = _utc_now) -> None:
        self._pool = pool
        self._clock = clock
        self._block_rows: LingeringConnection | None = None  # insert_blocks' connection

    @property
    def pool(self) -> asyncpg.Pool:
        """The underlying pool (shared with other stores of the same service)."""
        return self._pool

    async def insert_process(self, info: ProcessInfo, audience: str | None = None) -> bool:
        """Register a process; a second registration of the same id is ignored.

        Client-supplied ``micromegas.*`` properties are dropped: that namespace is the server's,
        which stamps ``micromegas.audience`` there with ``audience`` (the writer's, when it has one).

        Returns:
            True when this call created the row (the process is new), False when it existed.
        """
        properties = _server_properties(info.properties, audience)
        with pg_errors(f"inserting process {info.process_id}"):
            status = await self._pool.execute(
                "INSERT INTO processes VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
                " ON CONFLICT (process_id) DO NOTHING",
                info.process_id,
                info.exe,
                info.username,
                info.realname,
                info.computer,
                info.distro,
                info.cpu_brand,
                info.tsc_frequency,
                ns_to_datetime(info.start_time_ns),
                info.start_ticks,
                self._clock(),
                info.parent_process_id,
                _to_sql_properties(properties),
            )
        return status == "INSERT 0 1"  # asyncpg status: 0 rows when the id existed

    async def insert_stream(self, info: StreamInfo, format: str = TRANSIT_FORMAT, audience: str | None = None) -> None:
        """Register a stream; a second registration of the same id is ignored.

        Args:
            info: the stream; its UDT arrays are stored re-encoded as CBOR.
            format: ``streams.format`` (``micromegas-transit``, ``otlp/v1/logs`` …).
            audience: stamped as ``micromegas.audience`` (client ``micromegas.*`` properties dropped).
        """
        with pg_errors(f"inserting stream {info.stream_id}"):
            await self._pool.execute(
                "INSERT INTO streams (stream_id, process_id, dependencies_metadata, objects_metadata,"
                " tags, properties, insert_time, format) VALUES($1,$2,$3,$4,$5,$6,$7,$8)"
                " ON CONFLICT (stream_id) DO NOTHING",
                info.stream_id,
                info.process_id,
                encode_udts(info.dependencies_metadata),
                encode_udts(info.objects_metadata),
                list(info.tags),
                _to_sql_properties(_server_properties(info.properties, audience)),
                self._clock(),
                format,
            )

    async def insert_block(self, block: Block, payload_size: int) -> None:
        """Record a block whose payload object is already stored; duplicates are ignored.

        Args:
            block: the block (its payload is not stored here).
            payload_size: byte length of the stored object ``blobs/{p}/{s}/{b}``.
        """
        with pg_errors(f"inserting block {block.block_id}"):
            await self._pool.execute(_INSERT_BLOCK, *_block_row(block, payload_size, self._clock()))

    async def insert_blocks(self, blocks: Sequence[tuple[Block, int]]) -> None:
        """``insert_block`` of several (block, payload size) pairs in one round trip and one transaction.

        Rows go in ``block_id`` order, so two batches sharing ids take the dedup trigger's
        per-id locks in the same order (no deadlock between concurrent writers).
        """
        if not blocks:
            return
        insert_time = self._clock()
        rows = [
            _block_row(block, payload_size, insert_time)
            for block, payload_size in sorted(blocks, key=lambda item: item[0].block_id.bytes)
        ]
        with pg_errors(f"inserting {len(rows)} blocks"):
            # An INSERT in its own implicit transaction leaves no session state: one connection
            # is kept between batches and given back without the pool's reset round trip.
            if self._block_rows is None:
                self._block_rows = LingeringConnection(self._pool)
            await self._block_rows.executemany(_INSERT_BLOCK, rows)

    async def process_audience(self, process_id: uuid.UUID) -> tuple[bool, str | None]:
        """Whether the process exists, and its stamped audience (None when unstamped)."""
        with pg_errors(f"reading the audience of process {process_id}"):
            row = await self._pool.fetchrow(
                f"SELECT {AUDIENCE_OF_ROW} AS audience FROM processes WHERE process_id = $1",  # noqa: S608 - constant
                process_id,
            )
        return (False, None) if row is None else (True, row["audience"])

    async def get_process(self, process_id: uuid.UUID) -> ProcessRecord | None:
        """Return the process, or None if it was never registered."""
        with pg_errors(f"reading process {process_id}"):
            row = await self._pool.fetchrow(
                "SELECT process_id, exe, username, realname, computer, distro, cpu_brand, tsc_frequency,"
                " start_time, start_ticks, insert_time, parent_process_id, properties"
                " FROM processes WHERE process_id = $1",
                process_id,
            )
        if row is None:
            return None
        return ProcessRecord(
            process_id=row["process_id"],
            exe=row["exe"] or "",
            username=row["username"] or "",
            realname=row["realname"] or "",
            computer=row["computer"] or "",
            distro=row["distro"] or "",
            cpu_brand=row["cpu_brand"] or "",
            tsc_frequency=row["tsc_frequency"] or 0,
            start_time_ns=_ns(row["start_time"]),
            start_ticks=row["start_ticks"] or 0,
            insert_time_ns=_ns(row["insert_time"]),
            parent_process_id=row["parent_process_id"],
            properties=_from_sql_properties(row["properties"]),
        )

    async def get_stream(self, stream_id: uuid.UUID) -> StreamRecord | None:
        """Return the stream, or None if it was never registered."""
        with pg_errors(f"reading stream {stream_id}"):
            row = await self._pool.fetchrow(
                "SELECT stream_id, process_id, tags, format, dependencies_metadata, objects_metadata, properties"
                " FROM streams WHERE stream_id = $1",
                stream_id,
            )
        if row is None:
            return None
        return StreamRecord(
            stream_id=row["stream_id"],
            process_id=row["process_id"],
            tags=tuple(row["tags"] or ()),
            format=row["format"],
            dependencies_metadata=bytes(row["dependencies_metadata"] or b""),
            objects_metadata=bytes(row["objects_metadata"] or b""),
            properties=_from_sql_properties(row["properties"]),
        )

    async def get_block(self, block_id: uuid.UUID) -> BlockRecord | None:
        """Return the block row, or None if it was never recorded."""
        with pg_errors(f"reading block {block_id}"):
            row = await self._pool.fetchrow(
                "SELECT block_id, stream_id, process_id, begin_time, begin_ticks, end_time, end_ticks,"
                " nb_objects, object_offset, payload_size, insert_time FROM blocks WHERE block_id = $1",
                block_id,
            )
        if row is None:
            return None
        return BlockRecord(
            block_id=row["block_id"],
            stream_id=row["stream_id"],
            process_id=row["process_id"],
            begin_time_ns=_ns(row["begin_time"]),
            begin_ticks=row["begin_ticks"],
            end_time_ns=_ns(row["end_time"]),
            end_ticks=row["end_ticks"],
            nb_objects=row["nb_objects"],
            object_offset=row["object_offset"],
            payload_size=row["payload_size"],
            insert_time_ns=_ns(row["insert_time"]),
        )

    async def ping(self) -> None:
        """Run ``SELECT 1`` (the PostgreSQL half of ``/ready``)."""
        with pg_errors("pinging PostgreSQL"):
            await self._pool.fetchval("SELECT 1")
