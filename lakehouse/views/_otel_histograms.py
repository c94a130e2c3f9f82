"""``histograms`` rows of OTLP metric blocks, with bucket deltas so one merge fits every temporality.

The rows keep each point as sent (``_otel_histogram_rows``) and add ``delta_counts``: the
bucket counts the point adds to its series, laid out like its own ``bounds``/``counts``:

* delta points: their counts;
* cumulative points: their counts minus the previous point's of the same series (stream,
  name, property set), in the current point's layout: explicit buckets must have the same
  bounds; an exponential previous point is downscaled to the current scale first (the SDK only
  lowers the scale of a cumulative series). A new ``start_time_unix_nano``, a bucket that went
  down or a layout that does not fit is a **reset**: the delta is the point's own counts (what
  was recorded since its start). A series' first point in a partition is compared with the
  last point of up to ``HISTORY_BLOCKS`` earlier blocks of its stream; when it is not there and
  the series may have begun before them, ``delta_counts`` is NULL (unknown) rather than a guess;
* ``unspecified`` temporality: NULL.

So ``merge_histograms(bounds, delta_counts)`` over any time window sums what was recorded in
it, whatever exporter sent the points (``_sql_histogram_merge``). The per-series walk runs per
point (as the decoding does), each step a numpy operation over the point's buckets.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._block_source import SourceBatch
from .._otlp_payloads import unix_ns
from ._columns import BlockRows, dictionary_strings, timestamps
from ._metric_history import EarlierBlocks, metric_blocks, read_earlier_blocks
from ._otel_histogram_rows import HistogramRows, SeriesKey, exponential_as_explicit
from ._otel_metrics import DecodedMetrics, decode_metrics

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["bucket_deltas", "derive_bucket_deltas", "otlp_histograms", "prepare_histogram_history"]

_CONTEXT_KEY = "otlp_histograms"
_Deltas = list[list[int] | None]


@dataclass(frozen=True, slots=True)
class _Point:
    """One point's buckets in comparable form."""

    time: int
    start: int
    exponential: bool
    counts: npt.NDArray[np.int64]  # explicit counts (derived for exponential points)
    bounds: npt.NDArray[np.float64]
    scale: int = 0
    zero_count: int = 0
    zero_threshold: float = 0.0
    pos: tuple[int, npt.NDArray[np.int64]] = (0, np.empty(0, np.int64))
    neg: tuple[int, npt.NDArray[np.int64]] = (0, np.empty(0, np.int64))


def _point(h: HistogramRows, row: int) -> _Point:
    counts = np.asarray(h.bucket_counts[row], np.int64)
    bounds = np.asarray(h.bounds[row], np.float64)
    if h.kinds[row] != "exponential":
        return _Point(h.times[row], h.starts[row], False, counts, bounds)
    return _Point(
        h.times[row],
        h.starts[row],
        True,
        counts,
        bounds,
        int(h.scales[row] or 0),
        int(h.zero_counts[row] or 0),
        float(h.zero_thresholds[row] or 0.0),
        (int(h.pos_offsets[row] or 0), np.asarray(h.pos_counts[row] or [], np.int64)),
        (int(h.neg_offsets[row] or 0), np.asarray(h.neg_counts[row] or [], np.int64)),
    )


def _aligned(previous: tuple[int, npt.NDArray[np.int64]], shift: int, current: tuple[int, int]) -> Any:
    """A previous bucket range downscaled by ``shift`` and laid over ``current`` = (offset, length); None if outside."""
    offset, counts = previous
    start, length = current
    used = np.flatnonzero(counts)
    index = (offset + used) >> shift
    if used.size and (index.min() < start or index.max() >= start + length):
        return None
    out = np.zeros(length, np.int64)
    np.add.at(out, index - start, counts[used])
    return out


def bucket_deltas(current: _Point, previous: _Point) -> list[int] | None:
    """``current - previous`` in ``current``'s explicit layout; None on a reset (see the module docstring)."""
    if current.start != previous.start or current.exponential != previous.exponential:
        return None
    if not current.exponential:
        same = current.bounds.shape == previous.bounds.shape and np.array_equal(current.bounds, previous.bounds)
        delta = current.counts - previous.counts if same else None
        return None if delta is None or (delta < 0).any() else delta.tolist()
    return _exponential_deltas(current, previous)


def _exponential_deltas(current: _Point, previous: _Point) -> list[int] | None:
    shift = previous.scale - current.scale
    if shift < 0:
        return None
    parts = []
    for now, before in ((current.pos, previous.pos), (current.neg, previous.neg)):
        aligned = _aligned(before, shift, (now[0], now[1].size))
        if aligned is None:
            return None
        parts.append(now[1] - aligned)
    zero = current.zero_count - previous.zero_count
    if zero < 0 or any((p < 0).any() for p in parts):
        return None
    pos, neg = ((current.pos[0], parts[0].tolist()), (current.neg[0], parts[1].tolist()))
    _, counts = exponential_as_explicit(current.scale, zero, current.zero_threshold, pos, neg)
    return counts


@dataclass(frozen=True, slots=True)
class _History:
    last: dict[SeriesKey, _Point]
    complete: frozenset[uuid.UUID]
    horizon: dict[uuid.UUID, int]


_NO_HISTORY = _History({}, frozenset(), {})


def derive_bucket_deltas(h: HistogramRows, history: _History = _NO_HISTORY) -> _Deltas:
    """The ``delta_counts`` column of decoded rows (None = NULL)."""
    out: _Deltas = [None] * len(h.times)
    previous: dict[SeriesKey, _Point] = {}
    order = np.argsort(unix_ns(h.times), kind="stable") if h.times else np.empty(0, np.int64)
    for row in order.tolist():
        temporality = h.temporalities[row]
        if temporality == "delta":
            out[row] = list(h.bucket_counts[row])
            continue
        if temporality != "cumulative":
            continue
        key = h.series(row)
        point = _point(h, row)
        before = previous.get(key) or history.last.get(key)
        if before is not None and before.time < point.time:
            delta = bucket_deltas(point, before)
            out[row] = list(h.bucket_counts[row]) if delta is None else delta
        elif key[0] in history.complete or point.start >= history.horizon.get(key[0], 2**63):
            out[row] = list(h.bucket_counts[row])  # the series began here
        previous[key] = point
    return out


def _first_times(h: HistogramRows) -> dict[SeriesKey, int]:
    first: dict[SeriesKey, int] = {}
    for row, temporality in enumerate(h.temporalities):
        if temporality == "cumulative":
            key = h.series(row)
            first[key] = min(first.get(key, h.times[row]), h.times[row])
    return first


def _last_points(
    batch: SourceBatch, earlier: EarlierBlocks, decoded: DecodedMetrics, wanted: dict[SeriesKey, int]
) -> dict[SeriesKey, _Point]:
    stored = earlier.batch(batch)
    if stored is None:
        return {}
    h = decode_metrics(stored, decoded.props, measures=False, histograms=True).histograms
    assert h is not None  # noqa: S101 - asked for above
    last: dict[SeriesKey, _Point] = {}
    for row, temporality in enumerate(h.temporalities):
        key = h.series(row)
        time = h.times[row]
        wanted_here = temporality == "cumulative" and key in wanted and time < wanted[key]
        if wanted_here and (key not in last or time > last[key].time):
            last[key] = _point(h, row)
    return last


async def prepare_histogram_history(lake: Lakehouse, batch: SourceBatch) -> None:
    """Decode the OTLP metric blocks of ``batch`` and derive ``delta_counts`` with earlier blocks.

    Stores the result in ``batch.context`` for ``otlp_histograms``.
    """
    sub = metric_blocks(batch)
    if sub is None:
        return
    decoded = await asyncio.to_thread(decode_metrics, sub, None, measures=False, histograms=True)
    h = decoded.histograms
    assert h is not None  # noqa: S101 - asked for above
    first = _first_times(h)
    earlier = await read_earlier_blocks(lake, sub, {key[0] for key in first})
    last = await asyncio.to_thread(_last_points, batch, earlier, decoded, first)
    deltas = derive_bucket_deltas(h, _History(last, earlier.complete, earlier.horizon))
    batch.context[_CONTEXT_KEY] = (decoded, deltas)


def _list(values: Sequence[Any], item: pa.DataType) -> pa.Array:
    return pa.array(values, pa.list_(item))


def otlp_histograms(batch: SourceBatch, schema: pa.Schema) -> pa.Table:
    """``histograms`` rows of the ``otlp/v1/metrics`` blocks of ``batch``, in ``schema``.

    Uses what ``prepare_histogram_history`` derived for these blocks when it ran.
    """
    prepared = batch.context.get(_CONTEXT_KEY)
    if prepared is not None and prepared[0].block_ids == [b.block_id for b in batch.blocks]:
        decoded, deltas = prepared
    else:
        decoded = decode_metrics(batch, measures=False, histograms=True)
        assert decoded.histograms is not None  # noqa: S101 - asked for above
        deltas = derive_bucket_deltas(decoded.histograms)
    h = decoded.histograms
    rows = BlockRows(batch, h.counts)
    starts = unix_ns(h.starts)
    return pa.table(
        [
            *rows.context_columns(),
            timestamps(unix_ns(h.times)),
            pa.array(starts, pa.int64(), mask=starts == 0).cast(schema.field("start_time").type),
            dictionary_strings(pa.array(h.targets, pa.string())),
            dictionary_strings(pa.array(h.names, pa.string())),
            dictionary_strings(pa.array(h.units, pa.string())),
            dictionary_strings(pa.array(h.kinds, pa.string())),
            dictionary_strings(pa.array(h.temporalities, pa.string())),
            pa.array(h.totals, pa.uint64()),
            pa.array(h.sums, pa.float64()),
            pa.array(h.mins, pa.float64()),
            pa.array(h.maxes, pa.float64()),
            _list(h.bounds, pa.float64()),
            _list(h.bucket_counts, pa.uint64()),
            pa.array(h.scales, pa.int32()),
            pa.array(h.zero_counts, pa.uint64()),
            pa.array(h.zero_thresholds, pa.float64()),
            pa.array(h.pos_offsets, pa.int32()),
            _list(h.pos_counts, pa.uint64()),
            pa.array(h.neg_offsets, pa.int32()),
            _list(h.neg_counts, pa.uint64()),
            decoded.props.column(h.props),
            rows.process_properties(),
            _list(deltas, pa.uint64()),
            rows.service_name(),
        ],
        schema=schema,
    )
