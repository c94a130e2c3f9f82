"""The cffi binding of the native transit scanner: smoke test, record splitting, every error code,
and ``count_queue_records`` (the count-only walk) agreeing with ``scan_queue`` on any input."""

from __future__ import annotations

import doctest
import struct

import lz4.frame
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.tracing import _binding
from sirius.tracing._binding import abi_version, count_queue_records, gather, gather_fixed, scan_queue
from sirius.tracing._exceptions import TransitScanError, WireFormatError


def test_abi_version():
    assert abi_version() == 5


def test_scan_queue_splits_records():
    buf = bytes([0]) + b"A" * 3 + bytes([1]) + struct.pack("<I", 2) + b"BB" + bytes([1]) + struct.pack("<I", 0)
    types, offsets, sizes = scan_queue(buf, [3, 0])
    assert types.tolist() == [0, 1, 1]
    assert offsets.tolist() == [1, 9, 16]
    assert sizes.tolist() == [3, 2, 0]
    assert types.dtype == np.uint8
    assert offsets.dtype == np.uint32
    empty = scan_queue(b"", [3])
    assert [a.size for a in empty] == [0, 0, 0]


@pytest.mark.parametrize(
    ("buf", "sizes", "code", "offset"),
    [
        (bytes([2, 0]), [1, 0], -1, 0),  # index past the table
        (bytes([0, 9, 1, 0]), [1, -1], -1, 2),  # index marked unknown
        (bytes([0, 9, 1, 0, 0]), [1, 0], -2, 2),  # dynamic size header cut
        (bytes([0, 1, 2]), [4], -3, 0),  # POD body cut
        (bytes([0, 9, 1]) + struct.pack("<I", 50), [1, 0], -3, 2),  # dynamic body cut
        (bytes([0]) + struct.pack("<I", 0xFFFFFFFF), [0], -3, 0),
    ],
)
def test_scan_queue_errors(buf, sizes, code, offset):
    with pytest.raises(TransitScanError) as info:
        scan_queue(buf, sizes)
    assert (info.value.code, info.value.offset) == (code, offset)
    assert isinstance(info.value, WireFormatError)


def test_scan_queue_rejects_oversized_tables():
    with pytest.raises(ValueError, match="256"):
        scan_queue(b"\x00", [1] * 257)


def test_gather_helpers():
    data = lz4.frame.decompress(lz4.frame.compress(b"0123456789"))
    assert bytes(gather(data, [8, 0, 5], [2, 1, 0])) == b"890"
    assert gather_fixed(data, [1, 7], 3).tolist() == [list(b"123"), list(b"789")]
    assert gather_fixed(data, [], 3).shape == (0, 3)
    with pytest.raises(TransitScanError):
        gather(data, [9], [2])
    with pytest.raises(TransitScanError):
        gather_fixed(data, [8], 3)
    with pytest.raises(ValueError, match="1-D"):
        gather(data, [1, 2], [1])


def test_doctests():
    assert doctest.testmod(_binding).failed == 0


_SIZES = st.lists(st.integers(min_value=-1, max_value=9), min_size=0, max_size=6)


def _outcome(fn, buf: bytes, sizes: list[int]) -> object:
    try:
        return ("ok", fn(buf, sizes))
    except TransitScanError as exc:
        return ("error", exc.code, exc.offset, str(exc))


@settings(max_examples=300, deadline=None)
@given(buf=st.binary(max_size=200), sizes=_SIZES)
def test_count_matches_scan_on_any_bytes(buf: bytes, sizes: list[int]) -> None:
    counted = _outcome(count_queue_records, buf, sizes)
    scanned = _outcome(lambda b, s: len(scan_queue(b, s)[0]), buf, sizes)
    assert counted == scanned


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(st.tuples(st.integers(min_value=0, max_value=2), st.binary(max_size=12)), max_size=40),
    cut=st.integers(min_value=0, max_value=3),
)
def test_count_of_well_formed_queues(records: list[tuple[int, bytes]], cut: int) -> None:
    sizes = [4, 0, 1]  # POD of 4 bytes, dynamic, POD of 1 byte
    buf = bytearray()
    for index, body in records:
        width = sizes[index]
        data = body if width == 0 else (body + bytes(width))[:width]
        buf.append(index)
        if width == 0:
            buf += len(data).to_bytes(4, "little")
        buf += data
    assert count_queue_records(bytes(buf), sizes) == len(records)
    if records and cut:
        # A cut queue is refused, unless the cut took whole records off its end: never the full count.
        try:
            counted = count_queue_records(bytes(buf[: max(0, len(buf) - cut)]), sizes)
        except TransitScanError:
            return
        assert counted < len(records)
