"""Bucket deltas of OTel histogram series, ``merge_histograms`` / ``histogram_quantile(merged, q)``, Perfetto lanes.

The end-to-end path (real SDK exporters → FlightSQL) is ``tests/e2e/test_otel_reads_right.py``;
these tests pin the rules on hand-made points: resets, exponential downscaling, unknown history,
merging different layouts, partial aggregation states.
"""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint, HistogramDataPoint

from sirius.lakehouse._sql_functions import new_session_context, prepare_sql, register_sql_functions
from sirius.lakehouse._sql_histogram_merge import merge_layouts
from sirius.lakehouse._sql_otel_perfetto import assign_lanes
from sirius.lakehouse.views._otel_histogram_rows import HistogramRows
from sirius.lakehouse.views._otel_histograms import derive_bucket_deltas

STREAM = uuid.uuid4()
BOUNDS = [10.0, 20.0]
DELTA, CUMULATIVE = 1, 2


def explicit(
    rows: HistogramRows, time: int, counts: list[int], *, start: int = 1, temporality: int = CUMULATIVE
) -> None:
    point = HistogramDataPoint(time_unix_nano=time, start_time_unix_nano=start, count=sum(counts))
    point.explicit_bounds.extend(BOUNDS)
    point.bucket_counts.extend(counts)
    rows.append(point, False, (time, start), ("scope", "latency", "ms"), temporality, 0, STREAM)


def exponential(rows: HistogramRows, time: int, scale: int, offset: int, counts: list[int], *, zero: int = 0) -> None:
    point = ExponentialHistogramDataPoint(
        time_unix_nano=time, start_time_unix_nano=1, count=sum(counts) + zero, scale=scale, zero_count=zero
    )
    point.positive.offset = offset
    point.positive.bucket_counts.extend(counts)
    rows.append(point, True, (time, 1), ("scope", "wait", "ms"), CUMULATIVE, 1, STREAM)


def test_cumulative_points_become_deltas_with_resets() -> None:
    rows = HistogramRows()
    explicit(rows, 30, [1, 3, 2])  # listed out of time order: the walk sorts by time
    explicit(rows, 10, [1, 1, 0])
    explicit(rows, 20, [1, 2, 0])
    explicit(rows, 40, [0, 1, 0], start=35)  # new start time: a restart
    explicit(rows, 50, [0, 0, 0], start=35)  # went down: a reset
    explicit(rows, 60, [2, 0, 0], temporality=DELTA)
    deltas = derive_bucket_deltas(rows)
    # the first point has no history in the batch and none was looked up: unknown (NULL)
    assert deltas == [[0, 1, 2], None, [0, 1, 0], [0, 1, 0], [0, 0, 0], [2, 0, 0]]


def test_exponential_cumulative_points_are_downscaled_before_subtracting() -> None:
    rows = HistogramRows()
    # scale 1: buckets 2, 3 (values in (2, 2.83], (2.83, 4]); then scale 0 after wider values
    exponential(rows, 10, 1, 2, [1, 1], zero=1)
    exponential(rows, 20, 0, 1, [2, 0, 0, 1], zero=2)  # index 1 = old 2|3 >> 1; index 4 new
    first, second = derive_bucket_deltas(rows)
    assert first is None
    # explicit layout of scale 0, offset 1, four buckets, plus the zero bucket and the overflow
    assert second == [1, 0, 0, 0, 1, 0]
    assert sum(second) == 2  # one new zero, one new value in (16, 32]


def test_exponential_scale_going_up_is_a_reset() -> None:
    rows = HistogramRows()
    exponential(rows, 10, 0, 1, [3])
    exponential(rows, 20, 1, 2, [1, 1])
    assert derive_bucket_deltas(rows)[1] == [0, 1, 1, 0]  # the point's own counts


def test_merge_layouts_is_exact_on_equal_and_nested_bounds() -> None:
    same = merge_layouts([(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0]))])
    assert same == ([1.0, 2.0], [1.0, 2.0, 3.0])
    # scale 1 bounds 2, 2.83, 4 and scale 0 bounds 2, 4: the union is the finer one
    fine = (np.array([2.0, 2.0**1.5, 4.0]), np.array([0.0, 1.0, 1.0, 0.0]))
    coarse = (np.array([2.0, 4.0]), np.array([0.0, 2.0, 0.0]))
    bounds, counts = merge_layouts([fine, coarse])
    assert bounds == pytest.approx([2.0, 2.0**1.5, 4.0])
    assert sum(counts) == pytest.approx(4.0)
    assert (counts[0], counts[-1]) == (0.0, 0.0)


def test_merge_histograms_in_sql_over_partial_states() -> None:
    ctx = new_session_context(target_partitions=2, batch_size=2)
    register_sql_functions(ctx, is_admin=False)
    bounds = pa.array([[10.0, 20.0]] * 4 + [[5.0, 10.0, 20.0]] * 2 + [[10.0, 20.0]], pa.list_(pa.float64()))
    counts = pa.array(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], None, [0, 2, 0, 0], [1, 1, 1, 1], [1, 1]], pa.list_(pa.uint64())
    )
    table = pa.table({"g": ["a", "a", "a", "a", "b", "b", "b"], "bounds": bounds, "counts": counts})
    ctx.register_record_batches("h", [table.to_batches(max_chunksize=2)])
    sql = (
        "SELECT g, merge_histograms(bounds, counts) AS m, histogram_quantile(merge_histograms(bounds, counts), 0.5) AS p"
        " FROM h GROUP BY g ORDER BY g"
    )
    a, b = ctx.sql(prepare_sql(sql)).to_arrow_table().to_pylist()
    assert a["m"] == {"bounds": [10.0, 20.0], "counts": [1.0, 1.0, 1.0]}  # NULL counts skipped
    assert a["p"] == 15.0
    assert b["m"]["bounds"] == [5.0, 10.0, 20.0]  # the malformed row (2 counts for 2 bounds) skipped
    assert b["m"]["counts"] == [1.0, 3.0, 1.0, 1.0]
    empty = ctx.sql(prepare_sql("SELECT merge_histograms(bounds, counts) AS m FROM h WHERE g = 'z'"))
    assert empty.to_arrow_table().column("m").to_pylist() == [None]


def test_lanes_always_nest() -> None:
    rng = np.random.default_rng(7)
    begin = rng.integers(0, 1000, 300)
    end = begin + rng.integers(0, 200, 300)
    lanes, depth = assign_lanes(begin, end)
    for lane in np.unique(lanes).tolist():
        picked = np.flatnonzero(lanes == lane)
        order = picked[np.lexsort((-end[picked], begin[picked]))]
        stack: list[int] = []
        for row in order.tolist():
            while stack and stack[-1] <= begin[row]:
                stack.pop()
            assert not stack or end[row] <= stack[-1]
            assert depth[row] == len(stack)
            stack.append(int(end[row]))
