"""Property columns in every shape Micromegas has used, and the conversions between them.

Properties reach SQL as JSONB (``Dictionary(Int32, Binary)``, the views' type, or plain
``Binary``), as the legacy ``List<Struct<key: Utf8, value: Utf8>>`` and as a dictionary-encoded
list (``Dictionary(Int32, List<Struct>)``). The functions here accept all of them:

* ``properties_to_jsonb(p) → Dictionary(Int32, Binary)``: a JSONB object of the key/value pairs
  (keys sorted; the last value of a repeated key wins);
* ``properties_to_dict(list) → Dictionary(Int32, List<Struct>)``: identical lists share one entry;
* ``properties_to_array(dict) → List<Struct>``: the inverse.

DataFusion-python UDFs have one exact signature each, so a function over several input types is
registered once per type (``<name>__binary``, ``<name>__list``, ``<name>__dict_list``; the plain
name takes the views' type) and :mod:`._sql_overloads` points each call at the right one.
Conversion to JSONB happens once per distinct value (dictionary inputs) or per distinct list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._property_jsonb import encode_properties
from ._sql_jsonb import DICT_BINARY, decode_jsonb

__all__ = [
    "PROPERTY_LIST",
    "PROPERTY_LIST_DICT",
    "VARIANT_TYPES",
    "as_jsonb_dictionary",
    "properties_udfs",
    "variant_udfs",
]

PROPERTY_STRUCT = pa.struct([("key", pa.utf8()), ("value", pa.utf8())])
PROPERTY_LIST = pa.list_(PROPERTY_STRUCT)
PROPERTY_LIST_DICT = pa.dictionary(pa.int32(), PROPERTY_LIST)

VARIANT_TYPES: dict[str, pa.DataType] = {
    "binary": pa.binary(),
    "list": PROPERTY_LIST,
    "dict_list": PROPERTY_LIST_DICT,
}
"""Overload suffix → the first argument's type (the plain name takes ``Dictionary(Int32, Binary)``)."""

Udf = tuple[str, Callable[..., pa.Array], list[pa.DataType], pa.DataType]


def _pairs_to_jsonb(pairs: list[dict[str, Any]] | None) -> bytes | None:
    if pairs is None:
        return None
    mapping: dict[str, str] = {}
    for pair in pairs:
        if pair is None or pair.get("key") is None:
            continue
        value = pair.get("value")
        mapping[str(pair["key"])] = "" if value is None else str(value)
    return encode_properties(mapping)


_PairsKey = tuple[tuple[Any, Any], ...]


def _encode_distinct_lists(
    lists: pa.Array, encode: Callable[[list[Any], _PairsKey], Any], value_type: pa.DataType
) -> pa.DictionaryArray:
    """A dictionary of ``encode(pairs, key)`` per distinct property list (null lists stay null)."""
    cache: dict[_PairsKey, int] = {}
    values: list[Any] = []
    indices = np.zeros(len(lists), dtype=np.int32)
    mask = np.zeros(len(lists), dtype=bool)
    for i, pairs in enumerate(lists.to_pylist()):
        if pairs is None:
            mask[i] = True
            continue
        key = tuple((p.get("key"), p.get("value")) for p in pairs if p is not None)
        index = cache.get(key)
        if index is None:
            index = cache[key] = len(values)
            values.append(encode(pairs, key))
        indices[i] = index
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), pa.array(values, value_type))


def _lists_to_jsonb(lists: pa.Array) -> pa.DictionaryArray:
    """JSONB of each property list; identical lists are encoded once."""
    return _encode_distinct_lists(lists, lambda pairs, _key: _pairs_to_jsonb(pairs) or b"", pa.binary())


def as_jsonb_dictionary(array: pa.Array) -> pa.DictionaryArray:
    """Any supported properties shape as a ``Dictionary(Int32, Binary)`` JSONB column.

    Raises:
        ValueError: the array's type holds no properties.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        value_type = kind.value_type
        if pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type):
            return array.cast(DICT_BINARY)
        if pa.types.is_list(value_type) or pa.types.is_large_list(value_type):
            converted = _lists_to_jsonb(array.dictionary)
            decoded = converted.dictionary_decode()
            indices = array.indices.cast(pa.int32())
            return pc.take(decoded, indices).dictionary_encode().cast(DICT_BINARY)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pc.dictionary_encode(array.cast(pa.binary())).cast(DICT_BINARY)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _lists_to_jsonb(array)
    msg = f"expected properties (JSONB or a list of key/value structs), got {kind}"
    raise ValueError(msg)


def properties_to_jsonb(properties: pa.Array) -> pa.Array:
    """``properties_to_jsonb(p) → Dictionary(Int32, Binary)``."""
    return as_jsonb_dictionary(properties)


def properties_to_dict(lists: pa.Array) -> pa.Array:
    """``properties_to_dict(list) → Dictionary(Int32, List<Struct>)``; identical lists share an entry."""
    if pa.types.is_dictionary(lists.type):
        return lists
    return _encode_distinct_lists(lists, lambda _pairs, key: [{"key": k, "value": v} for k, v in key], PROPERTY_LIST)


def properties_to_array(properties: pa.Array) -> pa.Array:
    """``properties_to_array(dict) → List<Struct<key, value>>`` (a list passes through)."""
    if pa.types.is_dictionary(properties.type):
        return properties.dictionary_decode().cast(PROPERTY_LIST)
    if pa.types.is_binary(properties.type):  # JSONB: the object's pairs in key order
        rows = []
        for raw in properties.to_pylist():
            value = None if raw is None else decode_jsonb(raw)
            rows.append(
                None if not isinstance(value, dict) else [{"key": k, "value": _text(v)} for k, v in value.items()]
            )
        return pa.array(rows, PROPERTY_LIST)
    return properties.cast(PROPERTY_LIST)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) or value is None else str(value)


def properties_udfs() -> list[Udf]:
    """The conversion functions' base signatures (their other input types are :func:`variant_udfs`)."""
    return [
        ("properties_to_jsonb", properties_to_jsonb, [DICT_BINARY], DICT_BINARY),
        ("properties_to_dict", properties_to_dict, [PROPERTY_LIST], PROPERTY_LIST_DICT),
        ("properties_to_array", properties_to_array, [PROPERTY_LIST_DICT], PROPERTY_LIST),
    ]


def _converted(fn: Callable[..., pa.Array]) -> Callable[..., pa.Array]:
    def call(first: pa.Array, *rest: pa.Array) -> pa.Array:
        return fn(as_jsonb_dictionary(first), *rest)

    return call


_OWN_VARIANTS: dict[str, dict[str, Callable[..., pa.Array]]] = {
    "properties_to_dict": {"dict_list": properties_to_dict},
    "properties_to_array": {"list": properties_to_array, "binary": properties_to_array},
}


def variant_udfs(base: list[Udf]) -> list[Udf]:
    """One UDF per (function, other input type) for the JSONB/property functions in ``base``.

    A function whose first argument is JSONB (``Dictionary(Int32, Binary)``) gets ``__binary``,
    ``__list`` and ``__dict_list`` variants that convert that argument and call it; the
    conversion functions get the variants of :data:`_OWN_VARIANTS`.
    """
    out: list[Udf] = []
    for name, fn, inputs, output in base:
        own = _OWN_VARIANTS.get(name)
        if own is not None:
            for suffix, impl in own.items():
                out.append((f"{name}__{suffix}", impl, [VARIANT_TYPES[suffix], *inputs[1:]], output))
            continue
        if not inputs or inputs[0] != DICT_BINARY:
            continue
        for suffix, kind in VARIANT_TYPES.items():
            out.append((f"{name}__{suffix}", _converted(fn), [kind, *inputs[1:]], output))
    return out
