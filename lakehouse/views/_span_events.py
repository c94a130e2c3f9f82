"""Span events of ``cpu`` blocks (thread and async), shared by ``thread_spans`` and ``async_events``.

Each begin/end event names its span through a descriptor: a ``SpanRecord`` (name, target,
file, line) or, for ``*Named*`` events, a ``SpanLocationRecord`` plus a ``name`` string. The
span ``hash`` is Micromegas's xxh32 chain over name, filename, target and the line as 4 LE
bytes (``micromegas-query.md`` §3). Hashes are computed once per distinct descriptor (a few per
block, cached across blocks), then spread to events with numpy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._transit_reader import POSITION, DecodedBlock

__all__ = ["SpanEvents", "span_events", "span_hash", "xxh32"]

_P1, _P2, _P3, _P4, _P5 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1
_M32 = 0xFFFFFFFF


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _M32


def xxh32(data: bytes, seed: int = 0) -> int:
    """The 32-bit xxHash of ``data``.

    >>> hex(xxh32(b"")), hex(xxh32(b"abc"))
    ('0x2cc5d05', '0x32d153ff')
    """
    length = len(data)
    offset = 0
    if length >= 16:
        v1, v2, v3, v4 = (seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed & _M32, (seed - _P1) & _M32
        lanes = np.frombuffer(data, dtype="<u4", count=(length // 16) * 4).tolist()
        for i in range(0, len(lanes), 4):
            v1 = (_rotl((v1 + lanes[i] * _P2) & _M32, 13) * _P1) & _M32
            v2 = (_rotl((v2 + lanes[i + 1] * _P2) & _M32, 13) * _P1) & _M32
            v3 = (_rotl((v3 + lanes[i + 2] * _P2) & _M32, 13) * _P1) & _M32
            v4 = (_rotl((v4 + lanes[i + 3] * _P2) & _M32, 13) * _P1) & _M32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M32
        offset = (length // 16) * 16
    else:
        h = (seed + _P5) & _M32
    h = (h + length) & _M32
    while offset + 4 <= length:
        word = int.from_bytes(data[offset : offset + 4], "little")
        h = (_rotl((h + word * _P3) & _M32, 17) * _P4) & _M32
        offset += 4
    while offset < length:
        h = (_rotl((h + data[offset] * _P5) & _M32, 11) * _P1) & _M32
        offset += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h


@functools.lru_cache(maxsize=65536)
def span_hash(name: str, filename: str, target: str, line: int) -> int:
    """Micromegas's span hash: xxh32 chained over name, filename, target, line (u32 LE)."""
    h = xxh32(name.encode(), 0)
    h = xxh32(filename.encode(), h)
    h = xxh32(target.encode(), h)
    return xxh32(int(line & _M32).to_bytes(4, "little"), h)


@dataclass(frozen=True, slots=True)
class SpanEvents:
    """Span events of one block in queue order.

    Attributes:
        position: index in the block's object queue.
        ticks: absolute ticks.
        is_begin: begin (True) or end event.
        name, target, filename: per-event strings (dictionary arrays).
        line: u32 line.
        hash: u32 span hash.
        span_id, parent_span_id, depth: async events only (zeros for thread events).
    """

    position: npt.NDArray[np.int64]
    ticks: npt.NDArray[np.int64]
    is_begin: npt.NDArray[np.bool_]
    name: pa.Array
    target: pa.Array
    filename: pa.Array
    line: npt.NDArray[np.uint32]
    hash: npt.NDArray[np.uint32]
    span_id: npt.NDArray[np.int64]
    parent_span_id: npt.NDArray[np.int64]
    depth: npt.NDArray[np.uint32]

    def __len__(self) -> int:
        return int(self.position.size)


_THREAD = {
    "BeginThreadSpanEvent": (True, "thread_span_desc"),
    "EndThreadSpanEvent": (False, "thread_span_desc"),
    "BeginThreadNamedSpanEvent": (True, "thread_span_location"),
    "EndThreadNamedSpanEvent": (False, "thread_span_location"),
}
_ASYNC = {
    "BeginAsyncSpanEvent": (True, "span_desc"),
    "EndAsyncSpanEvent": (False, "span_desc"),
    "BeginAsyncNamedSpanEvent": (True, "span_location"),
    "EndAsyncNamedSpanEvent": (False, "span_location"),
}


def _descriptor_columns(
    decoded: DecodedBlock, refs: npt.NDArray[np.uint64], names: npt.NDArray[np.uint64] | None
) -> tuple[pa.Array, pa.Array, pa.Array, npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """name, target, filename, line, hash of events given descriptor ids (and name string ids)."""
    deps = decoded.dependencies
    # Distinct (descriptor, name) pairs through 1-D hash encodings (a block repeats a few pairs;
    # sorting every event, as np.unique does, cost more than the rest of the block).
    ref_values, ref_codes = _factorize(refs)
    if names is None:
        name_values = np.zeros(1, np.uint64)
        unique_keys, inverse = np.arange(ref_values.size, dtype=np.int64), ref_codes
    else:
        name_values, name_codes = _factorize(names)
        keys = ref_codes * name_values.size + name_codes
        unique_keys, inverse = _factorize(keys)
    uniques = zip(
        ref_values[unique_keys // name_values.size].tolist(),
        name_values[unique_keys % name_values.size].tolist(),
        strict=True,
    )
    u_name, u_target, u_file, u_line, u_hash = [], [], [], [], []
    for ref, name_id in uniques:
        record = deps.records.get(ref)
        if record is None:
            deps.value(ref)  # raises CorruptBlockError for a missing id
            record = {}
        name = deps.strings.get(name_id, "") if names is not None else str(record.get("name", ""))
        target, filename, line = str(record.get("target", "")), str(record.get("file", "")), int(record.get("line", 0))
        u_name.append(name)
        u_target.append(target)
        u_file.append(filename)
        u_line.append(line & _M32)
        u_hash.append(span_hash(name, filename, target, line))
    codes = inverse.astype(np.int32)
    return (
        _coded(u_name, codes),
        _coded(u_target, codes),
        _coded(u_file, codes),
        np.array(u_line, dtype=np.uint32)[inverse],
        np.array(u_hash, dtype=np.uint32)[inverse],
    )


def _factorize(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """``(distinct values in first-seen order, code of each value)``, by hashing."""
    encoded = pa.array(values).dictionary_encode()
    return encoded.dictionary.to_numpy(), encoded.indices.to_numpy().astype(np.int64)


def _coded(values: list[str], codes: npt.NDArray[np.int32]) -> pa.DictionaryArray:
    """Per-event strings as a dictionary array: ``values[codes]`` without copying any text.

    Events repeat a few descriptors: gathering int32 codes (and unifying the small per-block
    dictionaries when blocks are concatenated) is what keeps a million span events cheap.
    """
    code_of: dict[str, int] = {}  # a few dozen texts: a dict beats sorting Python objects
    remap = np.array([code_of.setdefault(v, len(code_of)) for v in values], dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(remap[codes], pa.int32()), pa.array(list(code_of), pa.string()))


def span_events(decoded: DecodedBlock, kind: str) -> SpanEvents:
    """The ``thread`` or ``async`` span events of one decoded block, in queue order."""
    types = _THREAD if kind == "thread" else _ASYNC
    parts: list[tuple[npt.NDArray[np.int64], ...]] = []
    texts: list[tuple[pa.Array, pa.Array, pa.Array]] = []
    for type_name, (is_begin, ref_column) in types.items():
        table = decoded.tables.get(type_name)
        if table is None or table.num_rows == 0:
            continue
        n = table.num_rows
        names = table.column("name").to_numpy() if "name" in table.column_names else None
        name, target, filename, line, hashes = _descriptor_columns(decoded, table.column(ref_column).to_numpy(), names)

        def ints(column: str, n: int = n, table: pa.Table = table) -> npt.NDArray[np.int64]:
            if column not in table.column_names:
                return np.zeros(n, np.int64)
            return table.column(column).to_numpy().astype(np.int64)

        parts.append(
            (
                table.column(POSITION).to_numpy(),
                ints("time"),
                np.full(n, is_begin),
                line,
                hashes,
                ints("span_id"),
                ints("parent_span_id"),
                ints("depth").astype(np.uint32),
            )
        )
        texts.append((name, target, filename))
    if not parts:
        empty = np.empty(0, np.int64)
        no_text = pa.array([], pa.string()).dictionary_encode()
        return SpanEvents(
            empty, empty, np.empty(0, bool), no_text, no_text, no_text,
            np.empty(0, np.uint32), np.empty(0, np.uint32), empty, empty, np.empty(0, np.uint32),
        )  # fmt: skip
    columns = [np.concatenate([p[i] for p in parts]) for i in range(8)]
    order = np.argsort(columns[0], kind="stable")
    take = pa.array(order)
    name, target, filename = (pa.concat_arrays([t[i] for t in texts]).take(take) for i in range(3))
    return SpanEvents(
        position=columns[0][order],
        ticks=columns[1][order],
        is_begin=columns[2][order].astype(bool),
        name=name,
        target=target,
        filename=filename,
        line=columns[3][order].astype(np.uint32),
        hash=columns[4][order].astype(np.uint32),
        span_id=columns[5][order],
        parent_span_id=columns[6][order],
        depth=columns[7][order].astype(np.uint32),
    )
