"""Transit dependency queue → id map, and the member plans shared with the object reader.

A block's dependency queue holds every string, descriptor record and property set its events
point at (``micromegas-wire.md`` §5.3). It is read in one pass, in buffer order; references
resolve only against entries already read, ids are unique across kinds, and any violation is a
``CorruptBlockError``. Dependencies are per-block unique descriptors, so a Python loop is fine
here; ``Dependencies`` then offers vectorised id → value lookups (sorted ids + searchsorted)
for the columnar object tables. ``compile_members`` turns a UDT into flat ``Leaf`` fields
(nested UDTs flattened, reference UDTs reduced to their ``id``), validated against the metadata.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..tracing import scan_queue
from ..tracing.transit import INTRINSIC_SIZES, Member, UserDefinedType
from ._exceptions import CorruptBlockError

_DTYPES: dict[str, str] = {
    "u8": "u1",
    "uint8": "u1",
    "u32": "<u4",
    "uint32": "<u4",
    "u64": "<u8",
    "uint64": "<u8",
    "i64": "<i8",
    "int64": "<i8",
    "f64": "<f8",
}
_STRUCT_OF = {"u1": "<B", "<u4": "<I", "<u8": "<Q", "<i8": "<q", "<f8": "<d"}
_MAX_NESTING = 8  # nested UDTs deeper than this can only be a cycle in corrupt metadata
_DISTINCT_FIRST = 64  # ids checked one by one below this many, distinct ones above
_U64 = struct.Struct("<Q")
_DEP_HEADER = struct.Struct("<QI")  # id, then codec+len (StaticStringDependency) or count (property set)


def corrupt(message: str) -> CorruptBlockError:
    """Build the one exception type the reader lets escape."""
    return CorruptBlockError(message)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One flat field of a POD layout: column name, numpy dtype, byte offset, reference flag."""

    name: str
    dtype: str
    offset: int
    is_reference: bool


def find_udt(udts: Sequence[UserDefinedType], name: str) -> UserDefinedType | None:
    """Return the first UDT called ``name`` (Micromegas looks secondary UDTs up by name)."""
    for udt in udts:
        if udt.name == name:
            return udt
    return None


def compile_members(
    udt: UserDefinedType, udts: Sequence[UserDefinedType], _base: int = 0, _depth: int = 0
) -> list[Leaf]:
    """Flatten ``udt`` into leaves with absolute offsets, validating every member window.

    Raises:
        CorruptBlockError: unknown member type, size mismatch, window past the type, nesting cycle.
    """
    if _depth > _MAX_NESTING:
        raise corrupt(f"UDT {udt.name!r}: nesting deeper than {_MAX_NESTING} (cyclic metadata?)")
    leaves: list[Leaf] = []
    for m in udt.members:
        where = f"UDT {udt.name!r} member {m.name!r}"
        if m.offset + m.size > udt.size:
            raise corrupt(f"{where}: window {m.offset}+{m.size} exceeds type size {udt.size}")
        if m.is_reference:
            if m.size < 8:
                raise corrupt(f"{where}: references need at least 8 bytes, got {m.size}")
            leaves.append(Leaf(m.name, "<u8", _base + m.offset, True))
        elif m.type_name in _DTYPES:
            if m.size != INTRINSIC_SIZES[m.type_name]:
                raise corrupt(f"{where}: {m.type_name} member of size {m.size}")
            leaves.append(Leaf(m.name, _DTYPES[m.type_name], _base + m.offset, False))
        else:
            leaves.extend(_nested_leaves(udt, m, udts, _base, _depth))
    names = [leaf.name for leaf in leaves]
    if len(set(names)) != len(names):
        raise corrupt(f"UDT {udt.name!r}: duplicate member names {names}")
    return leaves


def _nested_leaves(
    udt: UserDefinedType, m: Member, udts: Sequence[UserDefinedType], base: int, depth: int
) -> list[Leaf]:
    """Leaves of a member whose type is another UDT: flattened, or its ``id`` for reference UDTs."""
    where = f"UDT {udt.name!r} member {m.name!r}"
    nested = find_udt(udts, m.type_name)
    if nested is None:
        raise corrupt(f"{where}: unknown member type {m.type_name!r}")
    if nested.size == 0 or m.offset + nested.size > udt.size:
        raise corrupt(f"{where}: nested {nested.name!r} of size {nested.size} does not fit")
    inner = compile_members(nested, udts, base + m.offset, depth + 1)
    if not nested.is_reference:
        return [replace(leaf, name=f"{m.name}.{leaf.name}") for leaf in inner]
    ident = next((leaf for leaf in inner if leaf.name == "id"), None)
    if ident is None:
        raise corrupt(f"{where}: reference UDT {nested.name!r} has no 'id' member")
    return [replace(ident, name=m.name)]


def type_sizes(udts: Sequence[UserDefinedType]) -> npt.NDArray[np.int64]:
    """Body size per type index for the scanner (0 = dynamic)."""
    if len(udts) > 256:
        raise corrupt(f"metadata has {len(udts)} types; a u8 type index addresses at most 256")
    return np.array([udt.size for udt in udts], dtype=np.int64)


def decode_dyn_text(data: bytes, codec: int, what: str) -> str:
    """Decode a ``DynString`` / ``StaticStringDependency`` payload the way Rust does (lossy)."""
    if codec == 1:
        if len(data) % 2:
            raise corrupt(f"{what}: UTF-16 string of odd length {len(data)}")
        return codecs.decode(data, "utf-16-le", "replace")
    if codec in (0, 2):  # ANSI is read as UTF-8 too (string.rs: latin1 ⊂ utf8, lossy)
        return codecs.decode(data, "utf-8", "replace")
    raise corrupt(f"{what}: invalid string codec {codec}")


class Dependencies:
    """The dependency map of one block: strings, descriptor records and property sets by id."""

    __slots__ = ("_cache", "kinds", "property_sets", "records", "strings")

    def __init__(self) -> None:
        self.strings: dict[int, str] = {}
        self.records: dict[int, dict[str, Any]] = {}  # fields with references resolved; "id" kept
        self.property_sets: dict[int, dict[str, str]] = {}
        self.kinds: dict[int, str] = {}  # id → UDT name
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.kinds)

    def _add(self, ident: int, kind: str) -> None:
        if ident in self.kinds:
            raise corrupt(f"duplicate dependency id {ident} ({self.kinds[ident]} and {kind})")
        self.kinds[ident] = kind

    def value(self, ident: int) -> str | dict[str, Any]:
        """Return the string, record (dict) or property set (dict) stored under ``ident``.

        Raises:
            CorruptBlockError: when the id is not in the block.
        """
        for table in (self.strings, self.records, self.property_sets):
            if ident in table:
                return table[ident]
        raise corrupt(f"dependency {ident} not found")

    def sorted_ids(self) -> npt.NDArray[np.uint64]:
        """All ids of the block, sorted (for vectorised membership tests)."""
        if "ids" not in self._cache:
            self._cache["ids"] = np.sort(np.fromiter(self.kinds, dtype=np.uint64, count=len(self.kinds)))
        return self._cache["ids"]

    def check_ids(self, ids: npt.NDArray[np.uint64], what: str) -> None:
        """Raise ``CorruptBlockError`` unless every id is a dependency of the block.

        Events repeat a few ids: the distinct ones (first-seen order, so the first missing id
        reported is the same) are looked up rather than every event's.
        """
        wanted = np.asarray(ids, dtype=np.uint64).reshape(-1)
        if wanted.size > _DISTINCT_FIRST:
            wanted = pc.unique(pa.array(wanted)).to_numpy()
        _lookup(self.sorted_ids(), wanted, what)

    def _table(self, kind: str) -> tuple[npt.NDArray[np.uint64], dict[str, Any]]:
        key = f"table:{kind}"
        if key not in self._cache:
            source: dict[int, Any] = {"strings": self.strings, "records": self.records, "props": self.property_sets}[
                kind
            ]
            ids = np.fromiter(source, dtype=np.uint64, count=len(source))
            order = np.argsort(ids, kind="stable")
            values = list(source.values())
            self._cache[key] = (ids[order], [values[i] for i in order.tolist()])
        return self._cache[key]

    def resolve_strings(self, ids: npt.ArrayLike) -> pa.Array:
        """Vectorised id → string (e.g. a ``StringId`` column, or ``fmt_str`` ids of records)."""
        sorted_ids, values = self._table("strings")
        index = _lookup(sorted_ids, ids, "string reference")
        return _column(values, "strings").take(pa.array(index))

    def resolve_field(self, ids: npt.ArrayLike, field: str) -> pa.Array:
        """Vectorised descriptor id → one field of its record (``fmt_str``, ``target``, ``level``…).

        Raises:
            CorruptBlockError: an id that is no record of the block, or a record without ``field``.
        """
        sorted_ids, values = self._table("records")
        index = _lookup(sorted_ids, ids, f"descriptor reference ({field})")
        column = _column([v.get(field) for v in values], field)
        result = column.take(pa.array(index))
        if result.null_count:
            raise corrupt(f"a referenced descriptor has no field {field!r}")
        return result

    def record_indices(self, ids: npt.ArrayLike, what: str) -> npt.NDArray[np.intp]:
        """Positions of descriptor ids among the block's records, for ``field_of_records``.

        Raises:
            CorruptBlockError: an id that is no record of the block.
        """
        sorted_ids, _ = self._table("records")
        return _lookup(sorted_ids, ids, f"descriptor reference ({what})")

    def field_of_records(self, index: npt.NDArray[np.intp], field: str) -> pa.Array:
        """``resolve_field`` given ``record_indices``; a text field comes back dictionary-encoded.

        Events repeat a few descriptors: int32 codes into the distinct texts replace a copy of
        the text per event.

        Raises:
            CorruptBlockError: a referenced record without ``field``.
        """
        per_record = self._field_column(field)
        if isinstance(per_record, pa.Array):
            result = per_record.take(pa.array(index))
            if result.null_count:
                raise corrupt(f"a referenced descriptor has no field {field!r}")
            return result
        record_codes, texts = per_record
        codes = record_codes[index]
        if codes.size and int(codes.min()) < 0:
            raise corrupt(f"a referenced descriptor has no field {field!r}")
        # Codes of ``texts`` (checked non-negative above): in range, no bounds pass over every event.
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), texts, safe=False)

    def _field_column(self, field: str) -> pa.Array | tuple[npt.NDArray[np.int32], pa.Array]:
        """One field of every record (in ``_table("records")`` order), values or text codes.

        Text comes back as an int32 code per record (-1 when absent) and the distinct texts.
        Computed once per ``Dependencies``: the blocks of a stream that repeat a dependency queue
        share it (``DependencyCache``), so each block's lookups are one gather.
        """
        key = f"field:{field}"
        cached = self._cache.get(key)
        if cached is None:
            _, values = self._table("records")
            column = [v.get(field) for v in values]
            if not all(isinstance(v, str) for v in column if v is not None):
                cached = _column(column, field)
            else:
                texts = sorted({v for v in column if v is not None})
                code_of = {text: code for code, text in enumerate(texts)}
                codes = np.array([-1 if v is None else code_of[v] for v in column], dtype=np.int32)
                cached = (codes, pa.array(texts, pa.string()))
            self._cache[key] = cached  # a race computes it twice, both results equal
        return cached

    def resolve_property_sets(self, ids: npt.ArrayLike) -> pa.Array:
        """Vectorised property-set id → ``map<string, string>``."""
        sorted_ids, values = self._table("props")
        index = _lookup(sorted_ids, ids, "property set reference")
        column = pa.array([list(v.items()) for v in values], type=pa.map_(pa.string(), pa.string()))
        return column.take(pa.array(index))


def _lookup(sorted_ids: npt.NDArray[np.uint64], ids: npt.ArrayLike, what: str) -> npt.NDArray[np.intp]:
    wanted = np.asarray(ids, dtype=np.uint64).reshape(-1)
    if wanted.size == 0:
        return np.empty(0, np.intp)
    if sorted_ids.size == 0:
        raise corrupt(f"{what}: id {int(wanted[0])} not found (no dependencies)")
    index = np.minimum(np.searchsorted(sorted_ids, wanted), sorted_ids.size - 1)
    missing = sorted_ids[index] != wanted
    if missing.any():
        raise corrupt(f"{what}: id {int(wanted[missing][0])} not found in the block's dependencies")
    return index


def _column(values: list[Any], what: str) -> pa.Array:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {str}:
        return pa.array(values, type=pa.string())
    if kinds <= {int}:
        big = any(v is not None and v > 2**63 - 1 for v in values)
        return pa.array(values, type=pa.uint64() if big else pa.int64())
    if kinds <= {float}:
        return pa.array(values, type=pa.float64())
    raise corrupt(f"field {what!r} mixes value kinds {sorted(k.__name__ for k in kinds)}")


def read_dependencies(udts: Sequence[UserDefinedType], buffer: bytes) -> Dependencies:
    """Decode a decompressed dependency queue (one pass, buffer order).

    Raises:
        CorruptBlockError: bad framing, bad UTF-8 in a ``StaticString``, missing or duplicate
            ids, a POD record without an ``id`` member, an unknown dynamic dependency type.
    """
    deps = Dependencies()
    types, offsets, sizes = scan_queue(buffer, type_sizes(udts))
    plans: dict[int, list[Leaf]] = {}
    view = memoryview(buffer)
    for index, offset, size in zip(types.tolist(), offsets.tolist(), sizes.tolist(), strict=True):
        udt = udts[index]
        body = view[offset : offset + size]
        if udt.name == "StaticString":
            if size < 8:
                raise corrupt(f"StaticString of {size} bytes has no id")
            ident = _U64.unpack_from(body)[0]
            try:
                text = str(body[8:], "utf-8")
            except UnicodeDecodeError as exc:
                raise corrupt(f"StaticString {ident}: invalid UTF-8") from exc
            deps._add(ident, udt.name)
            deps.strings[ident] = text
        elif udt.name == "StaticStringDependency":
            if size < 13:
                raise corrupt(f"StaticStringDependency of {size} bytes is truncated")
            ident, codec, length = struct.unpack_from("<QBI", body)
            if length > size - 13:
                raise corrupt(f"StaticStringDependency {ident}: string runs past the record")
            text = decode_dyn_text(bytes(body[13 : 13 + length]), codec, f"StaticStringDependency {ident}")
            deps._add(ident, udt.name)
            deps.strings[ident] = text
        elif udt.name == "PropertySetDependency":
            ident, properties = _read_property_set(udts, deps, body)
            deps._add(ident, udt.name)
            deps.property_sets[ident] = properties
        elif udt.size == 0:
            raise corrupt(f"no reader for dynamic dependency type {udt.name!r}")
        else:
            if index not in plans:
                plans[index] = compile_members(udt, udts)
            id_leaf = next((leaf for leaf in plans[index] if leaf.name == "id"), None)
            if id_leaf is None or id_leaf.dtype != "<u8" or id_leaf.is_reference:
                raise corrupt(f"POD dependency {udt.name!r} has no u64 'id' member")
            record = _read_pod(plans[index], deps, body, udt.name)
            deps._add(record["id"], udt.name)
            deps.records[record["id"]] = record
    return deps


def _read_pod(plan: list[Leaf], deps: Dependencies, body: memoryview, what: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for leaf in plan:
        value = struct.unpack_from(_STRUCT_OF[leaf.dtype], body, leaf.offset)[0]
        if leaf.is_reference:
            if value not in deps.kinds:
                raise corrupt(f"{what}.{leaf.name}: dependency {value} not found (must precede its users)")
            value = deps.value(value)
        record[leaf.name] = value
    return record


def _read_property_set(
    udts: Sequence[UserDefinedType], deps: Dependencies, body: memoryview
) -> tuple[int, dict[str, str]]:
    layout = find_udt(udts, "Property")
    if layout is None or layout.size == 0:
        raise corrupt("PropertySetDependency without a POD 'Property' layout in the metadata")
    if len(body) < _DEP_HEADER.size:
        raise corrupt(f"PropertySetDependency of {len(body)} bytes is truncated")
    ident, count = _DEP_HEADER.unpack_from(body)
    if count > (len(body) - _DEP_HEADER.size) // layout.size:
        raise corrupt(f"property set {ident}: {count} properties exceed the {len(body)}-byte record")
    plan = compile_members(layout, udts)
    if not {"name", "value"} <= {leaf.name for leaf in plan}:
        raise corrupt("'Property' layout lacks 'name' or 'value'")
    properties: dict[str, str] = {}
    for i in range(count):
        start = _DEP_HEADER.size + i * layout.size
        prop = _read_pod(plan, deps, body[start : start + layout.size], "Property")
        name, value = prop["name"], prop["value"]
        if not isinstance(name, str) or not isinstance(value, str):
            raise corrupt(f"property set {ident}: property name and value must be strings")
        properties[name] = value
    return ident, properties
