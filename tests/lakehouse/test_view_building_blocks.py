"""Pure building blocks of the views: JSONB properties, xxh32 span hashes, span pairing, ranges."""

from __future__ import annotations

import numpy as np
import pytest

from sirius.lakehouse import TimeRange, encode_properties
from sirius.lakehouse._property_jsonb import EMPTY_JSONB_OBJECT, PropertyDictionary
from sirius.lakehouse.views._span_events import span_hash, xxh32
from sirius.lakehouse.views._thread_spans import pair_spans


def test_jsonb_objects_have_sorted_keys_and_string_entries() -> None:
    assert encode_properties({}) == EMPTY_JSONB_OBJECT == b"\x40\x00\x00\x00"
    encoded = encode_properties({"zeta": "1", "alpha": "été"})
    value = "été".encode()
    assert encoded == (
        b"\x40\x00\x00\x02"
        + b"\x10\x00\x00\x05\x10\x00\x00\x04"
        + b"\x10\x00\x00" + bytes([len(value)]) + b"\x10\x00\x00\x01"
        + b"alphazeta" + value + b"1"
    )  # fmt: skip


def test_property_dictionary_interns_each_set_once() -> None:
    props = PropertyDictionary()
    ids, indices = props.intern_sets({30: {"a": "1"}, 10: {"b": "2"}, 20: {"a": "1"}})
    assert ids.tolist() == [10, 20, 30]
    assert indices.tolist() == [1, 2, 2]
    column = props.column(PropertyDictionary.lookup(ids, indices, np.array([30, 10, 10], np.uint64)))
    assert column.to_pylist() == [encode_properties({"a": "1"}), *[encode_properties({"b": "2"})] * 2]


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        (b"", 0, 0x02CC5D05),
        (b"a", 0, 0x550D7456),
        (b"abc", 0, 0x32D153FF),
        (b"Nobody inspects the spammish repetition", 0, 0xE2293B2F),
    ],
)
def test_xxh32_matches_reference_vectors(data: bytes, seed: int, expected: int) -> None:
    assert xxh32(data, seed) == expected


def test_span_hash_chains_name_file_target_line() -> None:
    h = xxh32(b"name", 0)
    h = xxh32(b"file.rs", h)
    h = xxh32(b"target", h)
    h = xxh32((42).to_bytes(4, "little"), h)
    assert span_hash("name", "file.rs", "target", 42) == h


def test_pairing_nested_and_sequential_spans() -> None:
    # a( b() c( d() ) )
    begin, end, depth, parent = pair_spans(np.array([1, 1, 0, 1, 1, 0, 0, 0], bool))
    spans = sorted(zip(begin.tolist(), end.tolist(), depth.tolist(), parent.tolist(), strict=True))
    by_begin = {b: (e, d, begin.tolist()[p] if p >= 0 else None) for b, e, d, p in spans}
    assert by_begin == {0: (7, 0, None), 1: (2, 1, 0), 3: (6, 1, 0), 4: (5, 2, 3)}


def test_pairing_completes_spans_cut_by_the_partition_edges() -> None:
    # ends of two spans begun earlier, a full span, then a span still open
    begin, end, depth, parent = pair_spans(np.array([0, 0, 1, 0, 1], bool))
    spans = sorted(zip(end.tolist(), begin.tolist(), depth.tolist(), strict=True), key=lambda s: (s[2], s[0]))
    # outermost synthetic span closes at event 1 and holds the one closing at event 0 (depth 1)
    assert (1, -1, 0) in spans
    assert (0, -1, 1) in spans
    assert (3, 2, 0) in spans
    assert (-1, 4, 0) in spans
    assert len(spans) == 4
    assert all(p == -1 or depth[p] == d - 1 for p, d in zip(parent.tolist(), depth.tolist(), strict=True))


def test_time_range_slices_and_containment() -> None:
    r = TimeRange(1_500, 4_200)
    assert [(s.begin_ns, s.end_ns) for s in r.slices(1_000)] == [
        (1_000, 2_000),
        (2_000, 3_000),
        (3_000, 4_000),
        (4_000, 5_000),
    ]
    assert TimeRange(0, 10).contains(TimeRange(2, 10))
    assert not TimeRange(0, 10).overlaps(TimeRange(10, 20))
    with pytest.raises(ValueError, match="ends before"):
        TimeRange(2, 1)
