"""Vectorised transit block reader: stream metadata + ``BlockPayload`` → columnar tables.

Driven only by the stream's two metadata arrays (``micromegas-wire.md`` §5.1-5.7). The object
queue is split by the C scanner, then each type index is decoded at once with numpy: POD
members are gathered at their metadata offsets (nested UDTs flattened, reference members as
u64 ids checked against the dependency ids), dynamic log events get their fixed prefix the same
way and their trailing string as a pyarrow array built from gathered bytes + offsets. No Python
loop runs per event except for UTF-16 strings and invalid UTF-8 repaired lossily (as Rust does).
Every failure surfaces as ``CorruptBlockError``; unknown dynamic types are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..tracing import gather, gather_fixed, scan_queue
from ..tracing.transit import BlockPayload, TracingError, UserDefinedType, decompress_queue
from ._exceptions import CorruptBlockError
from ._transit_dependencies import (
    Dependencies,
    Leaf,
    compile_members,
    corrupt,
    decode_dyn_text,
    find_udt,
    read_dependencies,
    type_sizes,
)

_log = logging.getLogger(__name__)

POSITION = "position"
"""Column of every object table: the event's index in the block's object queue."""

Columns = dict[str, "npt.NDArray[Any] | pa.Array"]


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """One decoded block: its dependency map and one table per object type name.

    Attributes:
        dependencies: strings, descriptor records and property sets by id.
        tables: per object type name, a table with ``position`` and one column per member
            (reference members hold u64 ids; resolve them with ``dependencies.resolve_*``).
        reference_columns: per object type name, the columns that hold dependency ids.
        nb_objects: number of records in the object queue (skipped ones included).
        skipped: per unknown dynamic type name, the positions of its skipped records.
    """

    dependencies: Dependencies
    tables: Mapping[str, pa.Table]
    reference_columns: Mapping[str, tuple[str, ...]]
    nb_objects: int
    skipped: Mapping[str, npt.NDArray[np.int64]] = field(default_factory=dict)

    def to_events(self) -> list[dict[str, Any]]:
        """Return every event as a dict in queue order, references resolved (for tests, slow).

        >>> DecodedBlock(Dependencies(), {}, {}, 0).to_events()
        []
        """
        events: list[dict[str, Any]] = []
        for name, table in self.tables.items():
            refs = set(self.reference_columns.get(name, ()))
            for row in table.to_pylist():
                event: dict[str, Any] = {"type": name}
                for key, value in row.items():
                    event[key] = self.dependencies.value(value) if key in refs else value
                events.append(event)
        for name, positions in self.skipped.items():
            events.extend({"type": name, POSITION: int(p)} for p in positions)
        events.sort(key=lambda e: e[POSITION])
        return events


# ---------------------------------------------------------------------------------------------
# vectorised helpers


def _field(rows: npt.NDArray[np.uint8], offset: int, dtype: str) -> npt.NDArray[Any]:
    """Column of ``dtype`` at ``offset`` in every row of a gathered ``(n, width)`` byte matrix."""
    count, width = rows.shape
    view: npt.NDArray[Any] = np.ndarray((count,), dtype=np.dtype(dtype), buffer=rows, offset=offset, strides=(width,))
    return view.copy()  # aligned, contiguous, independent of the gather buffer


def _strings(
    buffer: bytes, starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], codecs: npt.NDArray[np.uint8] | None
) -> pa.Array:
    """Build a string array from byte windows; ``codecs`` None = strict UTF-8 (legacy tails)."""
    count = starts.size
    wide = codecs == 1 if codecs is not None else np.zeros(count, bool)
    narrow_lengths = np.where(wide, 0, lengths)  # UTF-16 items are decoded one by one below
    data = gather(buffer, starts, narrow_lengths)
    offsets = np.zeros(count + 1, np.int64)
    np.cumsum(narrow_lengths, out=offsets[1:])
    if offsets[-1] < 2**31:
        array = pa.Array.from_buffers(
            pa.string(), count, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
        )
    else:
        array = pa.Array.from_buffers(pa.large_string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    try:
        array.validate(full=True)
    except pa.ArrowInvalid as exc:
        if codecs is None:
            raise corrupt(f"legacy message is not valid UTF-8: {exc}") from exc
        # Rust decodes DynString with from_utf8_lossy: repair item by item (rare path).
        raw = bytes(data)
        texts = [
            raw[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(count)
        ]  # offsets are int64 numpy scalars; slicing accepts them
        array = pa.array(texts, type=pa.string())
    if wide.any():
        positions = np.flatnonzero(wide)
        texts = [
            decode_dyn_text(bytes(buffer[starts[i] : starts[i] + lengths[i]]), 1, "DynString")
            for i in positions.tolist()
        ]
        array = pc.replace_with_mask(array, pa.array(wide), pa.array(texts, type=array.type))
    return array


def _dyn_strings(buffer: bytes, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], what: str) -> pa.Array:
    """Decode a ``DynString`` (u8 codec, u32 len, bytes) at ``starts`` within bodies ending at ``ends``."""
    if np.any(starts + 5 > ends):
        raise corrupt(f"{what}: DynString header runs past the body")
    header = gather_fixed(buffer, starts, 5)
    codecs = header[:, 0].copy()
    lengths = _field(header, 1, "<u4").astype(np.int64)
    if np.any(codecs > 2):
        raise corrupt(f"{what}: invalid string codec {int(codecs[codecs > 2][0])}")
    if np.any(starts + 5 + lengths > ends):
        raise corrupt(f"{what}: DynString runs past the body")
    return _strings(buffer, starts + 5, lengths, codecs)


def _leaf_columns(rows: npt.NDArray[np.uint8], leaves: Sequence[Leaf], columns: Columns, refs: list[str]) -> None:
    for leaf in leaves:
        columns[leaf.name] = _field(rows, leaf.offset, leaf.dtype)
        if leaf.is_reference:
            refs.append(leaf.name)


# ---------------------------------------------------------------------------------------------
# per-type decoders: (buffer, body offsets, body sizes, metadata) → (columns, reference columns)

Decoder = Callable[
    [bytes, npt.NDArray[np.int64], npt.NDArray[np.int64], Sequence[UserDefinedType]], tuple[Columns, list[str]]
]


def _decode_pod(udt: UserDefinedType) -> Decoder:
    def decode(
        buffer: bytes, offsets: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64], udts: Sequence[UserDefinedType]
    ) -> tuple[Columns, list[str]]:
        leaves = compile_members(udt, udts)
        columns: Columns = {}
        refs: list[str] = []
        _leaf_columns(gather_fixed(buffer, offsets, udt.size), leaves, columns, refs)
        return columns, refs

    return decode


def _ref_udt(udts: Sequence[UserDefinedType], name: str, what: str) -> tuple[int, Leaf]:
    """Size and ``id`` leaf of an embedded reference UDT (``StringId`` / ``StaticStringRef``)."""
    udt = find_udt(udts, name)
    if udt is None or udt.size == 0:
        raise corrupt(f"{what}: no POD metadata for {name}")
    ident = next((leaf for leaf in compile_members(udt, udts) if leaf.name == "id"), None)
    if ident is None:
        raise corrupt(f"{what}: {name} has no 'id' member")
    return udt.size, ident


Prefix = Callable[[Sequence[UserDefinedType]], tuple[list[Leaf], int]]
"""Given the metadata, the fixed fields of a dynamic event and the width of its fixed part."""


def _dynamic(what: str, prefix: Prefix, tail: str) -> Decoder:
    """Decoder of a dynamic event: fixed prefix fields, then a DynString or a raw UTF-8 tail.

    ``tail`` is ``"dyn"`` (``DynString``, lossy like Rust) or ``"raw"`` (legacy, strict UTF-8
    to the end of the body).
    """

    def decode(
        buffer: bytes, offsets: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64], udts: Sequence[UserDefinedType]
    ) -> tuple[Columns, list[str]]:
        leaves, width = prefix(udts)
        if np.any(sizes < width):
            raise corrupt(f"{what}: body shorter than its {width}-byte fixed part")
        columns: Columns = {}
        refs: list[str] = []
        _leaf_columns(gather_fixed(buffer, offsets, width), leaves, columns, refs)
        ends = offsets + sizes
        if tail == "dyn":
            columns["msg"] = _dyn_strings(buffer, offsets + width, ends, what)
        else:
            columns["msg"] = _strings(buffer, offsets + width, ends - offsets - width, None)
        return columns, refs

    return decode


def _interop_prefix(ref_name: str, level: str, with_properties: bool) -> Prefix:
    """``i64 time · level · <ref_name> target [· u64 properties]`` (ref size from the metadata)."""

    def prefix(udts: Sequence[UserDefinedType]) -> tuple[list[Leaf], int]:
        ref_size, ident = _ref_udt(udts, ref_name, "interop log event")
        base = 8 + np.dtype(level).itemsize
        leaves = [
            Leaf("time", "<i8", 0, False),
            Leaf("level", level, 8, False),
            Leaf("target", ident.dtype, base + ident.offset, ident.is_reference),
        ]
        width = base + ref_size
        if with_properties:
            leaves.append(Leaf("properties", "<u8", width, True))
            width += 8
        return leaves, width

    return prefix


def _fixed(width: int, *leaves: Leaf) -> Prefix:
    return lambda _udts: (list(leaves), width)


_DESC = Leaf("desc", "<u8", 0, True)
_DYNAMIC_DECODERS: dict[str, Decoder] = {
    "LogStringEventV2": _dynamic("LogStringEventV2", _fixed(16, _DESC, Leaf("time", "<i8", 8, False)), "dyn"),
    "LogStringEvent": _dynamic("LogStringEvent", _fixed(16, _DESC, Leaf("time", "<i8", 8, False)), "raw"),
    "TaggedLogString": _dynamic(
        "TaggedLogString",
        _fixed(24, _DESC, Leaf("properties", "<u8", 8, True), Leaf("time", "<i8", 16, False)),
        "dyn",
    ),
    "LogStringInteropEventV3": _dynamic(
        "LogStringInteropEventV3", _interop_prefix("StaticStringRef", "u1", False), "dyn"
    ),
    "LogStringInteropEventV2": _dynamic("LogStringInteropEventV2", _interop_prefix("StringId", "<u4", False), "raw"),
    "TaggedLogInteropEvent": _dynamic("TaggedLogInteropEvent", _interop_prefix("StaticStringRef", "u1", True), "dyn"),
}
"""Readers of the dynamic object types Micromegas knows (``rust/tracing/src/parsing.rs``)."""


# ---------------------------------------------------------------------------------------------
# entry points


DependencyCache = MutableMapping[bytes, Dependencies]
"""Decoded dependency queues by their bytes, shared by the blocks of one stream: a thread's
blocks usually repeat the same descriptors in the same order, and the queue is then decoded once."""


def decode_queues(
    dependencies_metadata: Sequence[UserDefinedType],
    objects_metadata: Sequence[UserDefinedType],
    dependencies: bytes,
    objects: bytes,
    dependency_cache: DependencyCache | None = None,
) -> DecodedBlock:
    """Decode already-decompressed dependency and object queues.

    Args:
        dependencies_metadata: the stream's ``dependencies_metadata``.
        objects_metadata: the stream's ``objects_metadata``.
        dependencies: the decompressed dependency queue.
        objects: the decompressed object queue.
        dependency_cache: dependency queues already decoded with the same metadata (read and
            filled; the ``Dependencies`` it holds are shared by the blocks, never modified).

    Raises:
        CorruptBlockError: for any inconsistency between the queues and the metadata.
    """
    try:
        return _decode(
            tuple(dependencies_metadata), tuple(objects_metadata), bytes(dependencies), bytes(objects), dependency_cache
        )
    except CorruptBlockError:
        raise
    except (
        TracingError,
        ValueError,
        TypeError,
        OverflowError,
        IndexError,
        KeyError,
        AttributeError,
        pa.ArrowException,
    ) as exc:
        # The boundary of the reader: whatever the bytes trigger below is a corrupt block.
        msg = f"corrupt transit block: {exc}"
        raise CorruptBlockError(msg) from exc


def decode_block(
    dependencies_metadata: Sequence[UserDefinedType],
    objects_metadata: Sequence[UserDefinedType],
    payload: BlockPayload,
    dependency_cache: DependencyCache | None = None,
) -> DecodedBlock:
    """Decompress and decode one block's payload with its stream's metadata.

    Args:
        dependencies_metadata: the stream's ``dependencies_metadata``.
        objects_metadata: the stream's ``objects_metadata``.
        payload: the block payload (LZ4 frames).
        dependency_cache: see ``decode_queues``.

    Returns:
        The ``DecodedBlock``.

    Raises:
        CorruptBlockError: bad LZ4, unknown type index, truncated record, member window past a
            body, missing or duplicate reference, bad UTF-8, inconsistent metadata.
    """
    try:
        deps = decompress_queue(bytes(payload.dependencies))
        objs = decompress_queue(bytes(payload.objects))
    except (TracingError, ValueError, TypeError, MemoryError) as exc:
        msg = f"corrupt block payload: {exc}"
        raise CorruptBlockError(msg) from exc
    return decode_queues(dependencies_metadata, objects_metadata, deps, objs, dependency_cache)


def _decode(
    deps_udts: tuple[UserDefinedType, ...],
    objs_udts: tuple[UserDefinedType, ...],
    deps_buf: bytes,
    objs_buf: bytes,
    dependency_cache: DependencyCache | None,
) -> DecodedBlock:
    for udt in (*deps_udts, *objs_udts):
        if not isinstance(udt, UserDefinedType):
            raise corrupt(f"metadata entry is not a UserDefinedType: {type(udt).__name__}")
    deps = dependency_cache.get(deps_buf) if dependency_cache is not None else None
    if deps is None:
        deps = read_dependencies(deps_udts, deps_buf)
        if dependency_cache is not None:
            dependency_cache[deps_buf] = deps  # a race decodes it twice, both results equal
    types, offsets32, sizes32 = scan_queue(objs_buf, type_sizes(objs_udts))
    offsets, sizes = offsets32.astype(np.int64), sizes32.astype(np.int64)
    parts: dict[str, list[pa.Table]] = {}
    references: dict[str, tuple[str, ...]] = {}
    skipped: dict[str, list[npt.NDArray[np.int64]]] = {}
    # The type indexes present, ascending (a count per index: no sort of the queue's types).
    for index in np.flatnonzero(np.bincount(types)).tolist():
        udt = objs_udts[index]
        positions = np.flatnonzero(types == index).astype(np.int64)
        if udt.size > 0:
            decoder = _decode_pod(udt)
        elif udt.name in _DYNAMIC_DECODERS:
            decoder = _DYNAMIC_DECODERS[udt.name]
        else:
            _log.warning("skipping %d objects of unknown dynamic type %r", positions.size, udt.name)
            skipped.setdefault(udt.name, []).append(positions)
            continue
        columns, refs = decoder(objs_buf, offsets[positions], sizes[positions], objs_udts)
        for name in refs:
            deps.check_ids(columns[name], f"{udt.name}.{name}")
        if POSITION in columns:
            raise corrupt(f"{udt.name}: a member is called {POSITION!r}, which the reader reserves")
        parts.setdefault(udt.name, []).append(pa.table({POSITION: positions, **columns}))
        references[udt.name] = tuple(refs)
    tables = {name: _merge(tables) for name, tables in parts.items()}
    return DecodedBlock(
        dependencies=deps,
        tables=tables,
        reference_columns=references,
        nb_objects=int(types.size),
        skipped={name: np.sort(np.concatenate(p)) for name, p in skipped.items()},
    )


def _merge(tables: list[pa.Table]) -> pa.Table:
    """Several type indexes may share a name (metadata allows it): one table in queue order."""
    if len(tables) == 1:
        return tables[0]
    merged = pa.concat_tables(tables, promote_options="permissive")
    return merged.take(pc.sort_indices(merged, [(POSITION, "ascending")]))
