"""Explore's pure parts: doctests, SQL literals, the critical path, latency-histogram quantiles, time buckets."""

from __future__ import annotations

import doctest
import importlib
import random

import numpy as np
import pytest

from sirius.flight.explore import ExploreError
from sirius.flight.explore._critical_path import SpanTiming, critical_path
from sirius.flight.explore._latency import quantiles_by_key
from sirius.flight.explore._log_queries import LogFilter, logs_sql
from sirius.flight.explore._range import TimeWindow, bucket_seconds, parse_window
from sirius.flight.explore._sql_literals import like_pattern, parse_hex_id, parse_level, sql_text
from sirius.flight.explore._trace_queries import TraceFilter, traces_sql

MODULES = ["_critical_path", "_latency", "_range", "_render", "_sql_literals", "_static"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"sirius.flight.explore.{name}"))
    assert result.failed == 0


def test_literals_keep_the_query_shape() -> None:
    assert sql_text("a'b") == "'a''b'"
    assert sql_text("''") == "''''''"
    assert like_pattern("50%_x'") == "'%50\\%\\_x''%'"
    with pytest.raises(ExploreError, match="NUL"):
        sql_text("a\x00b")
    sql = logs_sql(LogFilter(text="x' OR 1=1 --", service="s'; DROP TABLE t; --"))
    assert "msg ILIKE '%x'' OR 1=1 --%'" in sql
    assert "service_name = 's''; DROP TABLE t; --'" in sql
    assert sql.count("'") % 2 == 0
    search = traces_sql(TraceFilter(attrs=(("http.route", "it's"),)))
    assert "property_get(properties, 'http.route') = 'it''s'" in search


@pytest.mark.parametrize(
    ("value", "ok"),
    [("0123456789ABCDEF0123456789abcdef", True), ("0123", False), ("g" * 32, False), ("' OR 1=1 --" + "0" * 21, False)],
)
def test_hex_ids(value: str, ok: bool) -> None:
    if ok:
        assert parse_hex_id(value, "trace_id", length=32) == value.lower()
    else:
        with pytest.raises(ExploreError, match="trace_id must be 32 hex characters"):
            parse_hex_id(value, "trace_id", length=32)


def test_levels() -> None:
    assert [parse_level(v) for v in ("1", "error", "WARN", "warning", "6", None, "")] == [1, 2, 3, 3, 6, None, None]
    with pytest.raises(ExploreError, match="level"):
        parse_level("7")


def test_critical_path_cases() -> None:
    # Sequential children: both on the path; a child overlapping the last one is not.
    spans = [
        SpanTiming("root", None, 0, 100),
        SpanTiming("a", "root", 0, 40),
        SpanTiming("b", "root", 50, 100),
        SpanTiming("overlap", "root", 45, 70),
        SpanTiming("a1", "a", 5, 35),
    ]
    assert critical_path(spans) == {"root", "a", "a1", "b"}
    # A child outliving its parent (async work) counts up to the parent's end.
    assert critical_path([SpanTiming("r", None, 0, 10), SpanTiming("late", "r", 2, 50)]) == {"r", "late"}
    # Orphans are roots; the longest root carries the path.
    orphaned = [SpanTiming("x", "missing", 0, 5), SpanTiming("y", None, 0, 50), SpanTiming("y1", "y", 10, 20)]
    assert critical_path(orphaned) == {"y", "y1"}
    # A deep chain (beyond Python's recursion limit) is walked.
    chain = [SpanTiming("0", None, 0, 100_000)] + [
        SpanTiming(str(i), str(i - 1), i, 100_000 - i) for i in range(1, 5000)
    ]
    assert len(critical_path(chain)) == 5000
    assert critical_path([]) == set()


def test_latency_quantiles_track_exact_percentiles() -> None:
    rng = random.Random(5)
    durations = np.array([int(rng.lognormvariate(17, 0.8)) for _ in range(20_000)], dtype=np.int64)
    buckets = np.floor(np.log2(np.maximum(durations, 1)) * 16).astype(np.int64)
    keys = np.zeros(len(durations), dtype=np.int64)
    ones = np.ones(len(durations), dtype=np.int64)
    _keys, values = quantiles_by_key(keys, buckets, ones, durations, durations, (0.5, 0.95, 0.99))
    for q, value in zip((50, 95, 99), values, strict=True):
        exact = float(np.percentile(durations, q))
        assert value[0] == pytest.approx(exact, rel=0.045)


def test_latency_quantiles_exact_when_a_bucket_holds_one_value() -> None:
    keys = np.array([0, 0, 1])
    _keys, (p50, p99) = quantiles_by_key(
        keys, np.array([10, 20, 10]), np.array([4, 8, 3]), np.array([1, 100, 7]), np.array([1, 100, 7]), (0.5, 0.99)
    )
    assert p50.tolist() == [100.0, 7.0]
    assert p99.tolist() == [100.0, 7.0]


def test_time_windows_and_buckets() -> None:
    now = 10 * 86_400 * 1_000_000_000
    window = parse_window(None, None, now)
    assert window.end_ns - window.begin_ns == 3600 * 1_000_000_000
    assert bucket_seconds(window) == 30
    assert bucket_seconds(TimeWindow(0, 7 * 86_400 * 1_000_000_000)) == 7200  # 84 buckets
    assert bucket_seconds(TimeWindow(0, 60 * 1_000_000_000)) == 1
    for begin, end, named in (("soon", None, "from"), ("1h", "later", "to"), ("1h", "2h", "from")):
        with pytest.raises(ExploreError, match=named):
            parse_window(begin, end, now)
