"""``merge_histograms(bounds, counts)`` and ``histogram_quantile(merged, q)``: OTel histograms over a window.

The ``histograms`` view gives every point as explicit ``bounds``/``counts`` (exponential points
converted) and, in ``delta_counts``, what the point adds to its series whatever its temporality.
Summing ``delta_counts`` over the rows of a window therefore counts what was recorded in it::

    SELECT service_name, histogram_quantile(merge_histograms(bounds, delta_counts), 0.99) AS p99
    FROM histograms WHERE name = 'http.server.duration' AND time >= now() - INTERVAL '1 hour'
    GROUP BY service_name

``merge_histograms`` is an aggregate returning ``{bounds List<Float64>, counts List<Float64>}``
(``len(counts) = len(bounds) + 1``, as the view's columns). Rows with the same bounds (the
usual case: one instrument, one SDK) are added bucket by bucket, exactly. Rows with different
bounds (other boundaries, exponential points of other scales) are put on the union of all
bounds: each row's cumulative count is interpolated linearly between its own bounds (the first
bucket's lower edge taken as 0 when its bound is positive, as ``histogram_quantile`` does), and
its overflow bucket lands just above its highest bound; exponential buckets of a coarser scale
split that way, and finer ones add up exactly, since their bounds coincide. Rows whose counts
are NULL (unknown deltas) or malformed are skipped.

``histogram_quantile(merged, q)`` (two arguments; the SQL name is rewritten by arity, see
``_sql_functions.ARITY_RENAMES``) is ``histogram_quantile(bounds, counts, q)`` of the merge.
Accumulation groups the rows of a batch by layout with numpy (``unique`` over the stacked
bounds), so no Python runs per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import Accumulator

from ._sql_bucket_histograms import histogram_quantile

__all__ = [
    "MERGED_HISTOGRAM_QUANTILE",
    "MERGED_HISTOGRAM_TYPE",
    "MergeHistogramsAccumulator",
    "merge_histogram_udfs",
    "merge_histograms_udaf_args",
    "merge_layouts",
    "merged_histogram_quantile",
]

MERGED_HISTOGRAM_TYPE = pa.struct([("bounds", pa.list_(pa.float64())), ("counts", pa.list_(pa.float64()))])
"""Result of ``merge_histograms``."""
_STATE_TYPE = pa.struct([("bounds", pa.list_(pa.list_(pa.float64()))), ("counts", pa.list_(pa.list_(pa.float64())))])
MERGED_HISTOGRAM_QUANTILE = "histogram_quantile__merged"
"""The registered name of the two-argument ``histogram_quantile``."""

_Layout = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _rows(bounds: pa.Array, counts: pa.Array) -> tuple[list[npt.NDArray[np.float64]], list[npt.NDArray[np.float64]]]:
    """Per bound count: the stacked bounds and counts of the well-formed rows (2-D arrays)."""
    if isinstance(bounds, pa.ChunkedArray):
        bounds = bounds.combine_chunks()
    if isinstance(counts, pa.ChunkedArray):
        counts = counts.combine_chunks()
    b_len = np.asarray(pc.fill_null(pc.list_value_length(bounds), -1).to_numpy(zero_copy_only=False), np.int64)
    c_len = np.asarray(pc.fill_null(pc.list_value_length(counts), -1).to_numpy(zero_copy_only=False), np.int64)
    ok = (b_len >= 0) & (c_len == b_len + 1)
    if not ok.all():
        keep = pa.array(ok)
        bounds, counts, b_len = bounds.filter(keep), counts.filter(keep), b_len[ok]
    b_flat = np.asarray(pc.cast(bounds.flatten(), pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    c_flat = np.asarray(pc.cast(counts.flatten(), pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    c_flat = np.where(np.isfinite(c_flat) & (c_flat > 0), c_flat, 0.0)
    b_start = np.concatenate([[0], np.cumsum(b_len)[:-1]]).astype(np.int64) if b_len.size else b_len
    c_start = b_start + np.arange(b_len.size)
    out_b, out_c = [], []
    for m in np.unique(b_len).tolist():
        rows = np.flatnonzero(b_len == m)
        out_b.append(b_flat[b_start[rows][:, None] + np.arange(m)])
        out_c.append(c_flat[c_start[rows][:, None] + np.arange(m + 1)])
    return out_b, out_c


class _Layouts:
    """Summed counts per distinct bounds."""

    def __init__(self) -> None:
        self.by_bounds: dict[bytes, _Layout] = {}

    def add(self, bounds: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]) -> None:
        """Add rows (2-D: one row per histogram, all with ``bounds.shape[1]`` bounds)."""
        if bounds.shape[0] == 0:
            return
        unique, inverse = np.unique(bounds, axis=0, return_inverse=True)
        sums = np.zeros((unique.shape[0], counts.shape[1]), np.float64)
        np.add.at(sums, inverse.reshape(-1), counts)
        for row in range(unique.shape[0]):
            key = unique[row].tobytes()
            before = self.by_bounds.get(key)
            self.by_bounds[key] = (unique[row], sums[row] if before is None else before[1] + sums[row])

    def state(self) -> pa.Scalar:
        layouts = list(self.by_bounds.values())
        return pa.scalar(
            {"bounds": [b.tolist() for b, _ in layouts], "counts": [c.tolist() for _, c in layouts]}, _STATE_TYPE
        )

    def merge_state(self, state: dict[str, Any] | None) -> None:
        if not state or state.get("bounds") is None:
            return
        for bounds, counts in zip(state["bounds"], state["counts"], strict=True):
            b, c = np.asarray(bounds, np.float64), np.asarray(counts, np.float64)
            self.add(b.reshape(1, -1), c.reshape(1, -1))


def _on(bounds: npt.NDArray[np.float64], counts: npt.NDArray[np.float64], union: npt.NDArray[np.float64]) -> Any:
    """The counts of one layout spread over the buckets of ``union`` (a superset of its bounds)."""
    total = float(counts.sum())
    if bounds.size == 0:
        out = np.zeros(union.size + 1)
        out[-1 if union.size == 0 else 0] = total  # one bucket with everything: put it first
        return out
    cumulative = np.cumsum(counts)[: bounds.size]
    low = 0.0 if bounds[0] > 0 else bounds[0]
    xs = np.concatenate([[low], bounds]) if low < bounds[0] else bounds
    ys = np.concatenate([[0.0], cumulative]) if low < bounds[0] else cumulative
    at = np.interp(union, xs, ys, left=0.0, right=total)
    return np.diff(np.concatenate([[0.0], at, [total]]))


def merge_layouts(layouts: list[_Layout]) -> tuple[list[float], list[float]] | None:
    """One ``(bounds, counts)`` for several, on the union of their bounds (see the module docstring)."""
    if not layouts:
        return None
    if len(layouts) == 1:
        bounds, counts = layouts[0]
        return bounds.tolist(), counts.tolist()
    union = np.unique(np.concatenate([b for b, _ in layouts]))
    merged = np.zeros(union.size + 1)
    for bounds, counts in layouts:
        merged += _on(bounds, counts, union)
    return union.tolist(), np.maximum(merged, 0.0).tolist()


class MergeHistogramsAccumulator(Accumulator):
    """``merge_histograms(bounds List<Float64>, counts List<Float64>)`` aggregate."""

    def __init__(self) -> None:
        self._layouts = _Layouts()

    def update(self, bounds: pa.Array, counts: pa.Array) -> None:  # type: ignore[override]
        """Add a batch of histograms."""
        for b, c in zip(*_rows(bounds, counts), strict=True):
            self._layouts.add(b, c)

    def merge(self, states: list[pa.Array]) -> None:
        """Combine partial merges (their layouts, exactly)."""
        for state in states[0].to_pylist():
            self._layouts.merge_state(state)

    def state(self) -> list[pa.Scalar]:
        """The distinct layouts and their summed counts."""
        return [self._layouts.state()]

    def evaluate(self) -> pa.Scalar:
        """The merged histogram (NULL when no row had counts)."""
        merged = merge_layouts(list(self._layouts.by_bounds.values()))
        if merged is None:
            return pa.scalar(None, MERGED_HISTOGRAM_TYPE)
        return pa.scalar({"bounds": merged[0], "counts": merged[1]}, MERGED_HISTOGRAM_TYPE)


def merged_histogram_quantile(histograms: pa.Array, quantiles: pa.Array) -> pa.Array:
    """``histogram_quantile(merge_histograms(…), q) → Float64``.

    >>> h = pa.array([{"bounds": [10.0, 20.0, 30.0], "counts": [0.0, 50.0, 50.0, 0.0]}], MERGED_HISTOGRAM_TYPE)
    >>> merged_histogram_quantile(h, pa.array([0.75])).to_pylist()
    [25.0]
    """
    if isinstance(histograms, pa.ChunkedArray):
        histograms = histograms.combine_chunks()
    bounds = pc.struct_field(histograms, "bounds")
    counts = pc.struct_field(histograms, "counts")
    valid = pc.is_valid(histograms)
    return histogram_quantile(pc.if_else(valid, bounds, None), pc.if_else(valid, counts, None), quantiles)


def merge_histogram_udfs() -> list[tuple[str, Any, list[pa.DataType], pa.DataType]]:
    """``(name, function, input types, return type)`` of the scalar function over merged histograms."""
    return [(MERGED_HISTOGRAM_QUANTILE, merged_histogram_quantile, [MERGED_HISTOGRAM_TYPE, pa.float64()], pa.float64())]


def merge_histograms_udaf_args() -> tuple[list[pa.DataType], pa.DataType, list[pa.DataType]]:
    """``(input types, return type, state types)`` of ``merge_histograms``."""
    return [pa.list_(pa.float64()), pa.list_(pa.float64())], MERGED_HISTOGRAM_TYPE, [_STATE_TYPE]
