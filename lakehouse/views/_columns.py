"""Column builders shared by the block-based views (vectorised, per block or per batch).

Rows of a block-based view repeat a few block-level values (process, stream, block ids,
process attributes): they become dictionary columns whose indices are ``np.repeat`` of the
block index, so nothing is done per row in Python. Per-event pieces of one block are gathered
per object type by the transit reader and merged back into queue order here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._block_source import SourceBatch, SourceBlock, SourceProcess
from .._property_jsonb import PropertyDictionary
from .._view_set import DICT_BIN, DICT_STR, TIMESTAMP

__all__ = [
    "BLOCK_CONTEXT_FIELDS",
    "PROCESS_PROPERTIES_FIELD",
    "SERVICE_NAME_FIELD",
    "BlockRows",
    "concat_dictionary_strings",
    "concat_strings",
    "dictionary_strings",
    "null_column",
    "service_name_of",
    "timestamps",
]

BLOCK_CONTEXT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("process_id", DICT_STR, nullable=False),
    pa.field("stream_id", DICT_STR, nullable=False),
    pa.field("block_id", DICT_STR, nullable=False),
    pa.field("insert_time", TIMESTAMP, nullable=False),
    pa.field("exe", DICT_STR, nullable=False),
    pa.field("username", DICT_STR, nullable=False),
    pa.field("computer", DICT_STR, nullable=False),
)
"""Leading fields of the block-based event views, filled by ``BlockRows.context_columns()``."""

PROCESS_PROPERTIES_FIELD = pa.field("process_properties", DICT_BIN, nullable=False)
"""The ``process_properties`` field, filled by ``BlockRows.process_properties()``."""

SERVICE_NAME_FIELD = pa.field("service_name", DICT_STR, nullable=False)
"""Sirius's ``service_name`` field, appended last to the event views (``BlockRows.service_name()``)."""

SERVICE_NAME_KEYS = ("otel.resource.service.name", "service.name")
"""Process properties naming the service, in order of preference (then ``exe``)."""


def service_name_of(exe: str, properties: Mapping[str, str]) -> str:
    """The service a process belongs to: OTel ``service.name``, else the ``service.name`` property, else ``exe``.

    >>> service_name_of("app", {"otel.resource.service.name": "shop"}), service_name_of("app", {})
    ('shop', 'app')
    """
    for key in SERVICE_NAME_KEYS:
        value = properties.get(key)
        if value:
            return value
    return exe


def timestamps(ns: npt.ArrayLike) -> pa.Array:
    """``Timestamp(ns, +00:00)`` array from Unix nanoseconds."""
    return pa.array(np.asarray(ns, dtype=np.int64), type=pa.int64()).view(TIMESTAMP)


_NULLS_CACHED_ROWS = 128 * 1024
"""Rows of the cached all-null arrays ``null_column`` slices (a row group of ``MAX_ROW_GROUP_ROWS``)."""


@functools.cache
def _cached_nulls(kind: pa.DataType) -> pa.Array:
    return pa.nulls(_NULLS_CACHED_ROWS, kind)


def _zero_indices(rows: int) -> pa.Array:
    """``rows`` int32 zeros (dictionary indices of a single-valued column)."""
    if rows > _NULLS_CACHED_ROWS:
        return pa.array(np.zeros(rows, np.int32))
    return _cached_zeros().slice(0, rows)


@functools.cache
def _cached_zeros() -> pa.Array:
    return pa.array(np.zeros(_NULLS_CACHED_ROWS, np.int32))


def null_column(rows: int, kind: pa.DataType) -> pa.Array:
    """An all-null array: a zero-copy slice of one cached array when ``rows`` fits in it.

    ``pa.nulls`` allocates and zero-fills the data buffer (16 bytes a row for a ``binary(16)``
    trace id); arrays are immutable, so one cached array serves every row group.

    >>> null_column(3, pa.binary(8)).to_pylist()
    [None, None, None]
    """
    if rows > _NULLS_CACHED_ROWS:
        return pa.nulls(rows, kind)
    return _cached_nulls(kind).slice(0, rows)


def dictionary_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``Dictionary(Int32, Utf8)`` encoding of a string column."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if pa.types.is_dictionary(values.type):
        return values.cast(DICT_STR)
    return values.cast(pa.string()).dictionary_encode()


def concat_dictionary_strings(parts: Sequence[pa.Array]) -> pa.DictionaryArray:
    """String or dictionary arrays as one ``DictStr`` array: dictionaries unified, no text copied per row."""
    if not parts:
        return pa.array([], pa.string()).dictionary_encode()
    return pa.concat_arrays([dictionary_strings(p) for p in parts])


def concat_strings(parts: Sequence[pa.Array]) -> pa.Array:
    """Concatenate string arrays (Utf8), tolerating an empty list."""
    if not parts:
        return pa.array([], pa.string())
    return pa.concat_arrays([p.cast(pa.string()) for p in parts])


class BlockRows:
    """Block-constant columns for rows laid out block after block.

    Args:
        batch: the source batch.
        counts: number of rows each block of ``batch`` contributes, in block order.
    """

    def __init__(self, batch: SourceBatch, counts: Sequence[int]) -> None:
        self.batch = batch
        self.counts = np.asarray(counts, dtype=np.int64)
        self.block_of_row = np.repeat(np.arange(len(batch.blocks), dtype=np.int64), self.counts)

    def _per_block(self, value: Callable[[SourceBlock], str]) -> pa.DictionaryArray:
        values = [value(b) for b in self.batch.blocks]
        uniques, inverse = np.unique(np.array(values, dtype=object), return_inverse=True)
        if len(uniques) == 1:
            # One process (or stream) for every row, as in a JIT partition: the indices are all
            # zero, a slice of one cached array rather than a fresh one per column and chunk.
            indices = _zero_indices(int(self.counts.sum()))
        else:
            indices = pa.array(inverse.astype(np.int32)[self.block_of_row] if values else np.empty(0, np.int32))
        # Indices of np.unique's inverse: in range by construction (the check reads every row).
        return pa.DictionaryArray.from_arrays(indices, pa.array(list(uniques), pa.string()), safe=False)

    def _process(self, block: SourceBlock) -> SourceProcess:
        return self.batch.processes[block.process_id]

    def process_id(self) -> pa.DictionaryArray:
        """``process_id`` (DictStr)."""
        return self._per_block(lambda b: str(b.process_id))

    def stream_id(self) -> pa.DictionaryArray:
        """``stream_id`` (DictStr)."""
        return self._per_block(lambda b: str(b.stream_id))

    def block_id(self) -> pa.DictionaryArray:
        """``block_id`` (DictStr)."""
        return self._per_block(lambda b: str(b.block_id))

    def process_text(self, attribute: str) -> pa.DictionaryArray:
        """A text attribute of the block's process (``exe``, ``username``, ``computer``)."""
        return self._per_block(lambda b: str(getattr(self._process(b), attribute)))

    def context_columns(self) -> list[pa.Array]:
        """The columns of ``BLOCK_CONTEXT_FIELDS``, in order."""
        return [
            self.process_id(),
            self.stream_id(),
            self.block_id(),
            self.insert_time(),
            self.process_text("exe"),
            self.process_text("username"),
            self.process_text("computer"),
        ]

    def service_name(self) -> pa.DictionaryArray:
        """``service_name`` (DictStr) of the block's process, see ``service_name_of``."""
        return self._per_block(lambda b: service_name_of(self._process(b).exe, self._process(b).properties))

    def insert_time(self) -> pa.Array:
        """The block's ``insert_time`` per row."""
        values = np.array([b.insert_time_ns for b in self.batch.blocks], dtype=np.int64)
        return timestamps(values[self.block_of_row] if values.size else values)

    def process_properties(self) -> pa.DictionaryArray:
        """``process_properties`` (DictBin JSONB of ``processes.properties``)."""
        dictionary = PropertyDictionary()
        per_block = np.array(
            [dictionary.intern(self._process(b).properties) for b in self.batch.blocks], dtype=np.int32
        )
        return dictionary.column(per_block[self.block_of_row] if per_block.size else per_block)
