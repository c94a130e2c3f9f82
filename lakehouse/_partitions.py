"""Partition metadata: ``lakehouse_partitions`` and ``temporary_files`` rows, and their locks.

A partition is one row keyed by ``(view_set_name, view_instance_id, begin_insert_time,
end_insert_time)`` plus, unless it is empty, one Parquet file (``micromegas-query.md`` §1, §6,
``micromegas-wire.md`` §8). ``source_data_hash`` is the little-endian i64 count of source items;
``file_schema_hash`` identifies the schema the file was written with.

Writers serialise on transaction-scoped advisory locks: one per ``(view set, instance, insert
range)`` held while a partition is computed (two writers of the same partition do the work
once), and one per ``(view set, instance)`` held only while the rows are swapped, so writers of
different, overlapping ranges (a 1 s partition and the 1 min merge over it) cannot interleave
even where the exclusion constraint is missing (no ``btree_gist``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..tracing.transit import datetime_to_ns
from ._pool import pg_errors
from ._time_range import TimeRange, to_datetime

__all__ = [
    "PARTITION_FORMAT_VERSION",
    "Partition",
    "decode_source_count",
    "encode_source_count",
    "find_overlapping",
    "insert_partition",
    "instance_lock_key",
    "list_partitions",
    "partitions_for_query",
    "range_lock_key",
    "register_temporary_file",
    "retire_partition_rows",
]

PARTITION_FORMAT_VERSION = 2
"""``partition_format_version`` of new partitions."""

_COLUMNS = (
    "view_set_name, view_instance_id, begin_insert_time, end_insert_time, min_event_time, max_event_time,"
    " updated, file_path, file_size, file_schema_hash, source_data_hash, num_rows, partition_format_version,"
    " sort_order, max_sort_key_time"
)


def encode_source_count(count: int) -> bytes:
    """``source_data_hash`` of ``count`` source items: 8 bytes, little-endian i64."""
    return struct.pack("<q", count)


def decode_source_count(data: bytes | None) -> int | None:
    """The count in a ``source_data_hash``; None for any other length (forces a rebuild)."""
    if data is None or len(data) != 8:
        return None
    return int(struct.unpack("<q", data)[0])


def _opt_ns(value: datetime | None) -> int | None:
    return None if value is None else datetime_to_ns(value)


def _opt_dt(ns: int | None) -> datetime | None:
    return None if ns is None else to_datetime(ns)


@dataclass(frozen=True, slots=True)
class Partition:
    """One ``lakehouse_partitions`` row (times in Unix ns)."""

    view_set_name: str
    view_instance_id: str
    begin_insert_ns: int
    end_insert_ns: int
    min_event_ns: int | None
    max_event_ns: int | None
    updated_ns: int
    file_path: str | None
    file_size: int
    file_schema_hash: bytes
    source_data_hash: bytes
    num_rows: int
    partition_format_version: int = PARTITION_FORMAT_VERSION
    sort_order: tuple[str, ...] | None = None
    max_sort_key_ns: int | None = None

    @property
    def insert_range(self) -> TimeRange:
        """``[begin_insert_time, end_insert_time)``."""
        return TimeRange(self.begin_insert_ns, self.end_insert_ns)

    @property
    def source_count(self) -> int | None:
        """The decoded ``source_data_hash``."""
        return decode_source_count(self.source_data_hash)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Partition:
        """Build from a row selected with the module's column list."""
        return cls(
            view_set_name=row["view_set_name"],
            view_instance_id=row["view_instance_id"],
            begin_insert_ns=datetime_to_ns(row["begin_insert_time"]),
            end_insert_ns=datetime_to_ns(row["end_insert_time"]),
            min_event_ns=_opt_ns(row["min_event_time"]),
            max_event_ns=_opt_ns(row["max_event_time"]),
            updated_ns=_opt_ns(row["updated"]) or 0,
            file_path=row["file_path"],
            file_size=row["file_size"] or 0,
            file_schema_hash=bytes(row["file_schema_hash"] or b""),
            source_data_hash=bytes(row["source_data_hash"] or b""),
            num_rows=row["num_rows"],
            partition_format_version=row["partition_format_version"],
            sort_order=None if row["sort_order"] is None else tuple(row["sort_order"]),
            max_sort_key_ns=_opt_ns(row["max_sort_key_time"]),
        )

    def values(self) -> tuple[Any, ...]:
        """Positional values in the module's column order."""
        return (
            self.view_set_name,
            self.view_instance_id,
            to_datetime(self.begin_insert_ns),
            to_datetime(self.end_insert_ns),
            _opt_dt(self.min_event_ns),
            _opt_dt(self.max_event_ns),
            to_datetime(self.updated_ns),
            self.file_path,
            self.file_size,
            self.file_schema_hash,
            self.source_data_hash,
            self.num_rows,
            self.partition_format_version,
            None if self.sort_order is None else list(self.sort_order),
            _opt_dt(self.max_sort_key_ns),
        )


def _lock_key(*parts: object) -> int:
    # A stable signed 64-bit key (Rust uses DefaultHasher; only Sirius writers need to agree).
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int(struct.unpack("<q", digest)[0])


def range_lock_key(view_set: str, instance: str, insert_range: TimeRange) -> int:
    """Advisory-lock key of one partition being computed."""
    return _lock_key("range", view_set, instance, insert_range.begin_ns, insert_range.end_ns)


def instance_lock_key(view_set: str, instance: str) -> int:
    """Advisory-lock key held while the partition rows of a view instance are swapped."""
    return _lock_key("instance", view_set, instance)


async def find_overlapping(
    conn: asyncpg.Connection | asyncpg.Pool, view_set: str, instance: str, schema_hash: bytes, insert_range: TimeRange
) -> list[Partition]:
    """Partitions of the current schema whose insert range overlaps ``insert_range``.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    with pg_errors(f"reading partitions of {view_set}/{instance}"):
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM lakehouse_partitions"  # noqa: S608 - constant column list
            " WHERE view_set_name = $1 AND view_instance_id = $2 AND file_schema_hash = $3"
            " AND begin_insert_time < $5 AND end_insert_time > $4 ORDER BY begin_insert_time, file_path",
            view_set,
            instance,
            schema_hash,
            insert_range.begin,
            insert_range.end,
        )
    return [Partition.from_row(r) for r in rows]


async def partitions_for_query(
    pool: asyncpg.Pool | asyncpg.Connection,
    views: Sequence[tuple[str, bytes]],
    instance: str,
    event_range: TimeRange | None,
) -> dict[str, list[Partition]]:
    """Non-empty partitions of current schemas whose event times overlap ``event_range`` (§7).

    Args:
        pool: the lakehouse pool.
        views: ``(view set name, current schema hash)`` pairs.
        instance: ``global`` or a process/stream id.
        event_range: the query range (inclusive bounds); None selects every partition.

    Returns:
        Partitions by view set name, ordered by insert time then file path.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    names = [name for name, _ in views]
    hashes = [h for _, h in views]
    where = ""
    args: list[Any] = [names, hashes, instance]
    if event_range is not None:
        where = " AND p.min_event_time <= $5 AND p.max_event_time >= $4"
        args += [event_range.begin, to_datetime(event_range.end_ns)]
    with pg_errors("selecting partitions for a query"):
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM lakehouse_partitions p"  # noqa: S608 - constant column list
            " JOIN unnest($1::varchar[], $2::bytea[]) AS v(name, hash)"
            " ON p.view_set_name = v.name AND p.file_schema_hash = v.hash"
            f" WHERE p.view_instance_id = $3 AND p.file_path IS NOT NULL{where}"
            " ORDER BY p.begin_insert_time, p.file_path",
            *args,
        )
    found: dict[str, list[Partition]] = {name: [] for name in names}
    for row in rows:
        found[row["view_set_name"]].append(Partition.from_row(row))
    return found


async def list_partitions(
    pool: asyncpg.Pool | asyncpg.Connection,
    view_set: str | None = None,
    instance: str | None = None,
    insert_range: TimeRange | None = None,
) -> list[Partition]:
    """Every partition row (optionally of one view set / instance / overlapping an insert range).

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    clauses: list[str] = []
    args: list[Any] = []
    if view_set is not None:
        args.append(view_set)
        clauses.append(f"view_set_name = ${len(args)}")
    if instance is not None:
        args.append(instance)
        clauses.append(f"view_instance_id = ${len(args)}")
    if insert_range is not None:
        args += [insert_range.begin, insert_range.end]
        clauses.append(f"begin_insert_time < ${len(args)} AND end_insert_time > ${len(args) - 1}")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with pg_errors("listing partitions"):
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM lakehouse_partitions{where}"  # noqa: S608 - composed from constants
            " ORDER BY view_set_name, view_instance_id, begin_insert_time, file_path",
            *args,
        )
    return [Partition.from_row(r) for r in rows]


async def insert_partition(conn: asyncpg.Connection, partition: Partition) -> None:
    """Insert a partition row.

    Raises:
        MetadataStoreError: PostgreSQL failed (e.g. the exclusion constraint refused it).
    """
    with pg_errors(f"inserting partition {partition.view_set_name}/{partition.view_instance_id}"):
        await conn.execute(
            f"INSERT INTO lakehouse_partitions ({_COLUMNS}) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
            *partition.values(),
        )


async def register_temporary_file(
    conn: asyncpg.Connection | asyncpg.Pool, file_path: str, file_size: int, expiration_ns: int
) -> None:
    """Record a file to delete once ``expiration_ns`` has passed.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    with pg_errors(f"registering temporary file {file_path}"):
        await conn.execute(
            "INSERT INTO temporary_files VALUES($1, $2, $3)", file_path, file_size, to_datetime(expiration_ns)
        )


async def retire_partition_rows(conn: asyncpg.Connection, partitions: Iterable[Partition], expiration_ns: int) -> int:
    """Delete partition rows; their files go to ``temporary_files`` until ``expiration_ns``.

    Call inside a transaction. Returns the number of rows deleted.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    deleted = 0
    with pg_errors("retiring partitions"):
        for p in partitions:
            status = await conn.execute(
                "DELETE FROM lakehouse_partitions WHERE view_set_name = $1 AND view_instance_id = $2"
                " AND begin_insert_time = $3 AND end_insert_time = $4 AND file_schema_hash = $5"
                " AND file_path IS NOT DISTINCT FROM $6",
                p.view_set_name,
                p.view_instance_id,
                to_datetime(p.begin_insert_ns),
                to_datetime(p.end_insert_ns),
                p.file_schema_hash,
                p.file_path,
            )
            count = int(status.split()[-1])
            deleted += count
            if count and p.file_path is not None:
                await register_temporary_file(conn, p.file_path, p.file_size, expiration_ns)
    return deleted
