"""OTLP metric points as ``measures`` rows and ``histograms`` rows (``otlp.md`` §10.4).

``measures`` (one row per value, ``target`` = scope name, properties = the point's attributes
plus ``otel.metric.kind`` and, for sums, ``otel.metric.aggregation_temporality`` (the number)
and ``otel.metric.is_monotonic``; ``Metric.metadata`` as ``otel.metric.metadata.<key>``):

* Gauge and Sum points: one row each, ``as_int`` widened to f64;
* Summary points: ``<name>_count``, ``<name>_sum``, ``<name>_min`` / ``<name>_max`` when the
  quantiles 0 / 1 are present (as Micromegas), and one ``<name>`` row per quantile with a
  ``quantile`` property (Sirius);
* Histogram and ExponentialHistogram points: ``<name>_count``, and ``_sum`` / ``_min`` / ``_max``
  when the point has them; the buckets go to the ``histograms`` view.

Points with a zero ``time_unix_nano`` (rejected by the receivers) or the ``NO_RECORDED_VALUE``
flag (a staleness marker: never written as 0) are dropped.

The ``delta`` column Sirius appends to ``measures`` makes ``SUM(delta)`` over a time range mean
"increase" for every temporality: the value itself for delta sums and for the counts and sums
of delta histograms; for cumulative monotonic series (monotonic sums, the ``_count``/``_sum``
of cumulative histograms and of summaries) the difference with the previous point of the same
series (stream, name, property set), or the value itself after a reset (a new
``start_time_unix_nano`` or a smaller value) or at the series' first point; NULL elsewhere.
The previous point of a series' first row in a partition is looked up in up to
``HISTORY_BLOCKS`` earlier blocks of its stream (``prepare_history``, ``_metric_history``); when it is not there and
the series may have started before them, the delta is NULL (unknown) rather than a guess.

``histograms`` rows (``HistogramRows``, when asked for) keep the OTLP buckets as they are and
also as explicit ``bounds``/``counts``; ``_otel_histograms`` turns them into the view's table,
with bucket deltas derived the same way as the ``delta`` column here.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._block_source import SourceBatch
from .._otlp_payloads import (
    RAW_RESOURCE_METRICS,
    Items,
    PropertySets,
    attribute_items,
    parse_resources,
    unix_ns,
)
from ._columns import BlockRows, dictionary_strings, timestamps
from ._metric_history import EarlierBlocks, metric_blocks, read_earlier_blocks
from ._otel_histogram_rows import HistogramRows, PointRows, SeriesKey, exponential_as_explicit, optional_field

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = [
    "DecodedMetrics",
    "History",
    "decode_metrics",
    "derive_deltas",
    "exponential_as_explicit",
    "first_points",
    "otlp_measures",
    "prepare_history",
]

_NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE_MASK
_DELTA, _CUMULATIVE = 1, 2  # AggregationTemporality
_CONTEXT_KEY = "otlp_metrics"

# delta modes of a measures row
_NO_DELTA, _IS_DELTA, _DERIVE = 0, 1, 2


@dataclass(slots=True)
class _Measures(PointRows):
    values: list[float] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)

    def add(  # noqa: PLR0917 - one row's columns
        self,
        stream: uuid.UUID,
        time: int,
        start: int,
        name: str,
        unit: str,
        target: str,
        value: float,
        props: int,
        mode: int,
    ) -> None:
        self.streams.append(stream)
        self.times.append(time)
        self.starts.append(start)
        self.names.append(name)
        self.units.append(unit)
        self.targets.append(target)
        self.values.append(value)
        self.props.append(props)
        self.modes.append(mode)


@dataclass(slots=True)
class DecodedMetrics:
    """Rows of a set of OTLP metric blocks, with the deltas of cumulative series once derived.

    Attributes:
        block_ids: the blocks decoded, in order (rows are laid out block after block).
        props: the property sets of the rows.
        measures: ``measures`` rows.
        histograms: ``histograms`` rows (when asked for).
        deltas: the ``delta`` column (NaN = NULL) after ``derive_deltas``.
    """

    block_ids: list[uuid.UUID]
    props: PropertySets
    measures: _Measures
    histograms: HistogramRows | None
    deltas: npt.NDArray[np.float64] | None = None


class _Decoder:
    """Walks resource messages and appends rows (the per-point Python work, in one place)."""

    def __init__(self, props: PropertySets, *, measures: bool, histograms: bool) -> None:
        self.props = props
        self.want_measures = measures
        self.measures = _Measures()
        self.histograms = HistogramRows() if histograms else None

    def block(self, stream: uuid.UUID, resource: Any) -> None:
        measures_before = len(self.measures.times)
        histograms_before = len(self.histograms.times) if self.histograms is not None else 0
        for scope_metrics in resource.scope_metrics if resource is not None else ():
            target = scope_metrics.scope.name
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    self._metric(stream, target, metric, kind)
        self.measures.counts.append(len(self.measures.times) - measures_before)
        if self.histograms is not None:
            self.histograms.counts.append(len(self.histograms.times) - histograms_before)

    def _metric(self, stream: uuid.UUID, target: str, metric: Any, kind: str) -> None:
        if not self.want_measures and kind not in ("histogram", "exponential_histogram"):
            return
        data = getattr(metric, kind)
        points = [p for p in data.data_points if p.time_unix_nano and not p.flags & _NO_RECORDED_VALUE]
        if not points:
            return
        metadata = attribute_items(metric.metadata, "otel.metric.metadata.")
        if kind in ("gauge", "sum"):
            self._numbers(stream, target, metric, kind, data, points, metadata)
        elif kind == "summary":
            self._summaries(stream, target, metric, points, metadata)
        else:
            self._histograms(stream, target, metric, kind, data, points, metadata)

    def _numbers(  # noqa: PLR0917 - the metric's parts
        self, stream: uuid.UUID, target: str, metric: Any, kind: str, data: Any, points: list[Any], metadata: Items
    ) -> None:
        name, unit = metric.name, metric.unit
        common: Items = (("otel.metric.kind", kind), *metadata)
        mode = _NO_DELTA
        if kind == "sum":
            temporality, monotonic = data.aggregation_temporality, data.is_monotonic
            common = (
                ("otel.metric.aggregation_temporality", str(temporality)),
                ("otel.metric.is_monotonic", "true" if monotonic else "false"),
                *common,
            )
            if temporality == _DELTA:
                mode = _IS_DELTA
            elif temporality == _CUMULATIVE and monotonic:
                mode = _DERIVE
        add, index = self.measures.add, self.props.raw_index
        for point in points:
            value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
            props = index(point.attributes, common, common)
            add(stream, point.time_unix_nano, point.start_time_unix_nano, name, unit, target, value, props, mode)

    def _summaries(self, stream: uuid.UUID, target: str, metric: Any, points: list[Any], metadata: Items) -> None:
        name, unit = metric.name, metric.unit
        common: Items = (("otel.metric.kind", "summary"), *metadata)
        add, index = self.measures.add, self.props.index
        for point in points:
            attributes = self.props.raw_items(point.attributes)
            props = index((*attributes, *common))
            time, start = point.time_unix_nano, point.start_time_unix_nano
            add(stream, time, start, f"{name}_count", unit, target, float(point.count), props, _DERIVE)
            add(stream, time, start, f"{name}_sum", unit, target, point.sum, props, _DERIVE)
            for quantile in point.quantile_values:
                q, value = quantile.quantile, quantile.value
                if q == 0.0:
                    add(stream, time, start, f"{name}_min", unit, target, value, props, _NO_DELTA)
                elif q == 1.0:
                    add(stream, time, start, f"{name}_max", unit, target, value, props, _NO_DELTA)
                quantile_props = index((*attributes, *common, ("quantile", repr(q))))
                add(stream, time, start, name, unit, target, value, quantile_props, _NO_DELTA)

    def _histograms(  # noqa: PLR0917 - the metric's parts
        self, stream: uuid.UUID, target: str, metric: Any, kind: str, data: Any, points: list[Any], metadata: Items
    ) -> None:
        name, unit = metric.name, metric.unit
        temporality = data.aggregation_temporality
        common: Items = (
            ("otel.metric.aggregation_temporality", str(temporality)),
            ("otel.metric.kind", kind),
            *metadata,
        )
        mode = _IS_DELTA if temporality == _DELTA else _DERIVE if temporality == _CUMULATIVE else _NO_DELTA
        add, index = self.measures.add, self.props.raw_index
        rows = self.histograms
        exponential = kind == "exponential_histogram"
        for point in points:
            props = index(point.attributes, common, common)
            time, start = point.time_unix_nano, point.start_time_unix_nano
            total, total_sum = point.count, optional_field(point, "sum")
            low, high = optional_field(point, "min"), optional_field(point, "max")
            if self.want_measures:
                add(stream, time, start, f"{name}_count", unit, target, float(total), props, mode)
                if total_sum is not None:
                    add(stream, time, start, f"{name}_sum", unit, target, total_sum, props, mode)
                if low is not None:
                    add(stream, time, start, f"{name}_min", unit, target, low, props, _NO_DELTA)
                if high is not None:
                    add(stream, time, start, f"{name}_max", unit, target, high, props, _NO_DELTA)
            if rows is not None:
                rows.append(point, exponential, (time, start), (target, name, unit), temporality, props, stream)


def decode_metrics(
    batch: SourceBatch, props: PropertySets | None = None, *, measures: bool = True, histograms: bool = False
) -> DecodedMetrics:
    """Decode the ``otlp/v1/metrics`` blocks of ``batch`` (every block of it) into rows.

    Blocking (protobuf parsing and per-point field reads); call from a worker thread.

    Args:
        batch: the blocks.
        props: the property sets to intern into (shared with earlier blocks of the same build).
        measures: produce ``measures`` rows.
        histograms: produce ``histograms`` rows.
    """
    decoder = _Decoder(props or PropertySets(), measures=measures, histograms=histograms)
    for block, resource in zip(batch.blocks, parse_resources(batch, RAW_RESOURCE_METRICS), strict=True):
        decoder.block(block.stream_id, resource)
    return DecodedMetrics([b.block_id for b in batch.blocks], decoder.props, decoder.measures, decoder.histograms)


# ---------------------------------------------------------------------------------------------
# deltas of cumulative series


@dataclass(frozen=True, slots=True)
class History:
    """Earlier points of cumulative series, from the blocks before a batch.

    Attributes:
        last: series → ``(time, start time, value)`` of its latest earlier point.
        complete: streams whose every earlier block was read.
        horizon: stream → the oldest block time read (series started after it cannot have
            older points).
    """

    last: dict[SeriesKey, tuple[int, int, float]]
    complete: frozenset[uuid.UUID]
    horizon: dict[uuid.UUID, int]


_NO_HISTORY = History({}, frozenset(), {})


def _series_ids(m: _Measures, rows: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], list[SeriesKey]]:
    keys: dict[SeriesKey, int] = {}
    ids = np.empty(rows.size, np.int64)
    for position, row in enumerate(rows.tolist()):
        key = m.series(row)
        ids[position] = keys.setdefault(key, len(keys))
    return ids, list(keys)


def first_points(decoded: DecodedMetrics) -> dict[SeriesKey, int]:
    """Cumulative series → the time of their first row in ``decoded`` (where history is needed)."""
    m = decoded.measures
    rows = np.flatnonzero(np.asarray(m.modes, np.int64) == _DERIVE)
    first: dict[SeriesKey, int] = {}
    times = unix_ns(m.times)
    for row in rows.tolist():
        key = m.series(row)
        time = int(times[row])
        if key not in first or time < first[key]:
            first[key] = time
    return first


def derive_deltas(decoded: DecodedMetrics, history: History = _NO_HISTORY) -> npt.NDArray[np.float64]:
    """The ``delta`` column (NaN = NULL) of the decoded ``measures`` rows (see the module docstring)."""
    m = decoded.measures
    values = np.asarray(m.values, np.float64)
    modes = np.asarray(m.modes, np.int64)
    deltas = np.where(modes == _IS_DELTA, values, np.nan)
    rows = np.flatnonzero(modes == _DERIVE)
    if rows.size == 0:
        return deltas
    series, keys = _series_ids(m, rows)
    times = unix_ns(m.times)[rows]
    order = np.lexsort((times, series))
    rows, series, times = rows[order], series[order], times[order]
    value = values[rows]
    start = unix_ns(m.starts)[rows]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = series[1:] != series[:-1]
    previous = np.roll(value, 1)
    reset = (np.roll(start, 1) != start) | (value < previous)
    derived = np.where(reset, value, value - previous)
    for position in np.flatnonzero(first).tolist():
        key = keys[int(series[position])]
        derived[position] = _first_delta(
            key, int(times[position]), int(start[position]), float(value[position]), history
        )
    deltas[rows] = derived
    return deltas


def _first_delta(key: SeriesKey, time: int, start: int, value: float, history: History) -> float:
    earlier = history.last.get(key)
    if earlier is not None and earlier[0] < time:
        earlier_time, earlier_start, earlier_value = earlier
        del earlier_time
        return value - earlier_value if earlier_start == start and value >= earlier_value else value
    stream = key[0]
    if stream in history.complete or start >= history.horizon.get(stream, 2**63):
        return value  # the series began here: its value is its increase since start
    return math.nan


async def prepare_history(lake: Lakehouse, batch: SourceBatch) -> None:
    """Decode the OTLP metric blocks of ``batch`` and derive their deltas, with earlier blocks.

    Stores the result in ``batch.context`` for ``otlp_measures``.
    """
    sub = metric_blocks(batch)
    if sub is None:
        return
    decoded = await asyncio.to_thread(decode_metrics, sub)
    first = first_points(decoded)
    earlier = await read_earlier_blocks(lake, sub, {key[0] for key in first})
    history = await asyncio.to_thread(_history_of, batch, earlier, decoded.props, first)
    decoded.deltas = derive_deltas(decoded, History(history, earlier.complete, earlier.horizon))
    batch.context[_CONTEXT_KEY] = decoded


def _history_of(
    batch: SourceBatch, earlier: EarlierBlocks, props: PropertySets, wanted: dict[SeriesKey, int]
) -> dict[SeriesKey, tuple[int, int, float]]:
    stored = earlier.batch(batch)
    if stored is None:
        return {}
    m = decode_metrics(stored, props).measures
    times = unix_ns(m.times)
    starts = unix_ns(m.starts)
    last: dict[SeriesKey, tuple[int, int, float]] = {}
    for row in np.flatnonzero(np.asarray(m.modes, np.int64) == _DERIVE).tolist():
        key = m.series(row)
        time = int(times[row])
        if key in wanted and time < wanted[key] and (key not in last or time > last[key][0]):
            last[key] = (time, int(starts[row]), m.values[row])
    return last


def otlp_measures(batch: SourceBatch, schema: pa.Schema) -> pa.Table:
    """``measures`` rows of the ``otlp/v1/metrics`` blocks of ``batch``, in ``schema``.

    Uses what ``prepare_history`` decoded for these blocks when it ran (deltas with history).
    """
    decoded = batch.context.get(_CONTEXT_KEY)
    if not isinstance(decoded, DecodedMetrics) or decoded.block_ids != [b.block_id for b in batch.blocks]:
        decoded = decode_metrics(batch)
    m = decoded.measures
    rows = BlockRows(batch, m.counts)
    deltas = decoded.deltas if decoded.deltas is not None else derive_deltas(decoded)
    return pa.table(
        [
            *rows.context_columns(),
            timestamps(unix_ns(m.times)),
            dictionary_strings(pa.array(m.targets, pa.string())),
            dictionary_strings(pa.array(m.names, pa.string())),
            dictionary_strings(pa.array(m.units, pa.string())),
            pa.array(m.values, pa.float64()),
            decoded.props.column(m.props),
            rows.process_properties(),
            pa.array(deltas, pa.float64(), mask=np.isnan(deltas)),
            rows.service_name(),
        ],
        schema=schema,
    )
