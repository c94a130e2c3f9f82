"""The rows of the ``histograms`` view as decoded from OTLP points, and exponential buckets as explicit ones.

``PointRows`` holds the columns every decoded metric row has (its block, series and times),
shared by ``HistogramRows`` and the ``measures`` rows of ``_otel_metrics``. ``HistogramRows``
gathers one row per Histogram / ExponentialHistogram data point (the OTLP layout as sent, plus
the explicit ``bounds``/``counts`` of every point), filled by the metric decoder of
``_otel_metrics``; ``exponential_as_explicit`` is the conversion: bucket ``i`` of
scale ``s`` spans ``(2^(i·2^-s), 2^((i+1)·2^-s)]``, the zero bucket lies between the negative
and positive ranges.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TEMPORALITY_NAMES", "HistogramRows", "PointRows", "SeriesKey", "exponential_as_explicit", "optional_field"]

TEMPORALITY_NAMES = {0: "unspecified", 1: "delta", 2: "cumulative"}
"""``AggregationTemporality`` numbers → the ``temporality`` column's text."""


SeriesKey = tuple[uuid.UUID, str, int]
"""A series: stream, row name, property-set index (in the decode's ``PropertySets``)."""


@dataclass(slots=True)
class PointRows:
    """Columns of decoded metric rows that every view has (``counts``: rows per block)."""

    counts: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    props: list[int] = field(default_factory=list)
    streams: list[uuid.UUID] = field(default_factory=list)

    def series(self, row: int) -> SeriesKey:
        """The series of a row."""
        return (self.streams[row], self.names[row], self.props[row])


@dataclass(slots=True)
class HistogramRows(PointRows):
    """Columns of ``histograms`` rows gathered point after point."""

    kinds: list[str] = field(default_factory=list)
    temporalities: list[str] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    sums: list[float | None] = field(default_factory=list)
    mins: list[float | None] = field(default_factory=list)
    maxes: list[float | None] = field(default_factory=list)
    bounds: list[list[float]] = field(default_factory=list)
    bucket_counts: list[list[int]] = field(default_factory=list)
    scales: list[int | None] = field(default_factory=list)
    zero_counts: list[int | None] = field(default_factory=list)
    zero_thresholds: list[float | None] = field(default_factory=list)
    pos_offsets: list[int | None] = field(default_factory=list)
    pos_counts: list[list[int] | None] = field(default_factory=list)
    neg_offsets: list[int | None] = field(default_factory=list)
    neg_counts: list[list[int] | None] = field(default_factory=list)

    def append(  # noqa: PLR0917 - one point's parts
        self,
        point: Any,
        exponential: bool,
        times: tuple[int, int],
        names: tuple[str, str, str],
        temporality: int,
        props: int,
        stream: uuid.UUID,
    ) -> None:
        """Add one data point (``times`` = time, start time; ``names`` = target, name, unit)."""
        self.streams.append(stream)
        self.times.append(times[0])
        self.starts.append(times[1])
        self.targets.append(names[0])
        self.names.append(names[1])
        self.units.append(names[2])
        self.temporalities.append(TEMPORALITY_NAMES.get(temporality, "unspecified"))
        self.totals.append(point.count)
        self.sums.append(optional_field(point, "sum"))
        self.mins.append(optional_field(point, "min"))
        self.maxes.append(optional_field(point, "max"))
        self.props.append(props)
        if exponential:
            positive, negative = list(point.positive.bucket_counts), list(point.negative.bucket_counts)
            pos, neg = (point.positive.offset, positive), (point.negative.offset, negative)
            bounds, counts = exponential_as_explicit(point.scale, point.zero_count, point.zero_threshold, pos, neg)
            self.kinds.append("exponential")
            self.scales.append(point.scale)
            self.zero_counts.append(point.zero_count)
            self.zero_thresholds.append(point.zero_threshold)
            self.pos_offsets.append(point.positive.offset)
            self.pos_counts.append(positive)
            self.neg_offsets.append(point.negative.offset)
            self.neg_counts.append(negative)
        else:
            bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
            self.kinds.append("explicit")
            for column in (self.scales, self.zero_counts, self.zero_thresholds, self.pos_offsets):
                column.append(None)
            for column in (self.pos_counts, self.neg_offsets, self.neg_counts):
                column.append(None)
        self.bounds.append(bounds)
        self.bucket_counts.append(counts)


def exponential_as_explicit(
    scale: int, zero_count: int, zero_threshold: float, pos: tuple[int, Sequence[int]], neg: tuple[int, Sequence[int]]
) -> tuple[list[float], list[int]]:
    """Explicit ``(bounds, counts)`` of an exponential histogram (``len(counts) = len(bounds) + 1``).

    Args:
        scale: the OTLP scale (base ``2^(2^-scale)``).
        zero_count: values in the zero bucket.
        zero_threshold: its half-width.
        pos: ``(offset, bucket counts)`` of the positive range.
        neg: ``(offset, bucket counts)`` of the negative range (by magnitude).

    >>> exponential_as_explicit(0, 1, 0.0, (1, [2, 3]), (0, []))
    ([2.0, 4.0, 8.0], [1, 2, 3, 0])
    >>> exponential_as_explicit(0, 1, 0.0, (0, [4]), (1, [5]))
    ([-4.0, -2.0, 1.0, 2.0], [0, 5, 1, 4, 0])
    """
    factor = 2.0**-scale
    (pos_offset, pos_counts), (neg_offset, neg_counts) = pos, neg
    bounds: list[float] = []
    counts: list[int] = []
    if neg_counts:
        exponents = np.arange(neg_offset + len(neg_counts), neg_offset - 1, -1, dtype=np.float64)
        bounds += (-np.exp2(exponents * factor)).tolist()
        counts += [0, *reversed(neg_counts), zero_count]
    else:
        counts.append(zero_count)
    if pos_counts:
        exponents = np.arange(pos_offset, pos_offset + len(pos_counts) + 1, dtype=np.float64)
        bounds += np.exp2(exponents * factor).tolist()
        counts += [*pos_counts, 0]
    else:
        bounds.append(max(float(zero_threshold), 0.0))
        counts.append(0)
    return bounds, counts


def optional_field(point: Any, name: str) -> float | None:
    """An optional numeric field of a protobuf point as float, None when unset."""
    return float(getattr(point, name)) if point.HasField(name) else None
