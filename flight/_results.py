"""Query results on the wire: client-facing types and batch-by-batch streaming with a deadline.

Types (micromegas-query.md §10.4, §12.6):

* dictionary columns are sent as their value type unless the client asked for
  ``preserve_dictionary: true``;
* ``Utf8View``/``BinaryView`` (what DataFusion reads from Parquet) become ``Utf8``/``Binary``;
* every timestamp is ``Timestamp(ns)`` (its time zone kept);
* for Grafana (``x-client-type: grafana…``) also: dictionaries always hydrated, large strings
  to ``Utf8``, binary ids to hex text, decimals to ``Float64``, dates to ``Timestamp(ns)`` and
  nested values (list, struct, map) to JSON text, the types its backend can copy.

Streaming: a :class:`QueryExecution` pulls DataFusion's record-batch stream through its async
iterator on a private event loop, so every wait has a timeout; when the deadline passes, the
wait is abandoned and the stream dropped, which cancels DataFusion's tasks and frees the query's
memory pool. Batches larger than ``max_batch_bytes`` are sliced (Grafana's Go client refuses
gRPC messages over 4 MiB).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.compute as pc

from ._exceptions import FlightSqlError, QueryTimeoutError, classify_datafusion_error

__all__ = ["QueryExecution", "ResultTypes", "empty_ipc_stream", "normalize_batch", "output_schema"]


class ResultTypes:
    """How result columns are converted for one client.

    Args:
        preserve_dictionary: keep dictionary encoding (``preserve_dictionary: true`` header).
        grafana: convert to the types Grafana's FlightSQL backend can copy.
    """

    __slots__ = ("grafana", "preserve_dictionary")

    def __init__(self, *, preserve_dictionary: bool = False, grafana: bool = False) -> None:
        self.preserve_dictionary = preserve_dictionary and not grafana
        self.grafana = grafana

    def target(self, data_type: pa.DataType) -> pa.DataType:  # noqa: PLR0911 - one branch per rule
        """The type a column of ``data_type`` is sent as."""
        if pa.types.is_dictionary(data_type):
            if self.preserve_dictionary:
                return pa.dictionary(data_type.index_type, self.target(data_type.value_type))
            return self.target(data_type.value_type)
        if pa.types.is_string_view(data_type):
            return pa.utf8()
        if pa.types.is_binary_view(data_type):
            return self.target(pa.binary())
        if pa.types.is_timestamp(data_type):
            return pa.timestamp("ns", tz=data_type.tz)
        if not self.grafana:
            return data_type
        if pa.types.is_large_string(data_type):
            return pa.utf8()
        if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
            return pa.utf8()
        if pa.types.is_fixed_size_binary(data_type):
            return pa.utf8()
        if pa.types.is_decimal(data_type):
            return pa.float64()
        if pa.types.is_date(data_type):
            return pa.timestamp("ns")
        if pa.types.is_nested(data_type):
            return pa.utf8()
        return data_type


def output_schema(schema: pa.Schema, types: ResultTypes) -> pa.Schema:
    """The schema clients receive for a DataFusion result of ``schema``."""
    return pa.schema([pa.field(f.name, types.target(f.type), f.nullable, f.metadata) for f in schema])


def _to_hex(column: pa.Array) -> pa.Array:
    encoded = pc.dictionary_encode(column)
    values = [None if v is None else v.hex() for v in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(values, pa.utf8()), encoded.indices)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def _to_json(column: pa.Array) -> pa.Array:
    def dump(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return json.dumps(str(value))
        return json.dumps(value, default=_json_default, separators=(",", ":"))

    return pa.array([dump(v) for v in column.to_pylist()], pa.utf8())


def _convert(column: pa.Array, target: pa.DataType) -> pa.Array:
    source = column.type
    if source == target:
        return column
    if pa.types.is_dictionary(source) and not pa.types.is_dictionary(target):
        column = column.dictionary_decode()
        source = column.type
        if source == target:
            return column
    if pa.types.is_string(target) and (
        pa.types.is_binary(source)
        or pa.types.is_large_binary(source)
        or pa.types.is_binary_view(source)
        or pa.types.is_fixed_size_binary(source)
    ):
        return _to_hex(column)
    if pa.types.is_string(target) and pa.types.is_nested(source):
        return _to_json(column)
    return pc.cast(column, target)


def normalize_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Convert ``batch`` to ``schema`` (from :func:`output_schema`), column by column."""
    if batch.schema.equals(schema):
        return batch
    columns = [_convert(batch.column(i), field.type) for i, field in enumerate(schema)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def slices(batch: pa.RecordBatch, max_bytes: int) -> list[pa.RecordBatch]:
    """Split ``batch`` into row ranges of about ``max_bytes`` each (at least one row each)."""
    size = batch.nbytes
    if size <= max_bytes or batch.num_rows <= 1:
        return [batch]
    rows = max(1, int(batch.num_rows * max_bytes / size))
    return [batch.slice(offset, rows) for offset in range(0, batch.num_rows, rows)]


def empty_ipc_stream(schema: pa.Schema) -> bytes:
    """An Arrow IPC stream holding only ``schema`` (schema message + end-of-stream)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema):
        pass
    return sink.getvalue().to_pybytes()


class QueryExecution:
    """One running query: pull batches until the end, an error, the deadline or ``close()``.

    Args:
        df: the planned query.
        schema: the output schema (:func:`output_schema`).
        loop: event loop (running in another thread) on which DataFusion's async stream is awaited.
        deadline: ``time.monotonic()`` value after which the query is cancelled.
        query_id: reported in errors.
        max_batch_bytes: slice size bound.
        on_close: called once when the execution ends (whatever the reason); ``finished``
            then tells whether it ended by reaching the last batch.
    """

    def __init__(
        self,
        df: datafusion.DataFrame,
        schema: pa.Schema,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        query_id: str,
        *,
        max_batch_bytes: int,
        timeout_seconds: float,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.schema = schema
        self.query_id = query_id
        self.rows = 0
        self.finished = False
        """True once the stream has given its last batch (not failed, timed out or cancelled)."""
        self._loop = loop
        self._deadline = deadline
        self._timeout_seconds = timeout_seconds
        self._max_batch_bytes = max_batch_bytes
        self._on_close = on_close
        self._pending: list[pa.RecordBatch] = []
        self._lock = threading.Lock()
        self._cancelled = False
        self._released = False
        try:
            self._stream: datafusion.RecordBatchStream | None = df.execute_stream()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # DataFusion panics surface as PanicException (a BaseException)
            self.close()
            raise classify_datafusion_error(exc, query_id) from exc

    async def _pull(self, timeout: float) -> pa.RecordBatch | None:
        stream = self._stream
        if stream is None:
            return None
        try:
            batch = await asyncio.wait_for(stream.__anext__(), timeout)
        except StopAsyncIteration:
            return None
        return batch.to_pyarrow()

    def next_batch(self) -> pa.RecordBatch | None:
        """The next (converted, size-bounded) batch, or None at the end.

        Raises:
            FlightSqlError: the query failed, or timed out (then it is already cancelled).
        """
        with self._lock:
            while not self._pending:
                if self._cancelled or self._released:
                    self._release()
                    return None
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out()
                future = asyncio.run_coroutine_threadsafe(self._pull(remaining), self._loop)
                try:
                    batch = future.result()
                except TimeoutError:
                    raise self._timed_out() from None
                except (Exception, asyncio.CancelledError) as exc:
                    self._release()
                    raise classify_datafusion_error(exc, self.query_id) from exc
                if batch is None:
                    self.finished = True
                    self._release()
                    return None
                if batch.num_rows:
                    self._pending = slices(normalize_batch(batch, self.schema), self._max_batch_bytes)
            out = self._pending.pop(0)
            self.rows += out.num_rows
            return out

    def _timed_out(self) -> FlightSqlError:
        self._release()
        message = f"query cancelled: it ran longer than its {self._timeout_seconds:g} s timeout"
        return QueryTimeoutError(message, self.query_id)

    def _release(self) -> None:
        """Drop the stream and report the end, once (call with the lock held)."""
        if self._released:
            return
        self._released = True
        self._pending = []
        # Dropping the stream drops DataFusion's execution: its tasks stop and its memory pool
        # reservations are released.
        self._stream = None
        if self._on_close is not None:
            self._on_close()

    def close(self) -> None:
        """Stop the query (idempotent); frees its resources now, or when a running pull returns."""
        self._cancelled = True
        if self._lock.acquire(blocking=False):
            try:
                self._release()
            finally:
                self._lock.release()
