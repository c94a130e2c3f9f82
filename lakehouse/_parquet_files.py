"""Partition files: naming, Parquet encoding with pyarrow, and reading them back.

Files follow ``micromegas-query.md`` §6: ``views/{view_set}/{instance}/{YYYY-MM-DD}/{HH-MM-SS}_{uuid4}.parquet``
(date and time of the insert range's beginning, UTC), Parquet format 2.6, dictionary encoding,
page-level statistics with a column index (except a view's ``no_statistics`` columns), ordered ids
and times delta-encoded (a view's ``delta_columns``), row groups of at most 128 Ki rows. The codec
is a setting: ``bench/etl.py`` measures LZ4_RAW against zstd on the same partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._object_store import ObjectStore
from ._partitions import Partition
from ._time_range import to_datetime

__all__ = [
    "MAX_ROW_GROUP_ROWS",
    "ParquetStream",
    "dictionary_columns",
    "encode_parquet",
    "event_time_bounds",
    "partition_file_key",
    "read_partition_files",
]

MAX_ROW_GROUP_ROWS = 128 * 1024
"""Largest row group written (131 072 rows, as Micromegas)."""

_READ_CONCURRENCY = 8


def partition_file_key(view_set: str, instance: str, begin_insert_ns: int) -> str:
    """A fresh object key for a partition whose insert range begins at ``begin_insert_ns``.

    >>> partition_file_key("log_entries", "global", 0)[:45]
    'views/log_entries/global/1970-01-01/00-00-00_'
    """
    when = to_datetime(begin_insert_ns)
    return f"views/{view_set}/{instance}/{when:%Y-%m-%d}/{when:%H-%M-%S}_{uuid.uuid4()}.parquet"


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns written with Parquet dictionary encoding.

    Arrow dictionary columns (ids, names, targets, properties) and small integer or boolean
    columns (levels, depths, lines). High-cardinality values (messages, times, ids) are left
    plain: a dictionary attempt on a 1 M-row message column costs time, falls back to plain
    pages anyway, and compresses worse (``bench/etl.py``: 9.7 MB vs 6.3 MB with zstd).
    """
    wanted = []
    for f in schema:
        t = f.type
        small = pa.types.is_dictionary(t) or pa.types.is_boolean(t) or pa.types.is_list(t)
        small = small or t in (pa.int32(), pa.uint32())
        if small or (pa.types.is_string(t) and f.name in _LOW_CARDINALITY_TEXT):
            wanted.append(f.name)
    return wanted


_LOW_CARDINALITY_TEXT = frozenset(
    {"stream_id", "process_id", "exe", "username", "realname", "computer", "distro", "cpu_brand", "format"}
    | {f"processes.{c}" for c in ("exe", "username", "realname", "computer", "distro", "cpu_brand")}
    | {"streams.format", "parent_process_id", "processes.parent_process_id"}
)


def _row_group_size(row_group_rows: int | None) -> int:
    return min(row_group_rows or MAX_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS)


WRITE_BATCH_ROWS = 8192
"""Values the writer takes at a time between page-size checks and statistics updates (pyarrow's
default is 1024): 17 % less encoding CPU on a 1 M-row ``log_entries`` partition, same bytes to
within a page boundary; a data page may then exceed 1 MiB by up to one batch."""


def _writer_options(
    schema: pa.Schema, compression: str, delta_columns: Sequence[str] = (), no_statistics: Sequence[str] = ()
) -> dict[str, Any]:
    dictionary = dictionary_columns(schema)
    options: dict[str, Any] = {
        "version": "2.6",
        "compression": compression,
        "use_dictionary": dictionary,
        # Statistics (chunk and page min/max, the column index) for every column but those no
        # query prunes on: a free-text column's pages span nearly every value, and comparing
        # each string costs the encoder (``log_entries.msg``: ~5 % of its encoding CPU).
        "write_statistics": [f.name for f in schema if f.name not in no_statistics] if no_statistics else True,
        "write_page_index": True,
        "write_batch_size": WRITE_BATCH_ROWS,
    }
    if delta_columns:
        # DELTA_BINARY_PACKED (what arrow-rs's Parquet 2 writer falls back to for integers):
        # ordered ids and times shrink to their small deltas before compression, which is both
        # cheaper to encode and smaller than plain values (``thread_spans``: 74 -> 46 ms CPU and
        # 2.69 -> 0.59 MB for 500 k spans; ``log_entries`` times: 6.3 -> 4.3 MB per 1 M rows,
        # and queries on ``time`` read less). Same values read back.
        options["column_encoding"] = {c: "DELTA_BINARY_PACKED" for c in delta_columns if c not in dictionary}
    return options


def encode_parquet(
    table: pa.Table,
    compression: str,
    row_group_rows: int | None = None,
    delta_columns: Sequence[str] = (),
    no_statistics: Sequence[str] = (),
) -> bytes:
    """Serialise ``table`` as one Parquet file (blocking; call from a worker thread).

    Args:
        table: the rows, in the view's schema.
        compression: ``zstd``, ``lz4`` (written as LZ4_RAW), ``snappy`` or ``none``.
        row_group_rows: rows per row group (default and maximum: ``MAX_ROW_GROUP_ROWS``).
        delta_columns: integer or timestamp columns written ``DELTA_BINARY_PACKED`` (a view's
            ``delta_columns``); the others keep dictionary or plain encoding.
        no_statistics: columns written without min/max statistics (a view's ``no_statistics``).
    """
    sink = pa.BufferOutputStream()
    options = _writer_options(table.schema, compression, delta_columns, no_statistics)
    pq.write_table(table, sink, row_group_size=_row_group_size(row_group_rows), **options)
    return sink.getvalue().to_pybytes()


class ParquetStream:
    """One Parquet file encoded on its own thread while its rows are still being computed.

    ``write`` hands over a chunk of rows and returns at once; the thread (started by the first
    rows; ``finish`` returns no bytes when there were none) writes each chunk as
    row groups of at most ``row_group_rows`` (pyarrow releases the GIL while encoding), so a
    view's transform and the encoding of its earlier chunks use both cores. ``finish`` returns
    the file; ``abort`` drops it. The writer options are ``encode_parquet``'s.
    """

    def __init__(
        self,
        schema: pa.Schema,
        compression: str,
        row_group_rows: int | None = None,
        delta_columns: Sequence[str] = (),
        no_statistics: Sequence[str] = (),
    ) -> None:
        self._schema = schema
        self._options = _writer_options(schema, compression, delta_columns, no_statistics)
        self._row_group_size = _row_group_size(row_group_rows)
        self._chunks: queue.SimpleQueue[pa.Table | None] = queue.SimpleQueue()
        self._sink = pa.BufferOutputStream()
        self._error: BaseException | None = None
        self.num_rows = 0
        # Started by the first rows: the daemon's many empty slices cost no thread.
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        writer: pq.ParquetWriter | None = None
        try:
            writer = pq.ParquetWriter(self._sink, self._schema, **self._options)
            while (chunk := self._chunks.get()) is not None:
                if self._error is None:
                    writer.write_table(chunk, row_group_size=self._row_group_size)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of finish()
            self._error = exc
            while self._chunks.get() is not None:  # drain until the caller says it is done
                pass
        finally:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()

    def write(self, chunk: pa.Table) -> None:
        """Queue rows (in the stream's schema) for encoding."""
        if chunk.num_rows:
            self.num_rows += chunk.num_rows
            self._chunks.put(chunk)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sirius-parquet", daemon=True)
                self._thread.start()

    def finish(self) -> bytes:
        """Wait for the encoding and return the file (blocking; call from a worker thread).

        Raises:
            Whatever pyarrow raised while encoding.
        """
        if self._thread is None:
            return b""  # no rows: no file
        self._chunks.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sink.getvalue().to_pybytes()

    def abort(self) -> None:
        """Stop encoding and drop the file (after a failed transform)."""
        self._error = self._error or RuntimeError("aborted")
        if self._thread is not None:
            self._chunks.put(None)
            self._thread.join()


def event_time_bounds(table: pa.Table, columns: tuple[str, str]) -> tuple[int | None, int | None]:
    """``(min of columns[0], max of columns[1])`` in Unix ns; Nones for an empty table."""
    if table.num_rows == 0:
        return None, None
    low = pc.min(table.column(columns[0]).cast(pa.int64())).as_py()
    high = pc.max(table.column(columns[1]).cast(pa.int64())).as_py()
    return low, high


def _decode(data: bytes, schema: pa.Schema, columns: Sequence[str] | None) -> pa.Table:
    table = pq.read_table(pa.BufferReader(data), columns=list(columns) if columns is not None else None)
    wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
    return table.select(wanted.names).cast(wanted)


async def read_partition_files(
    store: ObjectStore, partitions: Sequence[Partition], schema: pa.Schema, columns: Sequence[str] | None = None
) -> pa.Table:
    """Rows of the given partitions, in their order (empty partitions contribute nothing).

    Raises:
        ObjectStoreError: a file is missing or the store failed.
    """
    keys = [p.file_path for p in partitions if p.file_path is not None]
    semaphore = asyncio.Semaphore(_READ_CONCURRENCY)

    async def get(key: str) -> bytes:
        async with semaphore:
            return await store.get(key)

    blobs = await asyncio.gather(*(get(k) for k in keys))
    if not blobs:
        wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        return wanted.empty_table()

    def decode_all() -> pa.Table:
        return pa.concat_tables([_decode(b, schema, columns) for b in blobs])

    return await asyncio.to_thread(decode_all)


def count_in_range(values: pa.ChunkedArray | pa.Array, begin_ns: int, end_ns: int) -> int:
    """How many timestamps fall in ``[begin_ns, end_ns)``."""
    ints = np.asarray(values.cast(pa.int64()).to_numpy(zero_copy_only=False))
    return int(np.count_nonzero((ints >= begin_ns) & (ints < end_ns)))
