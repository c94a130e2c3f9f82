"""Histograms in SQL: ``make_histogram``, ``sum_histograms`` and the functions that read them.

A histogram is a struct (micromegas-query.md §9.3)::

    {start f64, end f64, min f64, max f64, sum f64, sum_sq f64, count u64, bins List<UInt64>}

``make_histogram(start, end, nb_bins, value)`` puts a value in bin
``clamp(floor((v - start) / ((end - start) / nb_bins)), 0, nb_bins - 1)`` (out-of-range values
land in the edge bins); ``sum_histograms`` adds histograms of identical layout bin by bin.
Accumulation is numpy (``bincount`` over a whole batch); the readers work on whole columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import Accumulator

__all__ = [
    "EXPAND_HISTOGRAM_SCHEMA",
    "HISTOGRAM_TYPE",
    "HistogramAccumulator",
    "SumHistogramsAccumulator",
    "count_from_histogram",
    "expand_histogram_table",
    "histogram_scalar_udfs",
    "quantile_from_histogram",
    "sum_from_histogram",
    "variance_from_histogram",
]

HISTOGRAM_TYPE = pa.struct(
    [
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("sum", pa.float64()),
        ("sum_sq", pa.float64()),
        ("count", pa.uint64()),
        ("bins", pa.list_(pa.uint64())),
    ]
)
EXPAND_HISTOGRAM_SCHEMA = pa.schema([("bin_center", pa.float64()), ("count", pa.uint64())])


class _Histogram:
    """Mutable accumulation state; ``bins`` is None until the layout is known."""

    __slots__ = ("bins", "count", "end", "max", "min", "start", "sum", "sum_sq")

    def __init__(self) -> None:
        self.start = 0.0
        self.end = 0.0
        self.bins: np.ndarray | None = None
        self.min = np.inf
        self.max = -np.inf
        self.sum = 0.0
        self.sum_sq = 0.0
        self.count = 0

    def layout(self, start: float, end: float, nb_bins: int) -> None:
        if self.bins is not None:
            return
        if nb_bins <= 0:
            msg = f"make_histogram: the number of bins must be positive, got {nb_bins}"
            raise ValueError(msg)
        if not end > start:
            msg = f"make_histogram: end ({end}) must be greater than start ({start})"
            raise ValueError(msg)
        self.start, self.end = float(start), float(end)
        self.bins = np.zeros(int(nb_bins), dtype=np.uint64)

    def add_values(self, values: np.ndarray) -> None:
        assert self.bins is not None  # noqa: S101 - layout() runs first
        if values.size == 0:
            return
        nb_bins = self.bins.size
        width = (self.end - self.start) / nb_bins
        index = np.floor((values - self.start) / width)
        index = np.clip(np.nan_to_num(index, nan=0.0), 0, nb_bins - 1).astype(np.int64)
        self.bins += np.bincount(index, minlength=nb_bins).astype(np.uint64)
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.sum += float(values.sum())
        self.sum_sq += float(np.dot(values, values))
        self.count += int(values.size)

    def merge(self, row: dict[str, Any]) -> None:
        if row is None or row.get("bins") is None:
            return
        other = np.asarray(row["bins"], dtype=np.uint64)
        if self.bins is None:
            self.start, self.end = float(row["start"]), float(row["end"])
            self.bins = np.zeros(other.size, dtype=np.uint64)
        if other.size != self.bins.size or row["start"] != self.start or row["end"] != self.end:
            msg = "sum_histograms: histograms have different layouts (start, end or number of bins)"
            raise ValueError(msg)
        self.bins += other
        if row["count"]:
            self.min = min(self.min, row["min"])
            self.max = max(self.max, row["max"])
        self.sum += row["sum"]
        self.sum_sq += row["sum_sq"]
        self.count += int(row["count"])

    def scalar(self) -> pa.Scalar:
        if self.bins is None:
            return pa.scalar(None, HISTOGRAM_TYPE)
        empty = self.count == 0
        return pa.scalar(
            {
                "start": self.start,
                "end": self.end,
                "min": None if empty else self.min,
                "max": None if empty else self.max,
                "sum": self.sum,
                "sum_sq": self.sum_sq,
                "count": self.count,
                "bins": self.bins.tolist(),
            },
            HISTOGRAM_TYPE,
        )


def _first_valid(array: pa.Array) -> Any:
    valid = array.drop_null()
    return valid[0].as_py() if len(valid) else None


class HistogramAccumulator(Accumulator):
    """``make_histogram(start f64, end f64, nb_bins i64, value f64)`` aggregate."""

    def __init__(self) -> None:
        self._h = _Histogram()

    def update(self, start: pa.Array, end: pa.Array, nb_bins: pa.Array, values: pa.Array) -> None:  # type: ignore[override]
        """Add a batch of values."""
        values = values.drop_null()
        layout = (_first_valid(start), _first_valid(end), _first_valid(nb_bins))
        if None in layout:
            return
        self._h.layout(*layout)
        self._h.add_values(values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))

    def merge(self, states: list[pa.Array]) -> None:
        """Combine partial histograms."""
        for row in states[0].to_pylist():
            self._h.merge(row)

    def state(self) -> list[pa.Scalar]:
        """Partial histogram."""
        return [self._h.scalar()]

    def evaluate(self) -> pa.Scalar:
        """Final histogram."""
        return self._h.scalar()


class SumHistogramsAccumulator(Accumulator):
    """``sum_histograms(histogram)`` aggregate: bin-by-bin sum of same-layout histograms."""

    def __init__(self) -> None:
        self._h = _Histogram()

    def update(self, histograms: pa.Array) -> None:  # type: ignore[override]
        """Add a batch of histograms."""
        for row in histograms.to_pylist():
            self._h.merge(row)

    def merge(self, states: list[pa.Array]) -> None:
        """Combine partial sums."""
        self.update(states[0])

    def state(self) -> list[pa.Scalar]:
        """Partial sum."""
        return [self._h.scalar()]

    def evaluate(self) -> pa.Scalar:
        """Final sum."""
        return self._h.scalar()


def _field(histograms: pa.Array, name: str) -> np.ndarray:
    return pc.struct_field(histograms, name).to_numpy(zero_copy_only=False)


def count_from_histogram(histograms: pa.Array) -> pa.Array:
    """``count_from_histogram(h) → UInt64``."""
    return pc.struct_field(histograms, "count").cast(pa.uint64())


def sum_from_histogram(histograms: pa.Array) -> pa.Array:
    """``sum_from_histogram(h) → Float64``."""
    return pc.struct_field(histograms, "sum").cast(pa.float64())


def variance_from_histogram(histograms: pa.Array) -> pa.Array:
    """``variance_from_histogram(h) → Float64``: population variance from the sums (NULL when empty)."""
    count = pc.struct_field(histograms, "count").cast(pa.float64())
    total = pc.struct_field(histograms, "sum")
    total_sq = pc.struct_field(histograms, "sum_sq")
    nonzero = pc.if_else(pc.greater(count, 0), count, None)
    mean = pc.divide(total, nonzero)
    return pc.subtract(pc.divide(total_sq, nonzero), pc.multiply(mean, mean))


def quantile_from_histogram(histograms: pa.Array, quantiles: pa.Array) -> pa.Array:
    """``quantile_from_histogram(h, q) → Float64``, linear interpolation inside the bin.

    The rank ``q * count`` is located in the cumulative bin counts; the value moves linearly from
    the bin's lower edge to its upper edge as the rank crosses the bin. NULL for an empty
    histogram or a NULL/out-of-[0, 1] quantile.
    """
    out = np.full(len(histograms), np.nan)
    valid = np.zeros(len(histograms), dtype=bool)
    starts, ends = _field(histograms, "start"), _field(histograms, "end")
    q = quantiles.cast(pa.float64()).to_numpy(zero_copy_only=False)
    bins_column = pc.struct_field(histograms, "bins")
    for i, bins in enumerate(bins_column.to_pylist()):
        if not bins or histograms[i].as_py() is None or np.isnan(q[i]) or not 0.0 <= q[i] <= 1.0:
            continue
        counts = np.asarray(bins, dtype=np.float64)
        total = counts.sum()
        if total == 0:
            continue
        cumulative = np.cumsum(counts)
        rank = q[i] * total
        b = int(np.searchsorted(cumulative, rank, side="left"))
        b = min(b, counts.size - 1)
        before = cumulative[b] - counts[b]
        fraction = 0.0 if counts[b] == 0 else (rank - before) / counts[b]
        width = (ends[i] - starts[i]) / counts.size
        out[i] = starts[i] + (b + fraction) * width
        valid[i] = True
    return pa.array(out, pa.float64(), mask=~valid)


def expand_histogram_table(histogram: dict[str, Any] | None) -> pa.Table:
    """Rows of ``expand_histogram(h)``: one ``(bin_center, count)`` per bin."""
    if not histogram or histogram.get("bins") is None:
        return EXPAND_HISTOGRAM_SCHEMA.empty_table()
    counts = np.asarray(histogram["bins"], dtype=np.uint64)
    width = (histogram["end"] - histogram["start"]) / max(counts.size, 1)
    centers = histogram["start"] + (np.arange(counts.size) + 0.5) * width
    return pa.table({"bin_center": pa.array(centers, pa.float64()), "count": pa.array(counts, pa.uint64())})


def histogram_scalar_udfs() -> list[tuple[str, Any, list[pa.DataType], pa.DataType]]:
    """``(name, function, input types, return type)`` of the histogram readers."""
    return [
        ("quantile_from_histogram", quantile_from_histogram, [HISTOGRAM_TYPE, pa.float64()], pa.float64()),
        ("variance_from_histogram", variance_from_histogram, [HISTOGRAM_TYPE], pa.float64()),
        ("count_from_histogram", count_from_histogram, [HISTOGRAM_TYPE], pa.uint64()),
        ("sum_from_histogram", sum_from_histogram, [HISTOGRAM_TYPE], pa.float64()),
    ]
