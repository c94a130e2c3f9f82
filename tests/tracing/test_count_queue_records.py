"""``count_queue_records``: the scanner's count-only walk agrees with ``scan_queue`` on any input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.tracing import TransitScanError, count_queue_records, scan_queue

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
