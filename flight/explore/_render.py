"""Arrow results as JSON-ready Python values: ids as hex, JSONB as objects, times as ns.

Every endpoint reads its rows through :func:`table_rows`: timestamps become integer Unix ns
(the endpoint formats them as RFC 3339 where the contract says so), binary ids lowercase hex,
JSONB columns (properties, events, links: :mod:`sirius.flight._jsonb_text`) parsed objects,
non-finite floats ``None``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...tracing._rfc3339 import format_rfc3339_ns
from .._jsonb_text import jsonb_as_json_text

__all__ = ["column_types", "json_value", "render_table", "rfc3339", "table_rows"]


def rfc3339(ns: int | None) -> str | None:
    """Unix ns as RFC 3339 UTC with 9 fractional digits (None stays None)."""
    return None if ns is None else format_rfc3339_ns(int(ns))


def _plain_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    data_type = column.type
    if pa.types.is_dictionary(data_type):
        return _plain_column(pc.cast(column, data_type.value_type))
    if pa.types.is_timestamp(data_type):
        return pc.cast(pc.cast(column, pa.timestamp("ns", tz="UTC")), pa.int64())
    if pa.types.is_duration(data_type):
        return pc.cast(pc.cast(column, pa.duration("ns")), pa.int64())
    return column


def json_value(value: Any) -> Any:
    """A Python value from Arrow as JSON: bytes as hex, non-finite floats as None."""
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


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts (see the module docstring for the value forms)."""
    return render_table(table)[0]


def render_table(table: pa.Table) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of ``table`` as dicts, and the names of its JSONB columns."""
    table, jsonb_columns = jsonb_as_json_text(table)
    names = table.column_names
    columns = []
    for index, name in enumerate(names):
        values = _plain_column(table.column(index)).to_pylist()
        if name in jsonb_columns:
            columns.append([json.loads(v) if isinstance(v, str) else v for v in values])
        else:
            columns.append([json_value(v) for v in values])
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)], jsonb_columns


def column_types(table: pa.Table, jsonb_columns: list[str]) -> list[dict[str, str]]:
    """Name and type of each column, for the SQL screen (JSONB columns are ``json``)."""
    out = []
    for field in table.schema:
        data_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        out.append({"name": field.name, "type": "json" if field.name in jsonb_columns else str(data_type)})
    return out
