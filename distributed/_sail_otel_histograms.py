"""The OTel bucket-histogram functions on Sail: ``merge_histograms`` and ``histogram_quantile``.

``merge_histograms(bounds, delta_counts)`` is a grouped-aggregate pandas UDF over the lakehouse's
own ``MergeHistogramsAccumulator`` (same layouts, same interpolation onto the union of bounds),
and ``histogram_quantile`` a scalar pandas UDF over the lakehouse's ``histogram_quantile`` kernel,
so a quantile is the one the DataFusion sessions give.

Spark Connect refuses a struct as the result of a grouped-aggregate pandas UDF, so on Sail the
merged histogram (DataFusion's ``{bounds, counts}`` struct) is an ``array<double>``: the ``m``
bounds, then the ``m + 1`` counts (its length ``2m + 1`` says where the counts start).
``histogram_quantile`` takes that form with two arguments (``histogram_quantile(merged, q)``) and
the view's columns with three (``histogram_quantile(bounds, counts, q)``), as on DataFusion: one
variadic UDF, dispatched on the argument count.

Unpacking is vectorised (one numpy pass over the flattened arrays of a batch), so no Python runs
per histogram except to build the Arrow input from pandas' object Series.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sirius.lakehouse import MergeHistogramsAccumulator, histogram_quantile

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OTEL_HISTOGRAM_FUNCTIONS",
    "SAIL_MERGED_HISTOGRAM_TYPE",
    "pack_merged",
    "register_otel_histogram_functions",
    "unpack_merged",
]

SAIL_MERGED_HISTOGRAM_TYPE = "array<double>"
"""The Spark type of a ``merge_histograms`` result on Sail: ``[bounds…, counts…]``."""

_DOUBLES = pa.list_(pa.float64())


def pack_merged(merged: dict[str, Any] | None) -> list[float] | None:
    """The Sail form of one merged histogram (``{"bounds", "counts"}``; None stays None)."""
    if merged is None or merged.get("bounds") is None or merged.get("counts") is None:
        return None
    return [float(b) for b in merged["bounds"]] + [float(c) for c in merged["counts"]]


def unpack_merged(packed: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``(bounds, counts)`` list arrays of packed merged histograms (NULL where the length is even)."""
    if isinstance(packed, pa.ChunkedArray):
        packed = packed.combine_chunks()
    lengths = np.asarray(pc.fill_null(pc.list_value_length(packed), 0).to_numpy(zero_copy_only=False), np.int64)
    valid = (lengths % 2 == 1) & np.asarray(pc.is_valid(packed).to_numpy(zero_copy_only=False), bool)
    lengths = np.where(valid, lengths, 0)
    # Each valid row's values, read through its own offset (a NULL row may still span values).
    offsets = np.asarray(packed.offsets.to_numpy(zero_copy_only=False), np.int64)
    values = np.asarray(pc.cast(packed.values, pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    row_of = np.repeat(np.arange(len(packed)), lengths)
    within = np.arange(row_of.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    taken = values[np.repeat(offsets[:-1], lengths) + within] if row_of.size else values[:0]
    m = (lengths - 1) // 2
    is_bound = within < m[row_of]
    mask = pa.array(~valid)
    bound_offsets = pa.array(np.concatenate([[0], np.cumsum(np.where(valid, m, 0))]), pa.int32())
    count_offsets = pa.array(np.concatenate([[0], np.cumsum(np.where(valid, m + 1, 0))]), pa.int32())
    bounds = pa.ListArray.from_arrays(bound_offsets, pa.array(taken[is_bound], pa.float64()), mask=mask)
    counts = pa.ListArray.from_arrays(count_offsets, pa.array(taken[~is_bound], pa.float64()), mask=mask)
    return bounds, counts


def _lists(series: pd.Series) -> pa.Array:
    """A Series of arrays (numpy arrays per row, from Spark's Arrow batch) as ``List<Float64>``."""
    return pa.array(series, _DOUBLES, from_pandas=True)


def _doubles(series: pd.Series) -> pa.Array:
    """A numeric Series as float64 (Spark literals such as ``0.5`` arrive as Decimal objects)."""
    return pa.array(series.astype("float64"), pa.float64(), from_pandas=True)


def _merge(bounds: pd.Series, counts: pd.Series) -> list[float] | None:
    accumulator = MergeHistogramsAccumulator()
    accumulator.update(_lists(bounds), _lists(counts))
    return pack_merged(accumulator.evaluate().as_py())


def _quantile(*columns: pd.Series) -> pd.Series:
    import pandas as pd

    if len(columns) == 2:
        bounds, counts = unpack_merged(_lists(columns[0]))
    elif len(columns) == 3:
        bounds, counts = _lists(columns[0]), _lists(columns[1])
    else:
        raise TypeError(
            "histogram_quantile takes (bounds, counts, q) or (merge_histograms(bounds, counts), q),"
            f" got {len(columns)} argument(s)"
        )
    return pd.Series(histogram_quantile(bounds, counts, _doubles(columns[-1])).to_pylist(), dtype=object)


def _udfs() -> dict[str, Any]:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def merge_histograms(bounds: pd.Series, counts: pd.Series) -> float:
        return _merge(bounds, counts)  # type: ignore[return-value]

    def histogram_quantile(*columns: pd.Series) -> pd.Series:
        return _quantile(*columns)

    # pandas_udf reads its kind from the hints (set as objects: pandas is imported here only).
    # Series in and a scalar out make a grouped aggregate; its result is the packed list.
    merge_histograms.__annotations__ = {"bounds": pd.Series, "counts": pd.Series, "return": float}
    histogram_quantile.__annotations__ = {"columns": pd.Series, "return": pd.Series}
    return {
        "merge_histograms": pandas_udf(merge_histograms, SAIL_MERGED_HISTOGRAM_TYPE),  # type: ignore[call-overload]
        "histogram_quantile": pandas_udf(histogram_quantile, "double"),  # type: ignore[call-overload]
    }


OTEL_HISTOGRAM_FUNCTIONS = ("merge_histograms", "histogram_quantile")
"""Names of the functions ``register_otel_histogram_functions`` adds."""


def register_otel_histogram_functions(spark: Any, wanted: Callable[[str], bool] = lambda _: True) -> None:
    """Register ``merge_histograms`` and ``histogram_quantile`` (those ``wanted``) on a Spark Connect session."""
    for name, function in _udfs().items():
        if wanted(name):
            spark.udf.register(name, function)
