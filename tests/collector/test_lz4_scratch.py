"""``decompressed_queue``: the reused scratch buffer and its overflow into a mapping decode as python-lz4 does."""

from __future__ import annotations

import os

import lz4.frame
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.collector._lz4_into import SCRATCH_BYTES, decompress_queue_into, decompressed_queue
from sirius.tracing import WireFormatError

_OPTIONS = st.sampled_from(
    [{}, {"store_size": False}, {"block_linked": False, "content_checksum": True}, {"block_checksum": True}]
)
_NOISE = os.urandom(1 << 16)


def _queue(size: int, seed: int) -> bytes:
    """``size`` bytes, partly incompressible, partly repetitive (so frames have both kinds of blocks)."""
    unit = _NOISE[seed % 4096 : seed % 4096 + 4096] + bytes([seed % 251]) * 4096
    return (unit * (size // len(unit) + 1))[:size]


@settings(max_examples=40, deadline=None)
@given(
    # around the scratch's capacity: exactly full, one byte over (the overflow path), well under
    size=st.one_of(
        st.integers(min_value=SCRATCH_BYTES - 3, max_value=SCRATCH_BYTES + 3),
        st.integers(min_value=0, max_value=100_000),
        st.integers(min_value=SCRATCH_BYTES - 70_000, max_value=SCRATCH_BYTES + 70_000),
    ),
    seed=st.integers(min_value=0, max_value=10_000),
    options=_OPTIONS,
    frames=st.integers(min_value=1, max_value=2),
)
def test_scratch_and_overflow_match_python_lz4(size: int, seed: int, options: dict[str, object], frames: int) -> None:
    raw = _queue(size, seed)
    frame = lz4.frame.compress(raw, **options) * frames
    with decompressed_queue(frame) as first:
        assert bytes(first) == raw * frames
        with decompressed_queue(frame) as nested:  # the scratch is taken: a mapping instead
            assert bytes(nested) == raw * frames
    with decompressed_queue(frame) as again:  # the scratch is reused
        assert bytes(again) == raw * frames
    assert bytes(decompress_queue_into(frame)) == raw * frames


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(min_value=1, max_value=200), flip=st.integers(min_value=0), options=_OPTIONS)
def test_bad_frames_are_refused_and_the_scratch_stays_usable(cut: int, flip: int, options: dict[str, object]) -> None:
    raw = _queue(SCRATCH_BYTES + 1000, flip)
    frame = lz4.frame.compress(raw, **options)
    with pytest.raises(WireFormatError, match="LZ4"), decompressed_queue(frame[:-cut]):
        pass
    corrupt = bytearray(frame)
    corrupt[flip % len(corrupt)] ^= 0xFF
    try:
        expected = lz4.frame.decompress(bytes(corrupt))
    except RuntimeError:
        with pytest.raises(WireFormatError), decompressed_queue(bytes(corrupt)):
            pass
    else:  # without checksums a flipped literal can still be a valid frame, for both decoders
        with decompressed_queue(bytes(corrupt)) as view:
            assert bytes(view) == expected
    with pytest.raises(WireFormatError, match="more than 1000 bytes"), decompressed_queue(frame, 1000):
        pass
    with decompressed_queue(frame) as view:
        assert bytes(view) == raw


def test_a_view_kept_past_the_block_retires_the_scratch() -> None:
    frame = lz4.frame.compress(b"abc" * 1000)
    with decompressed_queue(frame) as view:
        kept = np.frombuffer(view, np.uint8)  # still exports the view: the scratch must not be written again
    with decompressed_queue(lz4.frame.compress(b"xyz" * 1000)) as other:
        assert bytes(other) == b"xyz" * 1000
    assert kept.tobytes() == b"abc" * 1000


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["valid", "truncated", "corrupt", "too_large", "two_frames", "expands_past_scratch"]),
        st.integers(min_value=1, max_value=300_000),
        st.integers(min_value=0, max_value=10_000),
        _OPTIONS,
    ),
    min_size=2,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(steps=_STEPS)
def test_the_kept_context_carries_nothing_from_one_queue_to_the_next(
    steps: list[tuple[str, int, int, dict[str, object]]],
) -> None:
    """Queues decoded one after another on one thread (the kept LZ4 context) decode as python-lz4 alone does.

    Refused or unfinished frames (truncated, corrupt, over the size limit) in between must leave
    nothing behind: their context is freed, the next queue starts from a clean one.
    """
    for kind, size, seed, options in steps:
        # A small frame that expands past the scratch: its first step keeps the GIL (small input,
        # output into the scratch), the rest goes on into a mapping with the GIL released.
        raw = bytes([seed % 251]) * (SCRATCH_BYTES + size) if kind == "expands_past_scratch" else _queue(size, seed)
        frame = lz4.frame.compress(raw, **options)
        if kind == "truncated":
            with (
                pytest.raises(WireFormatError, match="LZ4"),
                decompressed_queue(frame[: max(1, len(frame) - 1 - seed % 50)]),
            ):
                pass
        elif kind == "corrupt":
            corrupt = bytearray(frame)
            corrupt[seed % len(corrupt)] ^= 0xFF
            try:
                expected = lz4.frame.decompress(bytes(corrupt))
            except RuntimeError:
                with pytest.raises(WireFormatError), decompressed_queue(bytes(corrupt)):
                    pass
            else:
                with decompressed_queue(bytes(corrupt)) as view:
                    assert bytes(view) == expected
        elif kind == "too_large":
            with pytest.raises(WireFormatError, match="more than"), decompressed_queue(frame, size - 1):
                pass
        else:
            frames = 2 if kind == "two_frames" else 1
            with decompressed_queue(frame * frames) as view:
                assert bytes(view) == raw * frames
            assert bytes(decompress_queue_into(frame)) == raw
