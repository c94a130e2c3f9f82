"""Bulk ingestion over FlightSQL: ``DoPut(CommandStatementIngest)``, the ``micromegas`` client's ``bulk_ingest``.

Micromegas's replication path: an admin uploads Arrow record batches for one of the data-lake
tables and the server writes them where its ingestion service would have.

* ``processes``, ``streams``, ``blocks``: rows inserted into the PostgreSQL tables of the same
  names, ``ON CONFLICT (id) DO NOTHING`` (a retried upload adds nothing), in one transaction.
* ``payloads``: ``(process_id, stream_id, block_id, payload)`` written as the block objects
  ``blobs/{process_id}/{stream_id}/{block_id}``, create-only (a retry leaves the object as is).

Columns are found by name (extra columns are ignored, missing ones or wrong types are refused);
ids are UUID strings, times any Arrow timestamp, ``properties`` a ``List<Struct<key, value>>``
or a ``Map<string, string>``. An ``audience`` column (0.32 sources, schema v8) is optional: on
``processes`` a value other than ``public`` (what unstamped data reads as) is kept as the
``micromegas.audience`` property unless the row's properties already carry one; on ``streams``
and ``blocks`` it is ignored (their audience is their process's).

All or nothing: the whole upload is read (up to ``max_bytes`` of Arrow data; more is refused
before it is buffered) and every row validated before anything is written; PostgreSQL rows go
in one transaction, and payload objects created by a failed upload are deleted. The count
returned is the number of rows received (Micromegas's ``record_count``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from ..lakehouse import Lakehouse, block_object_key

__all__ = [
    "BULK_INGEST_TABLES",
    "DEFAULT_MAX_INGEST_BYTES",
    "BulkIngestError",
    "bulk_ingest",
    "read_upload",
    "serve_ingest",
]

DEFAULT_MAX_INGEST_BYTES = 256 * 1024 * 1024
_AUDIENCE_PROPERTY = "micromegas.audience"
_UNSTAMPED_AUDIENCE = "public"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BulkIngestError(ValueError):
    """The upload is refused (unknown table, schema mismatch, bad value, too large)."""


_Kind = str  # "uuid", "uuid_or_empty", "string", "int", "time", "binary", "tags", "properties"

_COLUMNS: dict[str, list[tuple[str, _Kind]]] = {
    "processes": [
        ("process_id", "uuid"),
        ("exe", "string"),
        ("username", "string"),
        ("realname", "string"),
        ("computer", "string"),
        ("distro", "string"),
        ("cpu_brand", "string"),
        ("tsc_frequency", "int"),
        ("start_time", "time"),
        ("start_ticks", "int"),
        ("insert_time", "time"),
        ("parent_process_id", "uuid_or_empty"),
        ("properties", "properties"),
    ],
    "streams": [
        ("stream_id", "uuid"),
        ("process_id", "uuid"),
        ("dependencies_metadata", "binary"),
        ("objects_metadata", "binary"),
        ("tags", "tags"),
        ("properties", "properties"),
        ("insert_time", "time"),
        ("format", "string"),
    ],
    "blocks": [
        ("block_id", "uuid"),
        ("stream_id", "uuid"),
        ("process_id", "uuid"),
        ("begin_time", "time"),
        ("begin_ticks", "int"),
        ("end_time", "time"),
        ("end_ticks", "int"),
        ("nb_objects", "int"),
        ("object_offset", "int"),
        ("payload_size", "int"),
        ("insert_time", "time"),
    ],
    "payloads": [("process_id", "uuid"), ("stream_id", "uuid"), ("block_id", "uuid"), ("payload", "binary")],
}

BULK_INGEST_TABLES = tuple(_COLUMNS)
"""The tables ``bulk_ingest`` accepts."""

_INSERTS = {
    "processes": "INSERT INTO processes VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
    " ON CONFLICT (process_id) DO NOTHING",
    "streams": "INSERT INTO streams (stream_id, process_id, dependencies_metadata, objects_metadata, tags,"
    " properties, insert_time, format) VALUES($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (stream_id) DO NOTHING",
    "blocks": "INSERT INTO blocks VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING",
}


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_string(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_properties(t: pa.DataType) -> bool:
    if pa.types.is_map(t):
        return _is_string(t.key_type) and _is_string(t.item_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        item = t.value_type
        if pa.types.is_struct(item) and {item.field(i).name for i in range(item.num_fields)} >= {"key", "value"}:
            return _is_string(item.field("key").type) and _is_string(item.field("value").type)
    return False


_TYPE_CHECKS: dict[_Kind, tuple[Callable[[pa.DataType], bool], str]] = {
    "uuid": (_is_string, "a UUID string"),
    "uuid_or_empty": (_is_string, "a UUID string (empty for none)"),
    "string": (_is_string, "a string"),
    "int": (pa.types.is_integer, "an integer"),
    "time": (pa.types.is_timestamp, "a timestamp"),
    "binary": (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary"),
    "tags": (
        lambda t: (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string(t.value_type),
        "a list of strings",
    ),
    "properties": (_is_properties, "List<Struct<key: string, value: string>> or Map<string, string>"),
}


def check_schema(table: str, schema: pa.Schema) -> None:
    """Refuse an unknown table or a schema lacking the table's columns (by name and type)."""
    columns = _COLUMNS.get(table)
    if columns is None:
        msg = f"bulk ingest into table {table!r} is not supported; tables: {', '.join(BULK_INGEST_TABLES)}"
        raise BulkIngestError(msg)
    problems = []
    for name, kind in columns:
        index = schema.get_field_index(name)
        check, expected = _TYPE_CHECKS[kind]
        if index < 0:
            problems.append(f"missing column {name!r} ({expected})")
        elif not check(schema.field(index).type):
            problems.append(f"column {name!r} is {schema.field(index).type}, expected {expected}")
    audience = schema.get_field_index("audience")
    if table != "payloads" and audience >= 0 and not _is_string(schema.field(audience).type):
        problems.append(f"column 'audience' is {schema.field(audience).type}, expected a string")
    if problems:
        msg = f"schema mismatch for table {table!r}: " + "; ".join(problems)
        raise BulkIngestError(msg)


def read_upload(reader: Any, table: str, max_bytes: int) -> pa.Table:
    """Read a DoPut stream for ``table`` after checking its schema, refusing more than ``max_bytes``.

    Args:
        reader: pyarrow's ``MetadataRecordBatchReader`` of the call.
        table: the target table (``CommandStatementIngest.table``).
        max_bytes: limit on the Arrow buffers received; the batch crossing it is the last read.
    """
    check_schema(table, reader.schema)
    batches: list[pa.RecordBatch] = []
    total = 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        if chunk.data is None:
            continue
        total += chunk.data.nbytes
        if total > max_bytes:
            msg = f"bulk ingest upload exceeds the limit of {max_bytes} bytes; split it into smaller uploads"
            raise BulkIngestError(msg)
        batches.append(chunk.data)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _uuid(value: Any, column: str, row: int, *, allow_empty: bool = False) -> uuid.UUID | None:
    if value is None or value == "":
        if allow_empty:
            return None
        msg = f"row {row}: {column} is empty"
        raise BulkIngestError(msg)
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        msg = f"row {row}: {column} {value!r} is not a UUID"
        raise BulkIngestError(msg) from None


def _times(column: pa.ChunkedArray) -> list[datetime | None]:
    """Aware UTC datetimes with microsecond precision (PostgreSQL's), sub-microseconds truncated."""
    micros = pc.cast(column, pa.timestamp("us", tz=column.type.tz), safe=False).cast(pa.int64())
    return [None if v is None else _EPOCH + timedelta(microseconds=v) for v in micros.to_pylist()]


def _properties(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    return [
        (str(k), "" if v is None else str(v))
        for k, v in ((p["key"], p["value"]) if isinstance(p, dict) else p for p in value)
    ]


def _values(table: pa.Table, table_name: str) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` as Python values, one column kind at a time (validated)."""
    columns: dict[str, list[Any]] = {}
    for name, kind in _COLUMNS[table_name]:
        column = table.column(name)
        if kind == "time":
            columns[name] = _times(column)
        else:
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns[name] = column.to_pylist()
    if "audience" in table.column_names:
        columns["audience"] = table.column("audience").cast(pa.string()).to_pylist()
    for row in range(table.num_rows):
        yield {name: values[row] for name, values in columns.items()}


def _process_row(v: dict[str, Any], row: int) -> tuple[Any, ...]:
    properties = _properties(v["properties"])
    audience = v.get("audience")
    if audience and audience != _UNSTAMPED_AUDIENCE and all(k != _AUDIENCE_PROPERTY for k, _ in properties):
        properties.append((_AUDIENCE_PROPERTY, audience))
    return (
        _uuid(v["process_id"], "process_id", row),
        *(v[name] for name in ("exe", "username", "realname", "computer", "distro", "cpu_brand", "tsc_frequency")),
        v["start_time"],
        v["start_ticks"],
        v["insert_time"],
        _uuid(v["parent_process_id"], "parent_process_id", row, allow_empty=True),
        properties,
    )


def _stream_row(v: dict[str, Any], row: int) -> tuple[Any, ...]:
    if not v["format"]:
        msg = f"row {row}: format is empty"
        raise BulkIngestError(msg)
    return (
        _uuid(v["stream_id"], "stream_id", row),
        _uuid(v["process_id"], "process_id", row),
        v["dependencies_metadata"],
        v["objects_metadata"],
        [t for t in v["tags"] or () if t is not None],
        _properties(v["properties"]),
        v["insert_time"],
        v["format"],
    )


def _block_row(v: dict[str, Any], row: int) -> tuple[Any, ...]:
    ids = tuple(_uuid(v[name], name, row) for name in ("block_id", "stream_id", "process_id"))
    rest = (
        v["begin_time"],
        v["begin_ticks"],
        v["end_time"],
        v["end_ticks"],
        v["nb_objects"],
        v["object_offset"],
        v["payload_size"],
        v["insert_time"],
    )
    return ids + rest


_ROWS: dict[str, Callable[[dict[str, Any], int], tuple[Any, ...]]] = {
    "processes": _process_row,
    "streams": _stream_row,
    "blocks": _block_row,
}

_NOT_NULL = {
    "processes": ("start_time", "insert_time"),
    "streams": ("insert_time",),
    "blocks": ("begin_time", "end_time", "insert_time"),
}


def prepare_rows(table_name: str, table: pa.Table) -> list[tuple[Any, ...]]:
    """Validate every row of the upload and convert it to the table's positional values."""
    rows = []
    for index, values in enumerate(_values(table, table_name)):
        for name, kind in _COLUMNS[table_name]:
            required = kind in ("int", "binary") or name in _NOT_NULL.get(table_name, ())
            if required and values[name] is None:
                msg = f"row {index}: {name} is null"
                raise BulkIngestError(msg)
        if table_name == "payloads":
            ids = [_uuid(values[name], name, index) for name in ("process_id", "stream_id", "block_id")]
            rows.append((*ids, values["payload"]))
        else:
            rows.append(_ROWS[table_name](values, index))
    return rows


async def _write_payloads(lake: Lakehouse, rows: Sequence[tuple[Any, ...]]) -> None:
    created: list[str] = []
    try:
        for process_id, stream_id, block_id, payload in rows:
            key = block_object_key(process_id, stream_id, block_id)
            if await lake.store.put_if_absent(key, payload):
                created.append(key)
    except BaseException:
        if created:
            await lake.store.delete_many(created)
        raise


async def bulk_ingest(lake: Lakehouse, table_name: str, table: pa.Table) -> int:
    """Validate and write an upload (see the module docstring); return the rows received.

    Raises:
        BulkIngestError: the upload is refused; nothing was written.
        asyncpg.PostgresError, OSError: the write failed; nothing was kept.
    """
    if table_name not in _COLUMNS:
        check_schema(table_name, table.schema)
    rows = prepare_rows(table_name, table)
    if not rows:
        return 0
    if table_name == "payloads":
        await _write_payloads(lake, rows)
        return len(rows)
    connection: asyncpg.Connection
    async with lake.pool.acquire() as connection, connection.transaction():
        try:
            await connection.executemany(_INSERTS[table_name], rows)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            msg = f"table {table_name!r}: {exc}"
            raise BulkIngestError(msg) from None
    return len(rows)


def serve_ingest(
    provider: Any,
    *,
    is_admin: bool,
    table: str,
    reader: Any,
    max_bytes: int,
    run: Callable[[Any], int],
) -> int:
    """Serve one ``DoPut(CommandStatementIngest)``: admin check, bounded read, write; the row count.

    Args:
        provider: the session provider; it ingests through its ``bulk_ingest(table, data)``
            coroutine (providers without one do not serve bulk ingestion).
        is_admin: whether the caller is an admin (others get PERMISSION_DENIED before any read).
        table: ``CommandStatementIngest.table``.
        reader: the call's record batch reader.
        max_bytes: upload limit (INVALID_ARGUMENT beyond it).
        run: runs a coroutine on the application's loop and returns its result.

    Raises:
        flight.FlightUnauthorizedError: the caller is not an admin.
        pa.ArrowInvalid: the upload is refused (INVALID_ARGUMENT); nothing was written.
        pa.ArrowNotImplementedError: this server has no lakehouse to ingest into.
        flight.FlightUnavailableError: PostgreSQL or the object store failed; nothing was kept.
    """
    from pyarrow import flight

    from ..lakehouse import LakehouseError

    ingest = getattr(provider, "bulk_ingest", None)
    if ingest is None:
        msg = "bulk ingestion is not supported by this server (no lakehouse)"
        raise pa.ArrowNotImplementedError(msg)
    if not is_admin:
        msg = "bulk_ingest requires admin privileges"
        raise flight.FlightUnauthorizedError(msg)
    try:
        data = read_upload(reader, table, max_bytes)
        return run(ingest(table, data))
    except BulkIngestError as exc:
        raise pa.ArrowInvalid(f"bulk ingest: {exc}") from None
    except TimeoutError:
        msg = f"bulk ingest into {table!r} timed out; nothing was kept"
        raise flight.FlightTimedOutError(msg) from None
    except (LakehouseError, asyncpg.PostgresError, OSError) as exc:
        msg = f"bulk ingest into {table!r} failed, nothing was kept: {exc}"
        raise flight.FlightUnavailableError(msg) from None
