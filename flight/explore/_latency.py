"""RED figures from a latency histogram computed in SQL: requests, errors, p50/p95/p99, sparklines.

A t-digest per group (``approx_percentile_cont``) over a million spans costs hundreds of ms;
counting spans per *latency bucket* is a plain hash aggregation. The services query
(``_services_queries.red_histogram_sql``) returns, per group (service or operation) and entry
flag, the span count, error count and smallest and largest duration per latency bucket (16 per
power of two: ``floor(log2(ns) * 16)``) over the range, and per time bucket and coarser latency
bucket (4 per power of two) for the sparklines. Quantiles are read here, vectorised with numpy:
the bucket holding the rank, then linear interpolation between that bucket's smallest and
largest duration (exact when they are equal; within 4.4 % otherwise, 19 % for sparklines).

Entry spans: a group's figures count only its entry spans (SERVER/CONSUMER or root) when it has
any, else all its spans (``scope="group"``); for the operations of one service the choice is
made once for the whole service (``scope="all"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["QUANTILES", "RedFigures", "quantiles_by_key", "red_by_group"]

QUANTILES = (0.5, 0.95, 0.99)
_NS_PER_MS = 1e6


@dataclass(frozen=True, slots=True)
class RedFigures:
    """One group's figures over the range and per time bucket (durations in ms)."""

    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    spark_requests: list[int]
    spark_errors: list[int]
    spark_p95_ms: list[float | None]


def _ints(table: pa.Table, name: str) -> npt.NDArray[np.int64]:
    """The column as int64 (NULLs, which only the other grouping set's rows hold, as 0)."""
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("ns", tz="UTC")), pa.int64())
    column = pc.fill_null(pc.cast(column, pa.int64()), 0)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def quantiles_by_key(  # noqa: PLR0917 - the histogram's parallel columns
    keys: npt.NDArray[np.int64],
    buckets: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    lows: npt.NDArray[np.int64],
    highs: npt.NDArray[np.int64],
    qs: Sequence[float],
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.float64]]]:
    """Quantiles of each key's latency histogram: (the keys, one array of values per quantile).

    >>> keys, (p50,) = quantiles_by_key(np.array([0, 0, 1]), np.array([3, 5, 3]), np.array([1, 3, 2]),
    ...                                 np.array([10, 40, 7]), np.array([10, 60, 7]), [0.5])
    >>> keys.tolist(), p50.tolist()
    ([0, 1], [46.666666666666664, 7.0])
    """
    if len(keys) == 0:
        return keys, [np.zeros(0) for _ in qs]
    order = np.lexsort((buckets, keys))
    k, b = keys[order], buckets[order]
    n, lo, hi = counts[order].astype(np.float64), lows[order], highs[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = (k[1:] != k[:-1]) | (b[1:] != b[:-1])
    starts = np.flatnonzero(first)  # one row per (key, latency bucket)
    k = k[starts]
    n = np.add.reduceat(n, starts)
    lo = np.minimum.reduceat(lo, starts).astype(np.float64)
    hi = np.maximum.reduceat(hi, starts).astype(np.float64)
    group_first = np.ones(len(k), dtype=bool)
    group_first[1:] = k[1:] != k[:-1]
    group_starts = np.flatnonzero(group_first)
    totals = np.add.reduceat(n, group_starts)
    cumulative = np.cumsum(n)
    before_group = cumulative[group_starts] - n[group_starts]
    values = []
    for q in qs:
        target = before_group + q * totals
        index = np.maximum(np.searchsorted(cumulative, target, side="left"), group_starts)
        index = np.minimum(index, len(n) - 1)
        fraction = np.clip((target - (cumulative[index] - n[index])) / n[index], 0.0, 1.0)
        values.append(lo[index] + fraction * (hi[index] - lo[index]))
    return k[group_starts], values


def red_by_group(table: pa.Table, bucket_starts: Sequence[int], *, scope: str = "group") -> dict[str, RedFigures]:
    """Figures per group of the rows of ``red_histogram_sql`` (see the module docstring)."""
    if table.num_rows == 0:
        return {}
    encoded = pc.dictionary_encode(pc.cast(table.column("grp"), pa.utf8())).combine_chunks()
    names = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    entry = np.asarray(table.column("entry").to_numpy(zero_copy_only=False), dtype=bool)
    if scope == "group":
        has_entry = np.zeros(len(names), dtype=bool)
        np.logical_or.at(has_entry, codes, entry)
        keep = entry | ~has_entry[codes]
    else:
        keep = entry if entry.any() else np.ones(len(entry), dtype=bool)
    spark = keep & np.asarray(table.column("t").is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    overall = keep & ~spark
    counts, errors = _ints(table, "n"), _ints(table, "errors")
    lows, highs = _ints(table, "lo"), _ints(table, "hi")
    groups = len(names)
    slots = len(bucket_starts)
    requests = np.bincount(codes[overall], weights=counts[overall], minlength=groups)
    error_counts = np.bincount(codes[overall], weights=errors[overall], minlength=groups)
    overall_keys, overall_values = quantiles_by_key(
        codes[overall], _ints(table, "lb")[overall], counts[overall], lows[overall], highs[overall], QUANTILES
    )
    times = _ints(table, "t")[spark]
    slot = np.clip(np.searchsorted(np.asarray(bucket_starts, dtype=np.int64), times, side="right") - 1, 0, slots - 1)
    cell = codes[spark] * slots + slot
    spark_counts, spark_errs = counts[spark], errors[spark]
    spark_requests = np.bincount(cell, weights=spark_counts, minlength=groups * slots).reshape(groups, slots)
    spark_errors = np.bincount(cell, weights=spark_errs, minlength=groups * slots).reshape(groups, slots)
    cell_keys, (cell_p95,) = quantiles_by_key(
        cell, _ints(table, "lb4")[spark], spark_counts, lows[spark], highs[spark], (0.95,)
    )
    p95_cells = np.full(groups * slots, np.nan)
    p95_cells[cell_keys] = cell_p95
    p95_cells = p95_cells.reshape(groups, slots)
    figures: dict[int, list[float | None]] = {
        int(key): [float(v[i]) / _NS_PER_MS for v in overall_values] for i, key in enumerate(overall_keys)
    }
    out = {}
    for code, name in enumerate(names):
        if requests[code] == 0:
            continue
        p50, p95, p99 = figures.get(code, [None, None, None])
        out[name] = RedFigures(
            requests=int(requests[code]),
            errors=int(error_counts[code]),
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            spark_requests=[int(v) for v in spark_requests[code]],
            spark_errors=[int(v) for v in spark_errors[code]],
            spark_p95_ms=[None if np.isnan(v) else float(v) / _NS_PER_MS for v in p95_cells[code]],
        )
    return out
