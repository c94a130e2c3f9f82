"""Perfetto trace encoding, vectorised with numpy.

A Perfetto trace is a ``Trace`` protobuf: a sequence of ``packet`` fields (number 1), each a
``TracePacket``. We write, in the layout of Micromegas' ``rust/perfetto`` writer:

* one ``TrackDescriptor`` for the process (``uuid``, ``process{pid, process_name}``);
* one per thread stream (``uuid``, ``parent_uuid``, ``thread{pid, tid, thread_name}``);
* one ``Async Operations`` track for async spans;
* two ``TrackEvent`` packets per span: ``TYPE_SLICE_BEGIN`` (with ``name`` and the target as
  category) and ``TYPE_SLICE_END``, timestamps in ns, ``trusted_packet_sequence_id = 1``.

Names are written inline (no interning), which keeps every packet self-contained.

Field numbers (``protos/perfetto/trace``): TracePacket ``timestamp`` 8,
``trusted_packet_sequence_id`` 10, ``track_event`` 11, ``track_descriptor`` 60; TrackDescriptor
``uuid`` 1, ``name`` 2, ``process`` 3, ``thread`` 4, ``parent_uuid`` 5; ProcessDescriptor ``pid`` 1,
``process_name`` 6; ThreadDescriptor ``pid`` 1, ``tid`` 2, ``thread_name`` 5; TrackEvent ``type`` 9,
``track_uuid`` 11, ``categories`` 22, ``name`` 23.

Event packets are built for all spans at once: every field becomes a *ragged* column (a flat
``uint8`` buffer plus a length per row) and rows are concatenated with index arithmetic, so a
trace of a million spans is encoded without a Python loop per span.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["SLICE_BEGIN", "SLICE_END", "PerfettoTrack", "chunk_trace", "encode_trace", "stable_id"]

SLICE_BEGIN = 1
SLICE_END = 2
_SEQUENCE_ID = 1


def stable_id(text: str) -> int:
    """A 64-bit id derived from ``text`` (track uuids; Micromegas uses xxh64, any stable hash works)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# ---------------------------------------------------------------------------------------------
# scalar protobuf writer (descriptors)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _int_field(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _key(number, 2) + _varint(len(value)) + value


def _packet(body: bytes) -> bytes:
    return _bytes_field(1, _int_field(10, _SEQUENCE_ID) + body)


def _track_descriptor(body: bytes) -> bytes:
    return _packet(_bytes_field(60, body))


# ---------------------------------------------------------------------------------------------
# ragged columns


class Ragged(NamedTuple):
    """One variable-length byte string per row: ``flat`` holds them back to back."""

    flat: np.ndarray
    lengths: np.ndarray


def _starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(lengths.size, dtype=np.int64)
    if lengths.size > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def _gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``flat[starts[i] : starts[i] + lengths[i]]`` for every row."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint8)
    out_starts = _starts(lengths)
    index = np.arange(total, dtype=np.int64) + np.repeat(starts - out_starts, lengths)
    return flat[index]


def _fixed(data: bytes, rows: int) -> Ragged:
    lengths = np.full(rows, len(data), dtype=np.int64)
    return Ragged(np.tile(np.frombuffer(data, dtype=np.uint8), rows), lengths)


def _from_table(codes: np.ndarray, fragments: Sequence[bytes]) -> Ragged:
    """Row ``i`` is ``fragments[codes[i]]``."""
    sizes = np.array([len(f) for f in fragments], dtype=np.int64)
    flat = np.frombuffer(b"".join(fragments), dtype=np.uint8) if fragments else np.empty(0, np.uint8)
    lengths = sizes[codes]
    return Ragged(_gather(flat, _starts(sizes)[codes], lengths), lengths)


def _varints(values: np.ndarray) -> Ragged:
    values = values.astype(np.uint64, copy=False)
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(7)
    groups = (values[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    nbytes = np.ones(values.size, dtype=np.int64)
    for k in range(1, 10):
        nbytes += values >= (np.uint64(1) << np.uint64(7 * k))
    keep = np.arange(10)[None, :] < nbytes[:, None]
    more = np.arange(10)[None, :] < (nbytes[:, None] - 1)
    encoded = (groups | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
    return Ragged(encoded[keep], nbytes)


def _concat(pieces: Sequence[Ragged]) -> Ragged:
    """Row-wise concatenation of several ragged columns."""
    lengths = np.sum([p.lengths for p in pieces], axis=0).astype(np.int64)
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    row_starts = _starts(lengths)
    offset_in_row = np.zeros(lengths.size, dtype=np.int64)
    for piece in pieces:
        total = int(piece.lengths.sum())
        if total:
            dest = np.repeat(row_starts + offset_in_row - _starts(piece.lengths), piece.lengths)
            out[dest + np.arange(total, dtype=np.int64)] = piece.flat
        offset_in_row += piece.lengths
    return Ragged(out, lengths)


def _length_delimited(tag: bytes, body: Ragged) -> Ragged:
    rows = body.lengths.size
    return _concat([_fixed(tag, rows), _varints(body.lengths.astype(np.uint64)), body])


# ---------------------------------------------------------------------------------------------
# trace


@dataclass(frozen=True)
class PerfettoTrack:
    """Spans of one track.

    Attributes:
        uuid: track uuid (``stable_id`` of the stream id, or of the process id for async spans).
        thread_name: for thread tracks; None marks the process's async track.
        tid: thread id for thread tracks.
        begin_ns, end_ns: span times (int64 arrays, same length).
        depth: nesting depth of each span (orders simultaneous events).
        name_codes, names: span name = ``names[name_codes[i]]``.
        target_codes, targets: span category = ``targets[target_codes[i]]``.
    """

    uuid: int
    thread_name: str | None
    tid: int
    begin_ns: np.ndarray
    end_ns: np.ndarray
    depth: np.ndarray
    name_codes: np.ndarray
    names: Sequence[str]
    target_codes: np.ndarray
    targets: Sequence[str]


def _events(tracks: Sequence[PerfettoTrack]) -> Ragged:
    """Framed TrackEvent packets of every span of every track, in timestamp order."""
    name_fragments: list[bytes] = [b""]  # code 0: nothing (end events)
    target_fragments: list[bytes] = [b""]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "kind", "track", "name", "target", "rank", "order")}
    for track in tracks:
        n = int(track.begin_ns.size)
        if n == 0:
            continue
        name_base, target_base = len(name_fragments), len(target_fragments)
        name_fragments += [_bytes_field(23, name.encode()) for name in track.names]
        target_fragments += [_bytes_field(22, target.encode()) for target in track.targets]
        begin = track.begin_ns.astype(np.int64)
        end = np.maximum(track.end_ns.astype(np.int64), begin)
        depth = track.depth.astype(np.int64)
        zero = end == begin
        parts["ts"] += [begin, end]
        parts["kind"] += [np.full(n, SLICE_BEGIN, np.int64), np.full(n, SLICE_END, np.int64)]
        parts["track"] += [np.full(n, track.uuid, np.uint64)] * 2
        parts["name"] += [track.name_codes.astype(np.int64) + name_base, np.zeros(n, np.int64)]
        parts["target"] += [track.target_codes.astype(np.int64) + target_base, np.zeros(n, np.int64)]
        # at equal times: ends of spans that lasted, then begins (outer first), then ends of
        # zero-length spans (inner first) -- so every track's slices stay properly nested.
        parts["rank"] += [np.ones(n, np.int64), np.where(zero, 2, 0)]
        parts["order"] += [depth, -depth]
    if not parts["ts"]:
        return Ragged(np.empty(0, np.uint8), np.empty(0, np.int64))
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.lexsort((cols["track"], cols["order"], cols["rank"], cols["ts"]))
    cols = {k: v[order] for k, v in cols.items()}
    rows = cols["ts"].size
    kind_fragments = [b"", _int_field(9, SLICE_BEGIN), _int_field(9, SLICE_END)]
    track_event = _concat(
        [
            _from_table(cols["kind"], kind_fragments),
            _fixed(_key(11, 0), rows),
            _varints(cols["track"]),
            _from_table(cols["target"], target_fragments),
            _from_table(cols["name"], name_fragments),
        ]
    )
    packet = _concat(
        [
            _fixed(_key(8, 0), rows),
            _varints(np.maximum(cols["ts"], 0).astype(np.uint64)),
            _fixed(_int_field(10, _SEQUENCE_ID), rows),
            _length_delimited(_key(11, 2), track_event),
        ]
    )
    return _length_delimited(_key(1, 2), packet)


def encode_trace(process_id: str, exe: str, tracks: Sequence[PerfettoTrack]) -> tuple[bytes, np.ndarray]:
    """Encode a whole trace.

    Returns:
        The trace bytes and the offsets at which packets end (chunk boundaries).
    """
    process_uuid = stable_id(process_id)
    pid = process_uuid & 0x7FFFFFFF
    head = [
        _track_descriptor(
            _int_field(1, process_uuid) + _bytes_field(3, _int_field(1, pid) + _bytes_field(6, exe.encode()))
        )
    ]
    for track in tracks:
        if track.thread_name is None:
            body = _int_field(1, track.uuid) + _int_field(5, process_uuid) + _bytes_field(2, b"Async Operations")
        else:
            thread = (
                _int_field(1, pid) + _int_field(2, track.tid & 0x7FFFFFFF) + _bytes_field(5, track.thread_name.encode())
            )
            body = _int_field(1, track.uuid) + _int_field(5, process_uuid) + _bytes_field(4, thread)
        head.append(_track_descriptor(body))
    events = _events(tracks)
    head_bytes = b"".join(head)
    head_ends = np.cumsum([len(p) for p in head], dtype=np.int64)
    event_ends = len(head_bytes) + np.cumsum(events.lengths, dtype=np.int64)
    return head_bytes + events.flat.tobytes(), np.concatenate([head_ends, event_ends])


def chunk_trace(trace: bytes, packet_ends: np.ndarray, chunk_bytes: int = 256 * 1024) -> list[bytes]:
    """Split ``trace`` into chunks of about ``chunk_bytes`` at packet boundaries."""
    if not trace:
        return []
    chunks, start = [], 0
    while start < len(trace):
        # the last packet end within start + chunk_bytes, but at least one packet
        limit = np.searchsorted(packet_ends, start + chunk_bytes, side="right") - 1
        end = int(packet_ends[limit]) if limit >= 0 and packet_ends[limit] > start else 0
        if end <= start:
            end = int(packet_ends[np.searchsorted(packet_ends, start, side="right")])
        chunks.append(trace[start:end])
        start = end
    return chunks
