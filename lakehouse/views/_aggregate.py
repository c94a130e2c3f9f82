"""Group-by helpers of the SQL-batch views (``processes``, ``streams``, ``log_stats``).

Micromegas builds these views with SQL over their source (``first_value`` per group for the
descriptive columns, ``max`` for the "last seen" ones, ``count``/``sum`` for statistics) and
merges partitions with the same SQL over existing rows. The same aggregations are done here with
numpy and pyarrow group-by kernels, so no DataFusion session is needed on the ETL path.

A query over such a view reads several partitions (one per day, hour, … of insert time), each
holding its own row for a process or stream seen in it; ``fold_frame`` folds them into one row
per key at query time, with the same aggregation as a merge (first by ``insert_time``, max).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import col
from datafusion import functions as f

__all__ = ["first_and_max", "fold_frame", "sum_by"]


def first_and_max(
    table: pa.Table, key: str, firsts: Mapping[str, str], maxes: Mapping[str, str], schema: pa.Schema
) -> pa.Table:
    """One row per ``key``: the first row's value of ``firsts`` columns, the max of ``maxes``.

    Args:
        table: the source rows (in the order that defines "first").
        key: the grouping column.
        firsts: output column → source column, taken from each group's first row.
        maxes: output column → source column (integer or timestamp), maximum over the group.
        schema: the output schema (column order and types).

    Returns:
        Groups in order of first appearance.
    """
    if table.num_rows == 0:
        return schema.empty_table()
    codes = np.asarray(
        pc.dictionary_encode(table.column(key)).combine_chunks().indices.to_numpy(zero_copy_only=False), np.int64
    )
    groups, first_rows = np.unique(codes, return_index=True)
    order = np.argsort(first_rows, kind="stable")
    groups, first_rows = groups[order], first_rows[order]
    taken = table.take(pa.array(first_rows))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {out: taken.column(src) for out, src in firsts.items()}
    position = np.full(int(codes.max()) + 1, -1, np.int64)
    position[groups] = np.arange(groups.size)
    for out, src in maxes.items():
        column = table.column(src)
        values = np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        result = np.full(groups.size, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(result, position[codes], values)
        columns[out] = pa.array(result, pa.int64()).cast(column.type)
    return pa.table([columns[f.name] for f in schema], schema=schema.remove_metadata()).cast(schema)


def fold_frame(
    frame: datafusion.DataFrame, key: str, firsts: Sequence[str], maxes: Sequence[str], schema: pa.Schema
) -> datafusion.DataFrame:
    """One row per ``key``: ``firsts`` from the row of the earliest ``insert_time``, the max of ``maxes``.

    Args:
        frame: rows of several partitions (columns of ``schema``).
        key: the grouping column.
        firsts: descriptive columns (same in every row of a key, up to the insert order).
        maxes: "last seen" columns.
        schema: the output's columns, in order.
    """
    order = [col("insert_time").sort(ascending=True)]
    aggregates = [f.first_value(col(c), order_by=order).alias(c) for c in firsts if c != key]
    aggregates += [f.max(col(c)).alias(c) for c in maxes]
    folded = frame.aggregate([col(key)], aggregates)
    return folded.select(*(col(field.name) for field in schema))


def sum_by(table: pa.Table, keys: Sequence[str], value: str, output: str, schema: pa.Schema) -> pa.Table:
    """``SELECT keys…, sum(value) AS output GROUP BY keys…`` ordered by the keys."""
    if table.num_rows == 0:
        return schema.empty_table()
    plain = pa.table({k: _plain(table.column(k)) for k in keys} | {value: table.column(value).cast(pa.int64())})
    grouped = plain.group_by(list(keys), use_threads=False).aggregate([(value, "sum")])
    grouped = grouped.select([*keys, f"{value}_sum"]).rename_columns([*keys, output])
    grouped = grouped.sort_by([(k, "ascending") for k in keys])
    return grouped.cast(schema)


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # Group-by kernels key on plain values; dictionaries are rebuilt by the final cast.
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column
