"""``histogram_quantile(bounds, counts, q)``: quantiles of bucketed (OTel) histograms.

The ``histograms`` view gives every OTLP histogram as explicit ``bounds`` (ascending) and
bucket ``counts`` with ``len(counts) = len(bounds) + 1``: bucket ``0`` is ``(-inf, bounds[0]]``,
bucket ``k`` is ``(bounds[k-1], bounds[k]]``, the last is ``(bounds[-1], +inf)``. The estimate
follows Prometheus's ``histogram_quantile``: find the bucket holding rank ``q · total`` and
interpolate linearly inside it; the first bucket's lower edge is taken as 0 when its upper
bound is positive (else the upper bound is returned); a rank in the last, unbounded bucket
returns the highest bound. NULL for an empty histogram, a malformed one (counts not one longer
than bounds) or ``q`` outside ``[0, 1]``.

Computed on whole columns: the lists are flattened once and every step is a numpy operation
over all rows (cumulative sums per row, the first bucket reaching the rank by a
``minimum.reduceat``), so no Python runs per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["bucket_histogram_udfs", "histogram_quantile"]


def _flat(lists: pa.Array) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Values of all rows, each row's start in them, and each row's length (0 for NULL)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lengths = np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False), np.int64)
    values = np.asarray(pc.cast(lists.flatten(), pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    starts = np.zeros(lengths.size, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return values, starts, lengths


def histogram_quantile(bounds: pa.Array, counts: pa.Array, quantiles: pa.Array) -> pa.Array:
    """``histogram_quantile(bounds List<Float64>, counts List<Float64>, q Float64) → Float64``.

    >>> b = pa.array([[10.0, 20.0, 30.0]]); c = pa.array([[0.0, 50.0, 50.0, 0.0]])
    >>> histogram_quantile(b, c, pa.array([0.5])).to_pylist(), histogram_quantile(b, c, pa.array([0.75])).to_pylist()
    ([20.0], [25.0])
    """
    n = len(counts)
    b_values, b_starts, b_lengths = _flat(bounds)
    c_values, c_starts, c_lengths = _flat(counts)
    q = np.asarray(pc.cast(quantiles, pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    q = np.broadcast_to(q, (n,)) if q.size == 1 else q
    c_values = np.where(np.isfinite(c_values) & (c_values > 0), c_values, 0.0)
    cumulative = np.cumsum(c_values)
    before_row = np.where(c_starts > 0, cumulative[np.maximum(c_starts - 1, 0)] if c_values.size else 0.0, 0.0)
    row_of = np.repeat(np.arange(n), c_lengths)
    in_row = cumulative - before_row[row_of]
    last = c_starts + c_lengths - 1
    totals = np.where(c_lengths > 0, in_row[np.maximum(last, 0)] if c_values.size else 0.0, 0.0)
    valid = (
        (c_lengths == b_lengths + 1)
        & (totals > 0)
        & ~np.isnan(q)
        & (q >= 0.0)
        & (q <= 1.0)
        & np.asarray(pc.is_valid(counts).to_numpy(zero_copy_only=False), bool)
        & np.asarray(pc.is_valid(bounds).to_numpy(zero_copy_only=False), bool)
    )
    rank = q * totals
    # first bucket of each row whose cumulative count reaches the rank (and holds something)
    reaches = (in_row >= rank[row_of]) & (c_values > 0)
    position = np.where(reaches, np.arange(c_values.size), np.iinfo(np.int64).max)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    rows = np.flatnonzero(c_lengths > 0)
    if rows.size:
        first[rows] = np.minimum.reduceat(position, c_starts[rows])
    valid &= first != np.iinfo(np.int64).max
    k = np.where(valid, first - c_starts, 0)
    m = b_lengths

    def bound(index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        ok = valid & (index >= 0) & (index < m)
        at = np.where(ok, b_starts + index, 0)
        return np.where(ok, b_values[at] if b_values.size else 0.0, np.nan)

    upper = bound(k)
    lower = bound(k - 1)
    first_bucket = k == 0
    lower = np.where(first_bucket, 0.0, lower)
    count_k = np.where(valid, c_values[np.where(valid, first, 0)] if c_values.size else 1.0, 1.0)
    below = np.where(valid, in_row[np.where(valid, first, 0)] if c_values.size else 0.0, 0.0) - count_k
    fraction = np.clip((rank - below) / count_k, 0.0, 1.0)
    result = lower + (upper - lower) * fraction
    result = np.where(first_bucket & (upper <= 0.0), upper, result)  # first bucket below zero: its bound
    overflow = k == m
    result = np.where(overflow, bound(m - 1), result)  # unbounded last bucket: the highest bound
    valid &= ~np.isnan(result)
    return pa.array(np.where(valid, result, 0.0), pa.float64(), mask=~valid)


def bucket_histogram_udfs() -> list[tuple[str, Any, list[pa.DataType], pa.DataType]]:
    """``(name, function, input types, return type)`` of the bucketed-histogram functions."""
    return [
        (
            "histogram_quantile",
            histogram_quantile,
            [pa.list_(pa.float64()), pa.list_(pa.float64()), pa.float64()],
            pa.float64(),
        )
    ]
