"""JSONB result columns rendered as JSON text, for people reading query results.

The views keep property maps and span events/links as JSONB (databend's binary format):
``properties`` / ``process_properties`` (``Dictionary(Int32, Binary)``), ``streams.properties``,
``processes.properties``, ``events`` and ``links`` (``Binary``), and the JSONB functions
(``jsonb_parse``, ``jsonb_get``) return it too. Sent as is, a client shows the bytes (hex). A
column is treated as JSONB when

* its field metadata says so (``sirius.jsonb`` = ``true``), or
* it is binary (plain, large, view or dictionary-encoded) and its name is one the lakehouse gives
  JSONB columns (ends with ``properties``, is ``events`` / ``links``, starts with ``jsonb_``),

and every value in it decodes as JSONB; otherwise it is left alone (hex). Decoding is done once
per distinct value (dictionary encoding), so a million rows sharing a few property sets decode
a few values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..lakehouse import decode_jsonb, to_json_text

__all__ = ["JSONB_METADATA_KEY", "embed_json_columns", "is_jsonb_candidate", "jsonb_as_json_text"]

JSONB_METADATA_KEY = b"sirius.jsonb"
"""Field metadata key marking a binary column as JSONB (value ``true``)."""

_JSONB_NAMES = frozenset({"events", "links"})


def _binary(data_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(data_type):
        return _binary(data_type.value_type)
    return pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type) or pa.types.is_binary_view(data_type)


def is_jsonb_candidate(field: pa.Field) -> bool:
    """True when ``field`` may hold JSONB (its values are checked before rendering).

    >>> is_jsonb_candidate(pa.field("process_properties", pa.dictionary(pa.int32(), pa.binary())))
    True
    >>> is_jsonb_candidate(pa.field("trace_id", pa.binary(16)))
    False
    """
    if not _binary(field.type):
        return False
    if field.metadata and field.metadata.get(JSONB_METADATA_KEY, b"").lower() == b"true":
        return True
    name = field.name.lower()
    return name.endswith("properties") or name in _JSONB_NAMES or name.startswith("jsonb_")


def _as_json_text(column: pa.ChunkedArray) -> pa.Array | None:
    """The column as JSON text, or None when a value is not JSONB."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not pa.types.is_binary(array.type):
        array = array.cast(pa.binary())
    encoded = pc.dictionary_encode(array)
    texts: list[str | None] = []
    for value in encoded.dictionary.to_pylist():
        try:
            texts.append(to_json_text(decode_jsonb(value)))
        except (ValueError, IndexError, UnicodeDecodeError):  # not JSONB: keep the column's bytes
            return None
    return pc.take(pa.array(texts, pa.utf8()), encoded.indices)


def jsonb_as_json_text(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """``table`` with its JSONB columns as JSON text (``Utf8``), and the names of those columns.

    >>> from sirius.lakehouse._sql_jsonb import properties_to_jsonb_array
    >>> t = pa.table({"properties": properties_to_jsonb_array([{"a": "1"}, None])})
    >>> converted, names = jsonb_as_json_text(t)
    >>> converted.column("properties").to_pylist(), names
    (['{"a":"1"}', None], ['properties'])
    """
    converted: list[str] = []
    for index, field in enumerate(table.schema):
        if not is_jsonb_candidate(field):
            continue
        text = _as_json_text(table.column(index))
        if text is not None:
            table = table.set_column(index, pa.field(field.name, pa.utf8(), field.nullable), text)
            converted.append(field.name)
    return table, converted


def embed_json_columns(rows: Iterable[str], names: list[str]) -> Iterator[str]:
    """JSON row objects whose ``names`` columns (JSON text) become nested JSON values."""
    if not names:
        yield from rows
        return
    for line in rows:
        row = json.loads(line)
        for name in names:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        yield json.dumps(row, ensure_ascii=False)
