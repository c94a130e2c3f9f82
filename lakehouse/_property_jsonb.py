"""Property maps as JSONB: the ``properties`` / ``process_properties`` columns of the views.

Micromegas stores properties as databend ``jsonb`` binary values (``micromegas-query.md`` §3):
an object of key → string with the keys sorted (a Rust ``BTreeMap``), encoded as

* a big-endian u32 header ``0x40000000 | n`` (object container, ``n`` pairs),
* ``2n`` big-endian u32 entries ``0x10000000 | byte length`` (string), keys first then values,
* the key bytes in order, then the value bytes in order.

Columns are ``Dictionary(Int32, Binary)``. A block references a handful of property sets, so
each distinct set is encoded once and events point at it through dictionary indices:
``PropertyDictionary`` interns encoded sets across the blocks of one partition, and the row
builders map per-event set ids to its indices with numpy (no per-event Python work).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["EMPTY_JSONB_OBJECT", "PropertyDictionary", "constant_dictionary", "encode_properties"]

_OBJECT_CONTAINER_TAG = 0x40000000
_STRING_TAG = 0x10000000
_MAX_LENGTH = 0x0FFFFFFF  # JEntry length bits

EMPTY_JSONB_OBJECT = struct.pack(">I", _OBJECT_CONTAINER_TAG)
"""The JSONB encoding of ``{}``."""


def encode_properties(properties: Mapping[str, str]) -> bytes:
    """Encode a string map as a databend JSONB object with sorted keys.

    Args:
        properties: keys and values; both must be strings.

    Returns:
        The JSONB bytes.

    Raises:
        ValueError: a key or value is longer than a JSONB entry can describe (256 MiB).

    >>> encode_properties({"b": "2", "a": "1"}).hex()
    '400000021000000110000001100000011000000161623132'
    """
    items = sorted((str(k), str(v)) for k, v in properties.items())
    keys = [k.encode("utf-8") for k, _ in items]
    values = [v.encode("utf-8") for _, v in items]
    parts = [struct.pack(">I", _OBJECT_CONTAINER_TAG | len(items))]
    for data in (*keys, *values):
        if len(data) > _MAX_LENGTH:
            msg = f"property of {len(data)} bytes is too long for JSONB"
            raise ValueError(msg)
        parts.append(struct.pack(">I", _STRING_TAG | len(data)))
    parts.extend(keys)
    parts.extend(values)
    return b"".join(parts)


def constant_dictionary(value: bytes | str, length: int, value_type: pa.DataType) -> pa.DictionaryArray:
    """A dictionary array repeating one value ``length`` times (per-block constant columns)."""
    indices = pa.array(np.zeros(length, dtype=np.int32), type=pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], type=value_type))


class PropertyDictionary:
    """Interns encoded property sets; hands out int32 indices into one shared dictionary.

    Index 0 is always the empty object, used for events that carry no properties.
    """

    __slots__ = ("_index", "_values")

    def __init__(self) -> None:
        self._values: list[bytes] = [EMPTY_JSONB_OBJECT]
        self._index: dict[bytes, int] = {EMPTY_JSONB_OBJECT: 0}

    def intern(self, properties: Mapping[str, str]) -> int:
        """Return the index of the encoded ``properties``, adding it if new."""
        return self.intern_encoded(encode_properties(properties))

    def intern_encoded(self, encoded: bytes) -> int:
        """Return the index of already-encoded JSONB bytes, adding them if new."""
        index = self._index.get(encoded)
        if index is None:
            index = self._index[encoded] = len(self._values)
            self._values.append(encoded)
        return index

    def intern_sets(
        self, sets: Mapping[int, Mapping[str, str]]
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
        """Intern a block's property sets: sorted set ids and their dictionary indices.

        Args:
            sets: the block's property sets by dependency id.

        Returns:
            ``(ids, indices)`` with ``ids`` sorted, for ``lookup``.
        """
        ids = np.fromiter(sets, dtype=np.uint64, count=len(sets))
        order = np.argsort(ids)
        values = list(sets.values())
        indices = np.array([self.intern(values[i]) for i in order.tolist()], dtype=np.int32)
        return ids[order], indices

    @staticmethod
    def lookup(
        ids: npt.NDArray[np.uint64], indices: npt.NDArray[np.int32], wanted: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.int32]:
        """Map property-set ids of events to dictionary indices (ids checked by the reader)."""
        if wanted.size == 0:
            return np.empty(0, np.int32)
        return indices[np.searchsorted(ids, wanted)]

    def dictionary(self) -> pa.Array:
        """The dictionary values (Binary) accumulated so far."""
        return pa.array(self._values, type=pa.binary())

    def column(self, indices: npt.NDArray[np.int32]) -> pa.DictionaryArray:
        """A ``Dictionary(Int32, Binary)`` column from per-row indices."""
        return pa.DictionaryArray.from_arrays(pa.array(indices, type=pa.int32()), self.dictionary())
