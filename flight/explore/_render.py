"""Arrow results as JSON-ready Python values: ids as hex, JSONB as objects, times as ns.

Every endpoint reads its rows through :func:`render_table`: timestamps become integer Unix ns
(the endpoint formats them as RFC 3339 where the contract says so), binary ids lowercase hex,
JSONB columns (properties, events, links: :func:`sirius.flight._jsonb_text.is_jsonb_candidate`)
parsed objects, non-finite floats ``None``. Work is per column, not per cell where it can be:
a JSONB column is decoded once per distinct value among its rows (rows sharing a property set
share the decoded object; a file's whole dictionary is not decoded), and only binary and float
columns are visited value by value.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...lakehouse import decode_jsonb
from ...tracing import format_rfc3339_ns
from .._jsonb_text import is_jsonb_candidate

__all__ = ["column_types", "json_value", "render_table", "rfc3339", "table_columns", "table_rows"]


def rfc3339(ns: int | None) -> str | None:
    """Unix ns as RFC 3339 UTC with 9 fractional digits (None stays None)."""
    return None if ns is None else format_rfc3339_ns(int(ns))


def json_value(value: Any) -> Any:
    r"""A Python value from Arrow as JSON: bytes as hex, non-finite floats as None.

    >>> json_value({"id": b"\x01\xff", "x": [float("nan"), 1.5]})
    {'id': '01ff', 'x': [None, 1.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _combined(column: pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _decoded_jsonb(array: pa.Array) -> list[Any] | None:
    """The column's values decoded, or None when one is not JSONB (then it is shown as hex)."""
    encoded = pc.dictionary_encode(array)
    indices, dictionary = encoded.indices, encoded.dictionary
    try:
        values = [None if v is None else decode_jsonb(v) for v in dictionary.to_pylist()]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    values = [json_value(v) for v in values]  # NaN/inf inside documents
    return [None if i is None else values[i] for i in indices.to_pylist()]


def _values(field: pa.Field, column: pa.ChunkedArray) -> tuple[list[Any], bool]:  # noqa: PLR0911 - one per type
    """The column as JSON-ready values, and whether it was JSONB."""
    if pa.types.is_dictionary(column.type):
        # Chunks may carry different dictionaries, each possibly a whole file's: decode to the values.
        column = column.cast(column.type.value_type)
    array = _combined(column)
    if is_jsonb_candidate(field):
        decoded = _decoded_jsonb(array)
        if decoded is not None:
            return decoded, True
    data_type = array.type
    if pa.types.is_timestamp(data_type):
        return pc.cast(pc.cast(array, pa.timestamp("ns", tz="UTC")), pa.int64()).to_pylist(), False
    if pa.types.is_duration(data_type):
        return pc.cast(pc.cast(array, pa.duration("ns")), pa.int64()).to_pylist(), False
    if pa.types.is_date(data_type) or pa.types.is_time(data_type):
        return pc.cast(array, pa.utf8()).to_pylist(), False
    values = array.to_pylist()
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_integer(data_type):
        return values, False
    if pa.types.is_boolean(data_type) or pa.types.is_null(data_type):
        return values, False
    if pa.types.is_floating(data_type):
        return [None if v is not None and not math.isfinite(v) else v for v in values], False
    if pa.types.is_fixed_size_binary(data_type) or pa.types.is_binary(data_type):
        return [None if v is None else v.hex() for v in values], False
    return [json_value(v) for v in values], False


def table_columns(table: pa.Table) -> dict[str, list[Any]]:
    """The columns of ``table`` as lists of JSON-ready values, by name (no per-row dicts)."""
    return {field.name: _values(field, column)[0] for field, column in zip(table.schema, table.columns, strict=True)}


def render_table(table: pa.Table) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of ``table`` as dicts, and the names of its JSONB columns."""
    names = table.column_names
    columns = []
    jsonb_columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        values, is_jsonb = _values(field, column)
        columns.append(values)
        if is_jsonb:
            jsonb_columns.append(field.name)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)], jsonb_columns


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts (see the module docstring for the value forms)."""
    return render_table(table)[0]


def column_types(table: pa.Table, jsonb_columns: list[str]) -> list[dict[str, str]]:
    """Name and type of each column, for the SQL screen (JSONB columns are ``json``)."""
    out = []
    for field in table.schema:
        data_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        out.append({"name": field.name, "type": "json" if field.name in jsonb_columns else str(data_type)})
    return out
