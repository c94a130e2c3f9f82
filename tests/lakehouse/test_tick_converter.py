"""Tick → ns conversion (micromegas-wire.md §6), including frequency estimation."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse._exceptions import CorruptBlockError
from sirius.lakehouse._tick_converter import TickConverter, _round_half_away, estimate_frequency
from sirius.tracing.transit._wire_format import ProcessInfo
from sirius.tracing.transit._writer import SpanMetadata, TransitWriter

START_NS = 1_700_000_000_123_456_789
PROCESS = ProcessInfo(uuid.UUID(int=3), "app", "u", "u", "h", "linux", "cpu", 3_000_000_000, START_NS, 10_000)


def test_event_ticks_use_the_rust_formula():
    conv = TickConverter.for_process(PROCESS)
    ticks = np.array([10_000, 10_001, 10_002, 13_000_000_000, 9_999], dtype=np.int64)
    expected = [START_NS + round(d * (1e9 / 3e9)) for d in (0, 1, 2, 13_000_000_000 - 10_000, -1)]
    assert conv.ticks_to_ns(ticks).tolist() == expected
    assert conv.ticks_to_ns([10_002]).dtype == np.int64


def test_rounding_is_half_away_from_zero():
    conv = TickConverter(start_time_ns=0, start_ticks=0, frequency=2_000_000_000)  # 0.5 ns per tick
    assert conv.ticks_to_ns([1, 3, 5, -1, -3]).tolist() == [1, 2, 3, -1, -2]


def test_block_ticks_and_milliseconds():
    conv = TickConverter.for_process(PROCESS)
    assert conv.delta_ticks_to_ns([0, 3_000]).tolist() == [START_NS, START_NS + 1_000]
    assert conv.delta_ticks_to_ms([3_000_000]).tolist() == [1.0]


def test_frequency_is_estimated_from_the_last_block():
    process = dataclasses.replace(PROCESS, tsc_frequency=0)
    writer = TransitWriter(process, "cpu")
    writer.begin_thread_span(SpanMetadata("s"), ticks=10_500)
    block = writer.finish_block(end_ticks=10_000 + 2_400_000_124, end_time_ns=START_NS + 2_000_000_000)
    assert estimate_frequency(process, block) == 1_200_000_062  # 2_400_000_124 ticks in 2 s
    conv = TickConverter.for_process(process, block)
    assert conv.frequency == 1_200_000_062
    assert conv.ticks_to_ns([10_000 + 2_400_000_124]).tolist() == [START_NS + 2_000_000_000]


def test_estimate_rounds_half_away_from_zero():
    process = dataclasses.replace(PROCESS, tsc_frequency=0)
    block = TransitWriter(process, "cpu").finish_block(end_ticks=10_000 + 3, end_time_ns=START_NS + 2_000_000_000)
    assert estimate_frequency(process, block) == 2  # 1.5 ticks/s


def test_positive_frequency_ignores_the_block():
    writer = TransitWriter(PROCESS, "cpu")
    block = writer.finish_block(end_ticks=20_000, end_time_ns=START_NS + 5)
    assert TickConverter.for_process(PROCESS, block).frequency == 3_000_000_000


def test_unusable_frequencies_are_errors():
    process = dataclasses.replace(PROCESS, tsc_frequency=0)
    with pytest.raises(CorruptBlockError, match="no block"):
        TickConverter.for_process(process)
    writer = TransitWriter(process, "cpu")
    no_time = writer.finish_block(end_ticks=20_000, end_time_ns=START_NS)
    with pytest.raises(CorruptBlockError, match="no elapsed time"):
        TickConverter.for_process(process, no_time)
    no_ticks = writer.finish_block(end_ticks=10_000, end_time_ns=START_NS + 10)
    with pytest.raises(CorruptBlockError, match="ticks/s"):
        estimate_frequency(process, no_ticks)
    with pytest.raises(CorruptBlockError, match="invalid tick frequency"):
        TickConverter(start_time_ns=0, start_ticks=0, frequency=-5)


def test_extreme_ticks_saturate_instead_of_raising():
    conv = TickConverter(start_time_ns=0, start_ticks=0, frequency=1)
    out = conv.ticks_to_ns([2**62])
    assert out.tolist() == [np.iinfo(np.int64).max]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**53) - 3, -(2**53) + 3),
            st.integers(2**53 - 3, 2**53 + 3),
            st.integers(-(10**12), 10**12),
        ),
        max_size=20,
    ),
    st.integers(-(2**62), 2**62),
    st.integers(-(2**40), 2**40),
)
def test_nanosecond_ticks_follow_the_rust_formula(ticks: list[int], start_ns: int, start_ticks: int) -> None:
    """Frequency 1e9 takes a shortcut when exact; it must equal the general f64 formula."""
    conv = TickConverter(start_time_ns=start_ns, start_ticks=start_ticks, frequency=1_000_000_000)
    values = np.array(ticks, dtype=np.int64)
    with np.errstate(over="ignore"):
        delta = values - np.int64(start_ticks)
        general = _round_half_away(delta.astype(np.float64) * 1.0) + np.int64(start_ns)
    assert conv.ticks_to_ns(values).tolist() == general.tolist()
    assert conv.delta_ticks_to_ns(delta).tolist() == general.tolist()
