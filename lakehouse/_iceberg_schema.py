"""Iceberg schemas of the views: how a view's Arrow schema maps onto Iceberg (format version 2).

The Parquet partitions are registered as they are written (no rewrite), so the Iceberg schema
must describe those files:

- ``timestamp[ns, tz=UTC]`` → ``timestamptz`` (microseconds). Format version 3 adds
  ``timestamptz_ns``, but pyiceberg (0.12) cannot write v3 metadata yet, so tables are v2 and
  readers see the nanosecond values truncated to microseconds (pyiceberg does this on read).
  Column bounds are derived from the Parquet statistics in microseconds.
- ``dictionary<int32, string|binary>`` → ``string`` / ``binary``: dictionary encoding is a
  Parquet page detail, not a type (readers get plain strings or bytes).
- ``fixed_size_binary[n]`` → ``fixed[n]``; ``list<T>`` → ``list<T>`` (elements optional).
- Unsigned integers widen to the next signed type (``uint32`` → ``long``); ``uint64`` → ``long``
  (the counts it holds stay far below 2^63).

Field ids are assigned in order (top-level fields first, then nested ids); the files carry no
ids, so every table gets the name mapping (``schema.name-mapping.default``) that lets readers
find the columns by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from ._exceptions import ViewError

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.types import IcebergType

__all__ = ["iceberg_schema", "schema_shape", "table_properties"]


class _Ids:
    """Hands out field ids: top-level fields take 1..n, nested fields follow."""

    def __init__(self, first: int) -> None:
        self.next = first

    def take(self) -> int:
        value = self.next
        self.next += 1
        return value


def _primitive(arrow: pa.DataType, column: str) -> IcebergType:
    from pyiceberg import types as it

    if pa.types.is_dictionary(arrow):
        return _primitive(arrow.value_type, column)
    simple: list[tuple[object, IcebergType]] = [
        (pa.types.is_boolean, it.BooleanType()),
        (pa.types.is_int8, it.IntegerType()),
        (pa.types.is_int16, it.IntegerType()),
        (pa.types.is_int32, it.IntegerType()),
        (pa.types.is_uint8, it.IntegerType()),
        (pa.types.is_uint16, it.IntegerType()),
        (pa.types.is_int64, it.LongType()),
        (pa.types.is_uint32, it.LongType()),
        (pa.types.is_uint64, it.LongType()),
        (pa.types.is_float32, it.FloatType()),
        (pa.types.is_float64, it.DoubleType()),
        (pa.types.is_date32, it.DateType()),
    ]
    for check, iceberg in simple:
        if check(arrow):  # type: ignore[operator]
            return iceberg
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return it.StringType()
    if pa.types.is_fixed_size_binary(arrow):
        return it.FixedType(arrow.byte_width)
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return it.BinaryType()
    if pa.types.is_timestamp(arrow):
        return it.TimestamptzType() if arrow.tz else it.TimestampType()
    msg = f"column {column!r}: Arrow type {arrow} has no Iceberg mapping"
    raise ViewError(msg)


def _field_type(arrow: pa.DataType, column: str, ids: _Ids) -> IcebergType:
    from pyiceberg import types as it

    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        element_id = ids.take()
        element = _field_type(arrow.value_type, column, ids)
        return it.ListType(element_id, element, element_required=not arrow.value_field.nullable)
    if pa.types.is_struct(arrow):
        fields = [(f, ids.take()) for f in arrow]
        return it.StructType(
            *(
                it.NestedField(fid, f.name, _field_type(f.type, f"{column}.{f.name}", ids), required=not f.nullable)
                for f, fid in fields
            )
        )
    return _primitive(arrow, column)


def iceberg_schema(schema: pa.Schema) -> Schema:
    """The Iceberg (v2) schema of Parquet files written with the Arrow ``schema``.

    Raises:
        ViewError: a column has a type Iceberg cannot describe.
    """
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    ids = _Ids(len(schema) + 1)
    fields = [
        NestedField(pos + 1, f.name, _field_type(f.type, f.name, ids), required=not f.nullable)
        for pos, f in enumerate(schema)
    ]
    return Schema(*fields)


def schema_shape(schema: Schema) -> tuple[tuple[str, str, bool], ...]:
    """Names, types and nullability of the top-level fields, ids aside (to compare two schemas)."""
    return tuple((f.name, str(f.field_type), f.required) for f in schema.fields)


def table_properties(schema: Schema) -> dict[str, str]:
    """Properties of a view's table: v2, the name mapping, merged manifests, few old metadata files."""
    from pyiceberg.table.name_mapping import create_mapping_from_schema

    return {
        "format-version": "2",
        # The partition files carry no field ids: readers resolve columns by name.
        "schema.name-mapping.default": create_mapping_from_schema(schema).model_dump_json(),
        # Every pass appends: merge small manifests so planning stays a few reads.
        "commit.manifest-merge.enabled": "true",
        # No retry inside pyiceberg: it would replay an append on top of a concurrent commit
        # (the same file twice). The publisher retries itself, recomputing what to add and remove.
        "commit.retry.num-retries": "0",
        # A commit per pass would otherwise leave one metadata file per pass forever.
        "write.metadata.delete-after-commit.enabled": "true",
        "write.metadata.previous-versions-max": "20",
        "sirius.published-by": "sirius",  # tables the publisher may drop when their view goes
    }
