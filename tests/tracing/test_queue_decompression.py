"""``decompress_queue``: any valid LZ4 frame sequence decompresses to its input, within the limit.

The decompressor's output buffer is sized from the frame (declared content size, else block
count times block maximum, ``_frame_output_bound``); that bound must never be below what a valid
frame holds, whatever the frame options (content size, block size, checksums, linked blocks) or
the writer (python-lz4, Sirius's C tracer), and corrupt or oversized input still raises
``WireFormatError``.
"""

from __future__ import annotations

import lz4.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.tracing._binding import lz4_frame_compress
from sirius.tracing._exceptions import WireFormatError
from sirius.tracing.transit._wire_format import _frame_output_bound, decompress_queue

TEXT = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda piece, n: piece * n, st.binary(min_size=1, max_size=40), st.integers(1, 20_000)),
)
OPTIONS = st.fixed_dictionaries(
    {
        "store_size": st.booleans(),
        "block_size": st.sampled_from([lz4.frame.BLOCKSIZE_MAX64KB, lz4.frame.BLOCKSIZE_MAX256KB]),
        "block_linked": st.booleans(),
        "block_checksum": st.booleans(),
        "content_checksum": st.booleans(),
    }
)


def _frame(data: bytes, options: dict[str, object] | None) -> bytes:
    return lz4_frame_compress(data) if options is None else lz4.frame.compress(data, **options)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(TEXT, st.none() | OPTIONS), min_size=1, max_size=3))
def test_frames_decompress_to_their_input_and_the_bound_holds(frames: list[tuple[bytes, dict | None]]) -> None:
    payload = b"".join(_frame(data, options) for data, options in frames)
    expected = b"".join(data for data, _ in frames)
    assert decompress_queue(payload) == expected
    assert decompress_queue(memoryview(payload)) == expected
    first, options = frames[0]
    bound = _frame_output_bound(memoryview(_frame(first, options)))
    assert bound is not None
    assert bound >= len(first)
    if options is not None and options["store_size"] and first:
        assert bound == len(first)  # the declared size, exactly


@settings(max_examples=60, deadline=None)
@given(TEXT, st.none() | OPTIONS, st.integers(0, 2**16), st.integers(1, 255), st.integers(0, 40))
def test_corrupt_or_oversized_frames_raise_wire_format_errors(
    data: bytes, options: dict | None, at: int, flip: int, cut: int
) -> None:
    frame = bytearray(_frame(data, options))
    frame[at % len(frame)] ^= flip
    for payload in (bytes(frame), _frame(data, options)[: max(1, len(frame) - cut - 1)]):
        try:
            out = decompress_queue(payload)
        except WireFormatError:
            continue
        # Without checksums a flipped literal can still be a valid frame: never more than the limit.
        assert isinstance(out, bytes)
    if len(data) > 10:
        with pytest.raises(WireFormatError, match="more than 10 bytes"):
            decompress_queue(_frame(data, options), max_size=10)


def _declaring(frame: bytes, declared: int) -> bytes:
    """``frame`` (written without a content size) with a header declaring ``declared`` bytes."""
    from sirius.lakehouse.views._span_events import xxh32  # the frame header checksum is xxh32

    descriptor = bytes([frame[4] | 0x08, frame[5]]) + declared.to_bytes(8, "little")
    return frame[:4] + descriptor + bytes([(xxh32(descriptor) >> 8) & 0xFF]) + frame[7:]


@pytest.mark.parametrize("declared", [1000, 3_000_000])
def test_a_header_declaring_the_wrong_size_is_refused(declared: int) -> None:
    data = bytes(2_000_000)
    lying = _declaring(lz4.frame.compress(data, store_size=False), declared)
    assert lz4.frame.get_frame_info(lying)["content_size"] == declared  # a well-formed header
    with pytest.raises(WireFormatError, match="LZ4"):
        decompress_queue(lying)
    assert decompress_queue(_declaring(lz4.frame.compress(data, store_size=False), len(data))) == data
