"""JSONB values (databend ``jsonb`` binary format) and the SQL functions over them.

Micromegas stores properties as ``Dictionary(Int32, Binary)`` columns whose values are JSONB in
the binary format of the ``jsonb`` crate (databendlabs/jsonb), object keys sorted:

* a value starts with a big-endian ``u32`` header: ``0x80000000 | n`` array, ``0x40000000 | n``
  object, ``0x20000000`` scalar;
* then one big-endian ``u32`` *JEntry* per element (objects: the ``n`` keys then the ``n``
  values): type in ``0x70000000`` (null ``0``, string ``1``, number ``2``, false ``3``, true
  ``4``, container ``5``) and payload length in ``0x0FFFFFFF``;
* then the payloads in order; a nested container's payload is a whole JSONB value;
* numbers are one tag byte (``0x00`` zero, ``0x10`` NaN, ``0x20`` +inf, ``0x30`` -inf,
  ``0x40`` int, ``0x50`` uint, ``0x60`` float) followed by 0/1/2/4/8 big-endian bytes.

The SQL functions are vectorised over the dictionary: each distinct JSONB value is decoded once,
and the result is re-attached to the column's indices (``pyarrow.compute.take`` or a new
dictionary), so a property lookup over millions of rows costs one decode per distinct value.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DICT_BINARY",
    "DICT_UTF8",
    "JsonbError",
    "decode_jsonb",
    "dictionary_result",
    "encode_jsonb",
    "jsonb_get_raw",
    "jsonb_udfs",
    "keyed_values",
    "properties_to_jsonb_array",
    "to_json_text",
]

DICT_BINARY = pa.dictionary(pa.int32(), pa.binary())
DICT_UTF8 = pa.dictionary(pa.int32(), pa.utf8())
DICT_UTF8_LIST = pa.dictionary(pa.int32(), pa.list_(pa.utf8()))

_ARRAY, _OBJECT, _SCALAR = 0x80000000, 0x40000000, 0x20000000
_HEADER_TYPE, _HEADER_LEN = 0xE0000000, 0x1FFFFFFF
_NULL, _STRING, _NUMBER, _FALSE, _TRUE, _CONTAINER = (
    0x00000000,
    0x10000000,
    0x20000000,
    0x30000000,
    0x40000000,
    0x50000000,
)
_JENTRY_TYPE, _JENTRY_LEN = 0x70000000, 0x0FFFFFFF
_N_ZERO, _N_NAN, _N_INF, _N_NEG_INF, _N_INT, _N_UINT, _N_FLOAT = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60
_U32 = struct.Struct(">I")
_INT_FORMATS = {1: ">b", 2: ">h", 4: ">i", 8: ">q"}
_UINT_FORMATS = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}


class JsonbError(ValueError):
    """Bytes that are not a JSONB value, or a value JSONB cannot hold."""


# ---------------------------------------------------------------------------------------------
# encoding


def _encode_number(value: float) -> bytes:
    if isinstance(value, bool):  # pragma: no cover - guarded by the caller
        msg = "bool is not a number"
        raise JsonbError(msg)
    if isinstance(value, int):
        if value == 0:
            return bytes([_N_ZERO])
        if value > 0:
            if value >= 1 << 64:
                msg = f"integer {value} does not fit in u64"
                raise JsonbError(msg)
            for size, fmt in _UINT_FORMATS.items():
                if value < 1 << (8 * size):
                    return bytes([_N_UINT]) + struct.pack(fmt, value)
        if value < -(1 << 63):
            msg = f"integer {value} does not fit in i64"
            raise JsonbError(msg)
        for size, fmt in _INT_FORMATS.items():
            if value >= -(1 << (8 * size - 1)):
                return bytes([_N_INT]) + struct.pack(fmt, value)
    number = float(value)
    if math.isnan(number):
        return bytes([_N_NAN])
    if math.isinf(number):
        return bytes([_N_INF if number > 0 else _N_NEG_INF])
    return bytes([_N_FLOAT]) + struct.pack(">d", number)


def _entry(value: Any) -> tuple[int, bytes]:
    """JEntry type and payload of ``value`` as an element of a container."""
    if value is None:
        return _NULL, b""
    if value is True:
        return _TRUE, b""
    if value is False:
        return _FALSE, b""
    if isinstance(value, str):
        return _STRING, value.encode()
    if isinstance(value, (int, float)):
        return _NUMBER, _encode_number(value)
    if isinstance(value, (list, tuple, Mapping)):
        return _CONTAINER, encode_jsonb(value)
    msg = f"cannot store a {type(value).__name__} in JSONB"
    raise JsonbError(msg)


def encode_jsonb(value: Any) -> bytes:
    """Encode a JSON-like Python value (None, bool, int, float, str, list, dict) as JSONB.

    Object keys must be strings; they are written sorted, as the ``jsonb`` crate does.

    >>> decode_jsonb(encode_jsonb({"b": 1, "a": [True, None, "x"]}))
    {'a': [True, None, 'x'], 'b': 1}
    """
    if isinstance(value, Mapping):
        items = sorted(value.items())
        for key, _ in items:
            if not isinstance(key, str):
                msg = f"JSONB object keys must be strings, not {type(key).__name__}"
                raise JsonbError(msg)
        keys = [key.encode() for key, _ in items]
        entries = [_entry(v) for _, v in items]
        head = [_U32.pack(_OBJECT | len(items))]
        head += [_U32.pack(_STRING | len(k)) for k in keys]
        head += [_U32.pack(kind | len(payload)) for kind, payload in entries]
        return b"".join(head + keys + [payload for _, payload in entries])
    if isinstance(value, (list, tuple)):
        entries = [_entry(v) for v in value]
        head = [_U32.pack(_ARRAY | len(entries))] + [_U32.pack(kind | len(p)) for kind, p in entries]
        return b"".join(head + [p for _, p in entries])
    kind, payload = _entry(value)
    if kind == _CONTAINER:  # pragma: no cover - containers handled above
        return payload
    return _U32.pack(_SCALAR) + _U32.pack(kind | len(payload)) + payload


def properties_to_jsonb_array(rows: list[Mapping[str, str] | None]) -> pa.DictionaryArray:
    """Encode property maps (one per row) as a ``Dictionary(Int32, Binary)`` JSONB column.

    Identical maps share one dictionary entry, as in the views' properties columns.
    """
    cache: dict[tuple[tuple[str, str], ...], int] = {}
    values: list[bytes] = []
    indices = np.empty(len(rows), dtype=np.int32)
    mask = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        if row is None:
            mask[i] = True
            indices[i] = 0
            continue
        key = tuple(sorted(row.items()))
        index = cache.get(key)
        if index is None:
            index = cache[key] = len(values)
            values.append(encode_jsonb(dict(key)))
        indices[i] = index
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), pa.array(values, pa.binary()))


# ---------------------------------------------------------------------------------------------
# decoding


def _u32(data: bytes | memoryview, offset: int) -> int:
    if offset + 4 > len(data):
        msg = "truncated JSONB value"
        raise JsonbError(msg)
    return _U32.unpack_from(data, offset)[0]


def _decode_number(payload: bytes | memoryview) -> int | float:
    if not payload:
        msg = "empty JSONB number"
        raise JsonbError(msg)
    tag, body = payload[0], bytes(payload[1:])
    if tag == _N_ZERO:
        return 0
    if tag == _N_NAN:
        return math.nan
    if tag == _N_INF:
        return math.inf
    if tag == _N_NEG_INF:
        return -math.inf
    formats = {_N_INT: _INT_FORMATS, _N_UINT: _UINT_FORMATS}.get(tag)
    if formats is not None and len(body) in formats:
        return struct.unpack(formats[len(body)], body)[0]
    if tag == _N_FLOAT and len(body) == 8:
        return struct.unpack(">d", body)[0]
    msg = f"bad JSONB number tag 0x{tag:02x}"
    raise JsonbError(msg)


def _decode_entry(kind: int, payload: bytes | memoryview) -> Any:
    if kind == _NULL:
        return None
    if kind == _TRUE:
        return True
    if kind == _FALSE:
        return False
    if kind == _STRING:
        return bytes(payload).decode()
    if kind == _NUMBER:
        return _decode_number(payload)
    if kind == _CONTAINER:
        return decode_jsonb(payload)
    msg = f"unsupported JSONB entry type 0x{kind:08x}"
    raise JsonbError(msg)


def _container(data: bytes | memoryview) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Header type, element count and ``(kind, start, end)`` of every entry (keys first for objects)."""
    header = _u32(data, 0)
    kind, count = header & _HEADER_TYPE, header & _HEADER_LEN
    n_entries = 2 * count if kind == _OBJECT else (1 if kind == _SCALAR else count)
    if kind not in (_ARRAY, _OBJECT, _SCALAR):
        msg = f"bad JSONB header 0x{header:08x}"
        raise JsonbError(msg)
    offset = 4 + 4 * n_entries
    entries = []
    for i in range(n_entries):
        jentry = _u32(data, 4 + 4 * i)
        length = jentry & _JENTRY_LEN
        entries.append((jentry & _JENTRY_TYPE, offset, offset + length))
        offset += length
    if offset > len(data):
        msg = "truncated JSONB value"
        raise JsonbError(msg)
    return kind, count, entries


def decode_jsonb(data: bytes | memoryview) -> Any:
    """Decode JSONB bytes into Python values (dict, list, str, int, float, bool, None).

    Raises:
        JsonbError: the bytes are not a JSONB value.
    """
    kind, count, entries = _container(data)
    if kind == _SCALAR:
        entry_kind, start, end = entries[0]
        return _decode_entry(entry_kind, data[start:end])
    if kind == _ARRAY:
        return [_decode_entry(k, data[s:e]) for k, s, e in entries]
    keys = [bytes(data[s:e]).decode() for _, s, e in entries[:count]]
    return {key: _decode_entry(k, data[s:e]) for key, (k, s, e) in zip(keys, entries[count:], strict=True)}


def jsonb_get_raw(data: bytes, key: str) -> bytes | None:
    """JSONB of the value under ``key`` when ``data`` is an object that has it, else None.

    Binary search over the sorted keys; only the returned value is copied.
    """
    kind, count, entries = _container(data)
    if kind != _OBJECT:
        return None
    wanted = key.encode()
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        _, s, e = entries[mid]
        probe = data[s:e]
        if probe == wanted:
            value_kind, vs, ve = entries[count + mid]
            payload = data[vs:ve]
            if value_kind == _CONTAINER:
                return bytes(payload)
            return _U32.pack(_SCALAR) + _U32.pack(value_kind | len(payload)) + bytes(payload)
        if probe < wanted:
            lo = mid + 1
        else:
            hi = mid
    return None


def to_json_text(value: Any) -> str:
    """Render a decoded JSONB value as compact JSON text (NaN/inf as strings, as JSON has none)."""

    def default(obj: Any) -> Any:  # pragma: no cover - decode_jsonb yields only JSON types
        return str(obj)

    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return json.dumps(fix(value), separators=(",", ":"), ensure_ascii=False, default=default)


# ---------------------------------------------------------------------------------------------
# vectorised helpers


def _as_dictionary(array: pa.Array) -> pa.DictionaryArray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        return array
    return pc.dictionary_encode(array)


def _map_dictionary(array: pa.Array, fn: Callable[[bytes], Any], value_type: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """Apply ``fn`` to each distinct non-null value; return (indices, per-distinct results)."""
    encoded = _as_dictionary(array)
    results = [None if v is None else fn(v) for v in encoded.dictionary.to_pylist()]
    return encoded.indices, pa.array(results, value_type)


def _take(indices: pa.Array, values: pa.Array) -> pa.Array:
    return pc.take(values, indices)


def dictionary_result(indices: pa.Array, values: pa.Array, value_type: pa.DataType) -> pa.DictionaryArray:
    """A dictionary array with ``values`` as dictionary; rows whose value is null become null."""
    filled = indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    invalid = values.is_null().to_numpy(zero_copy_only=False)
    mask = indices.is_null().to_numpy(zero_copy_only=False)
    if len(invalid):
        mask = mask | invalid[filled]
    return pa.DictionaryArray.from_arrays(pa.array(filled, pa.int32(), mask=mask), values.cast(value_type))


def _constant_key(keys: pa.Array) -> str | None:
    """The single key when every row asks for the same one (the usual ``'literal'`` case)."""
    if len(keys) == 0:
        return None
    first = keys[0].as_py()
    if keys.null_count == 0 and pc.all(pc.equal(keys, first)).as_py():
        return first
    return None


def _per_row(
    array: pa.Array, keys: pa.Array, fn: Callable[[bytes, str], Any], value_type: pa.DataType
) -> tuple[pa.Array, pa.Array]:
    """Fallback when the key varies by row: one result per row (indices are 0..n-1)."""
    values = pc.cast(_as_dictionary(array), array.type.value_type if pa.types.is_dictionary(array.type) else array.type)
    out = [
        None if v is None or k is None else fn(v, k) for v, k in zip(values.to_pylist(), keys.to_pylist(), strict=True)
    ]
    return pa.array(np.arange(len(out), dtype=np.int32)), pa.array(out, value_type)


def keyed_values(
    array: pa.Array, keys: pa.Array, fn: Callable[[bytes, str], Any], value_type: pa.DataType
) -> tuple[pa.Array, pa.Array]:
    """``fn(value, key)`` once per distinct value when every row has the same key, else per row.

    Returns ``(indices, results)``: row ``i``'s result is ``results[indices[i]]``.
    """
    key = _constant_key(keys)
    if key is None:
        return _per_row(array, keys, fn, value_type)
    return _map_dictionary(array, lambda v: fn(v, key), value_type)


# ---------------------------------------------------------------------------------------------
# scalar semantics, per distinct value


def _property_get(data: bytes, key: str) -> str | None:
    raw = jsonb_get_raw(data, key)
    if raw is None:
        return None
    value = decode_jsonb(raw)
    if value is None:
        return None
    return value if isinstance(value, str) else to_json_text(value)


def _length(data: bytes) -> int | None:
    kind, count, _ = _container(data)
    return None if kind == _SCALAR else count


def _as_string(data: bytes) -> str | None:
    value = decode_jsonb(data)
    return value if isinstance(value, str) else None


def _as_f64(data: bytes) -> float | None:
    value = decode_jsonb(data)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _as_i64(data: bytes) -> int | None:
    value = decode_jsonb(data)
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < 1 << 63:
        return None
    return value


def _object_keys(data: bytes) -> list[str] | None:
    kind, count, entries = _container(data)
    if kind != _OBJECT:
        return None
    return [bytes(data[s:e]).decode() for _, s, e in entries[:count]]


def _array_length(data: bytes) -> int | None:
    kind, count, _ = _container(data)
    return count if kind == _ARRAY else None


def _parse(text: str) -> bytes | None:
    """JSONB of a JSON text; None when the text is not JSON (as Micromegas: NULL, not an error)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    try:
        return encode_jsonb(value)
    except JsonbError:  # e.g. an integer beyond u64
        return None


def _format_json(data: bytes) -> str | None:
    """JSON text of a JSONB value; None when the bytes are not JSONB."""
    try:
        return to_json_text(decode_jsonb(data))
    except (JsonbError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# UDF bodies (pyarrow arrays in, pyarrow arrays out)


def property_get(properties: pa.Array, keys: pa.Array) -> pa.Array:
    """``property_get(properties, key) → Dictionary(Int32, Utf8)``; NULL when the key is absent."""
    indices, values = keyed_values(properties, keys, _property_get, pa.utf8())
    return dictionary_result(indices, values, pa.utf8())


def properties_length(properties: pa.Array) -> pa.Array:
    """``properties_length(properties) → Int32``: number of properties."""
    indices, values = _map_dictionary(properties, _length, pa.int32())
    return _take(indices, values)


def jsonb_parse(texts: pa.Array) -> pa.Array:
    """``jsonb_parse(text) → Dictionary(Int32, Binary)``; NULL for text that is not JSON."""
    indices, values = _map_dictionary(texts, _parse, pa.binary())
    return dictionary_result(indices, values, pa.binary())


def jsonb_get(values: pa.Array, keys: pa.Array) -> pa.Array:
    """``jsonb_get(jsonb, key) → Dictionary(Int32, Binary)``; NULL when absent or not an object."""
    indices, results = keyed_values(values, keys, jsonb_get_raw, pa.binary())
    return dictionary_result(indices, results, pa.binary())


def jsonb_format_json(values: pa.Array) -> pa.Array:
    """``jsonb_format_json(jsonb) → Dictionary(Int32, Utf8)``: the value as JSON text (NULL if not JSONB)."""
    indices, results = _map_dictionary(values, _format_json, pa.utf8())
    return dictionary_result(indices, results, pa.utf8())


def jsonb_as_string(values: pa.Array) -> pa.Array:
    """``jsonb_as_string(jsonb) → Dictionary(Int32, Utf8)``; NULL unless the value is a string."""
    indices, results = _map_dictionary(values, _as_string, pa.utf8())
    return dictionary_result(indices, results, pa.utf8())


def jsonb_as_f64(values: pa.Array) -> pa.Array:
    """``jsonb_as_f64(jsonb) → Float64``; NULL unless the value is a number."""
    indices, results = _map_dictionary(values, _as_f64, pa.float64())
    return _take(indices, results)


def jsonb_as_i64(values: pa.Array) -> pa.Array:
    """``jsonb_as_i64(jsonb) → Int64``; NULL unless the value is an integer."""
    indices, results = _map_dictionary(values, _as_i64, pa.int64())
    return _take(indices, results)


def jsonb_object_keys(values: pa.Array) -> pa.Array:
    """``jsonb_object_keys(jsonb) → Dictionary(Int32, List<Utf8>)``; NULL unless an object."""
    indices, results = _map_dictionary(values, _object_keys, pa.list_(pa.utf8()))
    return dictionary_result(indices, results, pa.list_(pa.utf8()))


def jsonb_array_length(values: pa.Array) -> pa.Array:
    """``jsonb_array_length(jsonb) → Int64``; NULL unless an array."""
    indices, results = _map_dictionary(values, _array_length, pa.int64())
    return _take(indices, results)


def jsonb_udfs() -> list[tuple[str, Callable[..., pa.Array], list[pa.DataType], pa.DataType]]:
    """``(name, function, input types, return type)`` of every JSONB/property scalar function.

    DataFusion-python UDFs have one exact signature: JSONB arguments are the views' type,
    ``Dictionary(Int32, Binary)``. A plain ``Binary`` JSONB column (``otel_spans.events``) is
    passed as ``arrow_cast(events, 'Dictionary(Int32, Binary)')``.
    """
    return [
        ("property_get", property_get, [DICT_BINARY, pa.utf8()], DICT_UTF8),
        ("properties_length", properties_length, [DICT_BINARY], pa.int32()),
        ("jsonb_parse", jsonb_parse, [pa.utf8()], DICT_BINARY),
        ("jsonb_get", jsonb_get, [DICT_BINARY, pa.utf8()], DICT_BINARY),
        ("jsonb_format_json", jsonb_format_json, [DICT_BINARY], DICT_UTF8),
        ("jsonb_as_string", jsonb_as_string, [DICT_BINARY], DICT_UTF8),
        ("jsonb_as_f64", jsonb_as_f64, [DICT_BINARY], pa.float64()),
        ("jsonb_as_i64", jsonb_as_i64, [DICT_BINARY], pa.int64()),
        ("jsonb_object_keys", jsonb_object_keys, [DICT_BINARY], DICT_UTF8_LIST),
        ("jsonb_array_length", jsonb_array_length, [DICT_BINARY], pa.int64()),
    ]


def jsonb_each_table(value: bytes | None) -> pa.Table:
    """Rows of ``jsonb_each(jsonb)``: ``key Utf8, value Dictionary(Int32, Binary)``."""
    keys: list[str] = []
    values: list[bytes] = []
    if value is not None:
        decoded = decode_jsonb(value)
        if isinstance(decoded, dict):
            for key in decoded:
                raw = jsonb_get_raw(value, key)
                keys.append(key)
                values.append(raw if raw is not None else encode_jsonb(None))
    return pa.table(
        {"key": pa.array(keys, pa.utf8()), "value": pa.array(values, pa.binary()).dictionary_encode().cast(DICT_BINARY)}
    )


def jsonb_array_elements_table(value: bytes | None) -> pa.Table:
    """Rows of ``jsonb_array_elements(jsonb)``: ``value Dictionary(Int32, Binary)``."""
    values: list[bytes] = []
    if value is not None:
        decoded = decode_jsonb(value)
        if isinstance(decoded, list):
            values = [encode_jsonb(item) for item in decoded]
    return pa.table({"value": pa.array(values, pa.binary()).dictionary_encode().cast(DICT_BINARY)})
