"""The cffi binding of the native transit scanner: smoke test, record splitting, every error code."""

from __future__ import annotations

import doctest
import struct

import lz4.frame
import numpy as np
import pytest

from sirius.tracing import _binding
from sirius.tracing._binding import abi_version, gather, gather_fixed, scan_queue
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
