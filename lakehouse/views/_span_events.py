"""Span events of ``cpu`` blocks (thread and async), shared by ``thread_spans`` and ``async_events``.

Each begin/end event names its span through a descriptor: a ``SpanRecord`` (name, target,
file, line) or, for ``*Named*`` events, a ``SpanLocationRecord`` plus a ``name`` string. The
span ``hash`` is Micromegas's xxh32 chain over name, filename, target and the line as 4 LE
bytes (``micromegas-query.md`` §3).

Events repeat a few descriptors. Each block resolves its distinct descriptor references once
and gives its events the int32 code of their ``(name, target, filename, line)`` in a
``SpanDescriptors`` shared by the batch; hashes are computed once per distinct descriptor, and
the text columns become dictionary arrays over the few distinct texts (no text per event).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._transit_dependencies import Dependencies
from .._transit_reader import POSITION, DecodedBlock

__all__ = ["SpanDescriptors", "SpanEvents", "span_events", "span_hash", "xxh32"]

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


class SpanDescriptors:
    """The distinct span descriptors of a batch of blocks, addressed by int32 codes.

    >>> d = SpanDescriptors()
    >>> d.intern("f", "app", "a.rs", 3), d.intern("g", "app", "a.rs", 9), d.intern("f", "app", "a.rs", 3)
    (0, 1, 0)
    >>> codes = np.array([1, 0, 1], np.int32)
    >>> d.text("name", codes).to_pylist(), d.text("target", codes).dictionary.to_pylist(), d.lines(codes).tolist()
    (['g', 'f', 'g'], ['app'], [9, 3, 9])
    """

    _TEXTS: ClassVar[dict[str, int]] = {"name": 0, "target": 1, "filename": 2}

    def __init__(self) -> None:
        self._codes: dict[tuple[str, str, str, int], int] = {}
        self._texts: tuple[dict[str, int], ...] = ({}, {}, {})
        self._text_codes: tuple[list[int], ...] = ([], [], [])  # per descriptor: code of each text
        self._lines: list[int] = []
        self._hashes: list[int] = []
        # Per dependency map (kept alive here, so its id is not reused): codes of resolved pairs.
        self._resolved: dict[int, tuple[Dependencies, dict[tuple[int, int | None], int]]] = {}

    def __len__(self) -> int:
        return len(self._codes)

    def intern(self, name: str, target: str, filename: str, line: int) -> int:
        """The code of a descriptor, added if new."""
        key = (name, target, filename, line)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = len(self._codes)
            for texts, codes, text in zip(self._texts, self._text_codes, (name, target, filename), strict=True):
                codes.append(texts.setdefault(text, len(texts)))
            self._lines.append(line & _M32)
            self._hashes.append(span_hash(name, filename, target, line))
        return code

    def event_codes(
        self, decoded: DecodedBlock, refs: npt.NDArray[np.uint64], names: npt.NDArray[np.uint64] | None
    ) -> npt.NDArray[np.int32]:
        """Codes of events given their descriptor ids (and, for named events, name string ids).

        Each distinct ``(descriptor, name)`` pair of the block is resolved once: 1-D hash
        encodings find them (sorting every event, as ``np.unique`` does, cost more than the rest
        of the block).

        Raises:
            CorruptBlockError: a descriptor id that is not in the block.
        """
        deps = decoded.dependencies
        # Blocks whose dependency queues decoded to one shared ``Dependencies`` (see
        # ``decode_block``) resolve each pair once for all of them.
        entry = self._resolved.get(id(deps))
        if entry is None or entry[0] is not deps:
            entry = self._resolved[id(deps)] = (deps, {})
        known = entry[1]
        ref_values, ref_codes = _factorize(refs)
        if names is None:
            pairs: Iterable[tuple[int, int | None]] = ((ref, None) for ref in ref_values.tolist())
            inverse = ref_codes
        else:
            name_values, name_codes = _factorize(names)
            unique_keys, inverse = _factorize(ref_codes * name_values.size + name_codes)
            pairs = zip(
                ref_values[unique_keys // name_values.size].tolist(),
                name_values[unique_keys % name_values.size].tolist(),
                strict=True,
            )
        resolved = []
        for pair in pairs:
            code = known.get(pair)
            if code is None:
                code = known[pair] = self._resolve(deps, *pair)
            resolved.append(code)
        return np.array(resolved, dtype=np.int32)[inverse]

    def _resolve(self, deps: Dependencies, ref: int, name_id: int | None) -> int:
        record = deps.records.get(ref)
        if record is None:
            deps.value(ref)  # raises CorruptBlockError for a missing id
            record = {}
        name = deps.strings.get(name_id, "") if name_id is not None else str(record.get("name", ""))
        target, filename = str(record.get("target", "")), str(record.get("file", ""))
        return self.intern(name, target, filename, int(record.get("line", 0)))

    def text(self, column: str, codes: npt.NDArray[np.int32]) -> pa.DictionaryArray:
        """``name``, ``target`` or ``filename`` of coded events, as a dictionary array."""
        which = self._TEXTS[column]
        remap = np.array(self._text_codes[which], dtype=np.int32)
        indices = remap[codes] if codes.size else np.empty(0, np.int32)
        return pa.DictionaryArray.from_arrays(
            pa.array(indices, pa.int32()), pa.array(list(self._texts[which]), pa.string())
        )

    def lines(self, codes: npt.NDArray[np.int32]) -> npt.NDArray[np.uint32]:
        """u32 line of coded events."""
        return np.array(self._lines, dtype=np.uint32)[codes] if codes.size else np.empty(0, np.uint32)

    def hashes(self, codes: npt.NDArray[np.int32]) -> npt.NDArray[np.uint32]:
        """u32 span hash of coded events."""
        return np.array(self._hashes, dtype=np.uint32)[codes] if codes.size else np.empty(0, np.uint32)


def _factorize(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """``(distinct values in first-seen order, code of each value)``, by hashing."""
    encoded = pa.array(values).dictionary_encode()
    return encoded.dictionary.to_numpy(), encoded.indices.to_numpy().astype(np.int64)


@dataclass(frozen=True, slots=True)
class SpanEvents:
    """Span events of one block in queue order.

    Attributes:
        position: index in the block's object queue.
        ticks: absolute ticks.
        is_begin: begin (True) or end event.
        code: the event's descriptor in the ``SpanDescriptors`` given to ``span_events``.
        span_id, parent_span_id, depth: async events only (empty for thread events).
    """

    position: npt.NDArray[np.int64]
    ticks: npt.NDArray[np.int64]
    is_begin: npt.NDArray[np.bool_]
    code: npt.NDArray[np.int32]
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


def span_events(decoded: DecodedBlock, kind: str, descriptors: SpanDescriptors) -> SpanEvents:
    """The ``thread`` or ``async`` span events of one decoded block, in queue order.

    Their descriptors are interned in ``descriptors`` (one per batch, so codes are comparable
    across its blocks).
    """
    types = _THREAD if kind == "thread" else _ASYNC
    with_ids = kind != "thread"
    parts: list[list[npt.NDArray[Any]]] = []
    for type_name, (is_begin, ref_column) in types.items():
        table = decoded.tables.get(type_name)
        if table is None or table.num_rows == 0:
            continue
        n = table.num_rows
        names = table.column("name").to_numpy() if "name" in table.column_names else None

        def ints(column: str, n: int = n, table: pa.Table = table) -> npt.NDArray[np.int64]:
            if column not in table.column_names:
                return np.zeros(n, np.int64)
            return table.column(column).to_numpy().astype(np.int64, copy=False)

        part = [
            table.column(POSITION).to_numpy(),
            ints("time"),
            np.full(n, is_begin),
            descriptors.event_codes(decoded, table.column(ref_column).to_numpy(), names),
        ]
        if with_ids:
            part += [ints("span_id"), ints("parent_span_id"), ints("depth").astype(np.uint32)]
        parts.append(part)
    if not parts:
        empty = np.empty(0, np.int64)
        return SpanEvents(empty, empty, np.empty(0, bool), np.empty(0, np.int32), empty, empty, np.empty(0, np.uint32))
    total = sum(p[0].size for p in parts)
    if len(parts) == 1:
        columns = parts[0]  # each table is in queue order already
    elif total == decoded.nb_objects:
        # The block holds these events only: positions are 0..n-1, each column is a scatter.
        columns = [np.empty(total, c.dtype) for c in parts[0]]
        for part in parts:
            for column, values in zip(columns, part, strict=True):
                column[part[0]] = values
    else:
        merged = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
        # Each table is sorted by position: a stable sort merges the runs in linear time.
        order = np.argsort(merged[0], kind="stable")
        columns = [c[order] for c in merged]
    if not with_ids:
        no_ids = np.empty(0, np.int64)
        columns += [no_ids, no_ids, np.empty(0, np.uint32)]
    return SpanEvents(*columns)
