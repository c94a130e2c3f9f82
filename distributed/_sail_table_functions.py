"""Table functions on Sail: Python UDTFs over the lakehouse's row kernels, and the metadata tables.

Two kinds, by where their rows come from:

* Rows computed from a value: ``expand_histogram(h)``, ``jsonb_each(j)`` and
  ``jsonb_array_elements(j)`` are Python UDTFs run on the workers, each calling the lakehouse's
  own kernel (``expand_histogram_table``, ``jsonb_each_table``, ``jsonb_array_elements_table``).
  They take a column (``FROM t, LATERAL jsonb_each(t.properties) e``) or a scalar subquery
  (``SELECT * FROM expand_histogram((SELECT make_histogram(…) FROM measures))``). A histogram
  is Sail's packed ``array<double>`` (``_sail_histograms``).
* Rows read from PostgreSQL: ``list_partitions()`` and ``list_view_sets()`` are computed on the
  caller, before the statement goes to the cluster (as ``view_instance``'s partitions are), with
  the FlightSQL server's own ``LakehousePartitionAdmin``; each call is replaced by the name of a
  temporary view holding its rows (timestamps at microseconds, as in every Sail view).

Not ported, and why (``UNAVAILABLE_ON_SAIL``): the admin functions (``retire_partitions``,
``materialize_partitions``, ``regenerate_partitions``, ``list_view_set_definitions``, view DDL,
the deny list) change or expose the lake under the FlightSQL server's admin checks and read no
data a cluster would help with; ``process_spans`` and ``perfetto_trace_chunks`` build one
process's span tree or Perfetto trace, sequential work over one ``view_instance`` with no
aggregate to spread; ``parse_block`` decodes one transit block from the object store. They stay
on the DataFusion engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sirius.lakehouse import (
    LakehousePartitionAdmin,
    expand_histogram_table,
    find_calls,
    jsonb_array_elements_table,
    jsonb_each_table,
)

from ._exceptions import StatementError
from ._sail_histograms import unpack_histogram

if TYPE_CHECKING:
    from sirius.lakehouse import Lakehouse

__all__ = [
    "METADATA_TABLE_FUNCTIONS",
    "ROW_TABLE_FUNCTIONS",
    "SailTable",
    "plan_metadata_tables",
    "register_row_table_functions",
    "register_tables",
]

METADATA_TABLE_FUNCTIONS = ("list_partitions", "list_view_sets")
"""Table functions computed on the caller from PostgreSQL (no arguments)."""
ROW_TABLE_FUNCTIONS = ("expand_histogram", "jsonb_each", "jsonb_array_elements")
"""Table functions run as UDTFs on the workers."""

_NAMES = itertools.count()


@dataclass(frozen=True, slots=True)
class SailTable:
    """Rows computed before the statement runs, registered as the temporary view ``name``."""

    name: str
    table: pa.Table


async def plan_metadata_tables(lake: Lakehouse, sql: str) -> tuple[str, tuple[SailTable, ...]]:
    """``sql`` with each metadata table function call replaced by a view name, and those views' rows.

    Raises:
        StatementError: a call with arguments (these functions take none).
        MetadataStoreError: PostgreSQL failed.
    """
    calls = find_calls(sql, set(METADATA_TABLE_FUNCTIONS))
    if not calls:
        return sql, ()
    admin = LakehousePartitionAdmin(lake)
    out, tables, last = [], [], 0
    for call in calls:
        if call.args:
            raise StatementError(f"{call.name} takes 0 argument(s), got {len(call.args)}")
        rows = await (admin.list_partitions() if call.name == "list_partitions" else admin.list_view_sets())
        name = f"sirius_{call.name}_{next(_NAMES)}"
        tables.append(SailTable(name, _microseconds(rows)))
        out += [sql[last : call.start], name]
        last = call.end
    out.append(sql[last:])
    return "".join(out), tuple(tables)


def _microseconds(table: pa.Table) -> pa.Table:
    """Timestamps as Spark's microseconds (sub-microsecond digits dropped, as in the Sail views)."""
    fields = [
        pa.field(f.name, pa.timestamp("us", tz=f.type.tz), f.nullable) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields), safe=False)


def register_tables(spark: Any, tables: tuple[SailTable, ...]) -> None:
    """Create the temporary views of precomputed rows on a Spark Connect session."""
    from pyspark.sql.pandas.types import from_arrow_schema

    for table in tables:
        if table.table.num_rows:
            frame = spark.createDataFrame(table.table)
        else:  # Spark cannot infer a schema from no rows: give it the table's
            frame = spark.createDataFrame([], schema=from_arrow_schema(table.table.schema))
        frame.createOrReplaceTempView(table.name)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _udtfs() -> dict[str, Any]:
    from pyspark.sql.functions import udtf

    class ExpandHistogram:
        """``expand_histogram(h)``: one ``(bin_center, count)`` row per bin of a Sail histogram."""

        def eval(self, packed: list[float] | None) -> Iterator[tuple[float, int]]:
            table = expand_histogram_table(unpack_histogram(None if packed is None else list(packed)))
            yield from zip(table.column("bin_center").to_pylist(), table.column("count").to_pylist(), strict=True)

    class JsonbEach:
        """``jsonb_each(jsonb)``: one row per key of a JSONB object (none otherwise)."""

        def eval(self, value: bytes | None) -> Iterator[tuple[str, bytes]]:
            table = jsonb_each_table(_bytes(value))
            values = table.column("value").cast(pa.binary()).to_pylist()
            yield from zip(table.column("key").to_pylist(), values, strict=True)

    class JsonbArrayElements:
        """``jsonb_array_elements(jsonb)``: one row per element of a JSONB array (none otherwise)."""

        def eval(self, value: bytes | None) -> Iterator[tuple[bytes]]:
            table = jsonb_array_elements_table(_bytes(value))
            for element in table.column("value").cast(pa.binary()).to_pylist():
                yield (element,)

    return {
        "expand_histogram": udtf(ExpandHistogram, returnType="bin_center: double, count: bigint"),
        "jsonb_each": udtf(JsonbEach, returnType="key: string, value: binary"),
        "jsonb_array_elements": udtf(JsonbArrayElements, returnType="value: binary"),
    }


def register_row_table_functions(spark: Any, wanted: Callable[[str], bool] = lambda _: True) -> None:
    """Register the UDTFs (``ROW_TABLE_FUNCTIONS``, those ``wanted``) on a Spark Connect session."""
    for name, function in _udtfs().items():
        if wanted(name):
            spark.udtf.register(name, function)
