"""Transit layouts a Sirius producer declares for its ``log``, ``metrics`` and ``cpu`` streams.

This module is the one place that says which UDT metadata (``objects_metadata``,
``dependencies_metadata``) and tags a Sirius stream registers (``micromegas-wire.md`` §5.3-5.5).
Layouts are written as data: each struct is a list of ``(name, type_name, kind)`` fields and
its offsets are computed with C natural alignment, so the Python writer, the C tracer of a later
issue and the tests all read the same tables. Type indexes are positions in the tuples below;
the secondary UDTs (``StringId``, ``StaticStringRef``, ``Property``) follow the declared types.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from ._exceptions import WireFormatError
from ._udt import INTRINSIC_SIZES, Member, UserDefinedType

# ---------------------------------------------------------------------------------------------
# shared constants


class StringCodec(IntEnum):
    """Codec byte of a ``DynString`` / ``StaticStringDependency`` (``string_codec.rs``)."""

    ANSI = 0
    UTF16 = 1
    UTF8 = 2


class Level(IntEnum):
    """Log levels as Micromegas numbers them (``micromegas-wire.md`` §5.6)."""

    FATAL = 1
    ERROR = 2
    WARN = 3
    INFO = 4
    DEBUG = 5
    TRACE = 6


STRING_ID = UserDefinedType(
    name="StringId",
    size=16,  # struct {u64 ptr; u32 len;} padded to 8
    members=(Member("id", "usize", 0, 8, is_reference=True),),
    is_reference=True,
)
STATIC_STRING_REF = UserDefinedType(
    name="StaticStringRef",
    size=16,  # struct {u64 ptr; u32 len; u8 codec;} padded to 8
    members=(Member("id", "usize", 0, 8, is_reference=True),),
    is_reference=True,
)
PROPERTY = UserDefinedType(
    name="Property",
    size=32,
    members=(Member("name", "StaticStringRef", 0, 16), Member("value", "StaticStringRef", 16, 16)),
)

# Secondary UDTs by name: members whose type_name is one of these embed that struct.
_SECONDARY: dict[str, UserDefinedType] = {u.name: u for u in (STRING_ID, STATIC_STRING_REF, PROPERTY)}

# Type-name text of reference members: what Rust's TransitReflect derive records (token text of
# the pointer/reference type). Readers only look at ``is_reference``; keeping Rust's spelling
# makes our metadata indistinguishable from a Rust producer's.
STR_PTR = "* const u8"
LOG_DESC = "& 'static LogMetadata < 'static >"
SPAN_DESC = "& 'static SpanMetadata"
SPAN_LOCATION = "& 'static SpanLocation"
METRIC_DESC = "& 'static StaticMetricMetadata"
PROPERTY_SET = "& 'static PropertySet"

_REF = "ref"  # field kind: an 8-byte id resolved in the dependency map

FieldSpec = tuple[str, str, str]
"""``(member name, type_name, kind)``; kind is an intrinsic name, ``"ref"`` or a secondary UDT name."""


def c_struct(name: str, fields: Sequence[FieldSpec]) -> UserDefinedType:
    """Lay out a POD struct with C natural alignment and return its UDT.

    Args:
        name: the UDT name readers dispatch on.
        fields: members in declaration order.

    Returns:
        The ``UserDefinedType`` with offsets and size a C compiler would give on x86-64/aarch64.

    >>> c_struct("X", [("a", "u8", "u8"), ("b", "u64", "u64")]).size
    16
    """
    offset = 0
    align_max = 1
    members = []
    for member_name, type_name, kind in fields:
        if kind == _REF:
            size, align = 8, 8
        elif kind in _SECONDARY:
            size, align = _SECONDARY[kind].size, 8
        else:
            size = align = INTRINSIC_SIZES[kind]
        offset = -(-offset // align) * align
        members.append(Member(member_name, type_name, offset, size, is_reference=kind == _REF))
        offset += size
        align_max = max(align_max, align)
    size = -(-offset // align_max) * align_max
    return UserDefinedType(name=name, size=size, members=tuple(members))


def dynamic(name: str) -> UserDefinedType:
    """Return a dynamic (size-prefixed) UDT: no members, read by a name-specific reader."""
    return UserDefinedType(name=name, size=0)


def _ref(name: str, type_name: str) -> FieldSpec:
    return (name, type_name, _REF)


def _int(name: str, kind: str) -> FieldSpec:
    return (name, kind, kind)


def _sid(name: str) -> FieldSpec:
    return (name, "StringId", "StringId")


_TIME = _int("time", "i64")

# ---------------------------------------------------------------------------------------------
# dependencies (§5.3)

STATIC_STRING = dynamic("StaticString")
STATIC_STRING_DEPENDENCY = dynamic("StaticStringDependency")
PROPERTY_SET_DEPENDENCY = dynamic("PropertySetDependency")
LOG_METADATA_RECORD = c_struct(
    "LogMetadataRecord",
    [
        _int("id", "u64"),
        _ref("fmt_str", STR_PTR),
        _ref("target", STR_PTR),
        _ref("module_path", STR_PTR),
        _ref("file", STR_PTR),
        _int("line", "u32"),
        _int("level", "u32"),
    ],
)
SPAN_RECORD = c_struct(
    "SpanRecord",
    [
        _int("id", "u64"),
        _ref("name", STR_PTR),
        _ref("target", STR_PTR),
        _ref("module_path", STR_PTR),
        _ref("file", STR_PTR),
        _int("line", "u32"),
        _int("lod", "u32"),
    ],
)
SPAN_LOCATION_RECORD = c_struct(
    "SpanLocationRecord",
    [
        _int("id", "u64"),
        _ref("target", STR_PTR),
        _ref("module_path", STR_PTR),
        _ref("file", STR_PTR),
        _int("line", "u32"),
        _int("lod", "u32"),
    ],
)
METRIC_METADATA_DEPENDENCY = c_struct(
    "MetricMetadataDependency",
    [
        _int("id", "u64"),
        _ref("name", STR_PTR),
        _ref("unit", STR_PTR),
        _ref("target", STR_PTR),
        _ref("file", STR_PTR),
        _int("line", "u32"),
        _int("lod", "u32"),
    ],
)

# ---------------------------------------------------------------------------------------------
# objects (§5.5)


def _span(name: str, desc: str) -> UserDefinedType:
    return c_struct(name, [_ref("thread_span_desc", desc), _TIME])


def _named_span(name: str) -> UserDefinedType:
    return c_struct(name, [_ref("thread_span_location", SPAN_LOCATION), _sid("name"), _TIME])


def _async_span(name: str) -> UserDefinedType:
    return c_struct(
        name,
        [
            _ref("span_desc", SPAN_DESC),
            _int("span_id", "u64"),
            _int("parent_span_id", "u64"),
            _int("depth", "u32"),
            _TIME,
        ],
    )


def _async_named_span(name: str) -> UserDefinedType:
    return c_struct(
        name,
        [
            _ref("span_location", SPAN_LOCATION),
            _sid("name"),
            _int("span_id", "u64"),
            _int("parent_span_id", "u64"),
            _int("depth", "u32"),
            _TIME,
        ],
    )


LOG_OBJECTS: tuple[UserDefinedType, ...] = (
    c_struct("LogStaticStrEvent", [_ref("desc", LOG_DESC), _TIME]),
    dynamic("LogStringEventV2"),
    c_struct("LogStaticStrInteropEvent", [_TIME, _int("level", "u32"), _sid("target"), _sid("msg")]),
    dynamic("LogStringInteropEventV3"),
    dynamic("TaggedLogString"),
)
METRICS_OBJECTS: tuple[UserDefinedType, ...] = (
    c_struct("IntegerMetricEvent", [_ref("desc", METRIC_DESC), _int("value", "u64"), _TIME]),
    c_struct("FloatMetricEvent", [_ref("desc", METRIC_DESC), _int("value", "f64"), _TIME]),
    c_struct(
        "TaggedFloatMetricEvent",
        [_ref("desc", METRIC_DESC), _ref("properties", PROPERTY_SET), _int("value", "f64"), _TIME],
    ),
    c_struct(
        "TaggedIntegerMetricEvent",
        [_ref("desc", METRIC_DESC), _ref("properties", PROPERTY_SET), _int("value", "u64"), _TIME],
    ),
)
CPU_OBJECTS: tuple[UserDefinedType, ...] = (
    _span("BeginThreadSpanEvent", SPAN_DESC),
    _span("EndThreadSpanEvent", SPAN_DESC),
    _named_span("BeginThreadNamedSpanEvent"),
    _named_span("EndThreadNamedSpanEvent"),
    _async_span("BeginAsyncSpanEvent"),
    _async_span("EndAsyncSpanEvent"),
    _async_named_span("BeginAsyncNamedSpanEvent"),
    _async_named_span("EndAsyncNamedSpanEvent"),
)


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """What one stream kind registers: tags, object and dependency metadata (declared + secondary)."""

    kind: str
    tags: tuple[str, ...]
    objects_metadata: tuple[UserDefinedType, ...]
    dependencies_metadata: tuple[UserDefinedType, ...]

    def object_index(self, name: str) -> int:
        """Return the type index of the object UDT called ``name``.

        Raises:
            KeyError: when this stream kind declares no such object type.
        """
        return _index(self.objects_metadata, name)

    def dependency_index(self, name: str) -> int:
        """Return the type index of the dependency UDT called ``name``.

        Raises:
            KeyError: when this stream kind declares no such dependency type.
        """
        return _index(self.dependencies_metadata, name)

    def object_udt(self, name: str) -> UserDefinedType:
        """Return the object UDT called ``name`` (``KeyError`` when absent)."""
        return self.objects_metadata[self.object_index(name)]


def _index(udts: tuple[UserDefinedType, ...], name: str) -> int:
    for index, udt in enumerate(udts):
        if udt.name == name:
            return index
    raise KeyError(name)


LOG = StreamLayout(
    kind="log",
    tags=("log",),
    objects_metadata=(*LOG_OBJECTS, STRING_ID, STATIC_STRING_REF),
    dependencies_metadata=(
        STATIC_STRING,
        STATIC_STRING_DEPENDENCY,
        LOG_METADATA_RECORD,
        PROPERTY_SET_DEPENDENCY,
        PROPERTY,
        STATIC_STRING_REF,
    ),
)
METRICS = StreamLayout(
    kind="metrics",
    tags=("metrics",),
    objects_metadata=METRICS_OBJECTS,
    dependencies_metadata=(
        STATIC_STRING,
        STATIC_STRING_DEPENDENCY,
        METRIC_METADATA_DEPENDENCY,
        PROPERTY_SET_DEPENDENCY,
        PROPERTY,
        STATIC_STRING_REF,
    ),
)
CPU = StreamLayout(
    kind="cpu",
    tags=("cpu",),
    objects_metadata=(*CPU_OBJECTS, STRING_ID),
    dependencies_metadata=(SPAN_RECORD, SPAN_LOCATION_RECORD, STATIC_STRING),
)

STREAM_LAYOUTS: dict[str, StreamLayout] = {layout.kind: layout for layout in (LOG, METRICS, CPU)}
"""Layouts by stream kind (the stream tag)."""


def stream_layout(kind: str) -> StreamLayout:
    """Return the layout of stream kind ``log``, ``metrics`` or ``cpu``.

    Raises:
        ValueError: for any other kind.

    >>> stream_layout("cpu").object_index("EndThreadSpanEvent")
    1
    """
    try:
        return STREAM_LAYOUTS[kind]
    except KeyError:
        msg = f"unknown transit stream kind {kind!r}; expected one of {sorted(STREAM_LAYOUTS)}"
        raise ValueError(msg) from None


# ---------------------------------------------------------------------------------------------
# packing records from a layout (the writer; tests crafting buffers)

_FORMAT_OF = {
    "u8": "B",
    "uint8": "B",
    "u32": "I",
    "uint32": "I",
    "u64": "Q",
    "uint64": "Q",
    "i64": "q",
    "int64": "q",
    "f64": "d",
}
_NUMPY_OF = {"B": "u1", "I": "<u4", "Q": "<u8", "q": "<i8", "d": "<f8"}


def _flatten(udt: UserDefinedType, udts: Sequence[UserDefinedType], base: int = 0) -> list[tuple[int, str, str]]:
    """``(offset, struct format, key)`` for every leaf; a nested reference UDT is keyed by its member name."""
    leaves: list[tuple[int, str, str]] = []
    for m in udt.members:
        if m.is_reference:
            leaves.append((base + m.offset, "Q", m.name))
        elif m.type_name in _FORMAT_OF:
            leaves.append((base + m.offset, _FORMAT_OF[m.type_name], m.name))
        else:
            nested = next(u for u in udts if u.name == m.type_name)
            inner = _flatten(nested, udts, base + m.offset)
            if nested.is_reference:
                leaves.extend((off, fmt, m.name) for off, fmt, key in inner if key == "id")
            else:
                leaves.extend((off, fmt, f"{m.name}.{key}") for off, fmt, key in inner)
    return sorted(leaves)


class RecordPacker:
    """Packs one POD UDT from member values (missing → 0) at its metadata offsets.

    Nested reference UDTs (``StringId``, ``StaticStringRef``) are addressed by the member name
    and receive the id; other nested UDTs by ``member.sub``.

    >>> RecordPacker(LOG.object_udt("LogStaticStrEvent"), LOG.objects_metadata).pack({"desc": 1, "time": 2}).hex()
    '01000000000000000200000000000000'
    """

    __slots__ = ("keys", "leaves", "size", "struct")

    def __init__(self, udt: UserDefinedType, udts: Sequence[UserDefinedType]) -> None:
        self.leaves = _flatten(udt, udts)
        self.size = udt.size
        fmt, pos = "<", 0
        for offset, code, _key in self.leaves:
            fmt += "x" * (offset - pos) + code
            pos = offset + struct.calcsize("<" + code)
        fmt += "x" * (udt.size - pos)
        self.struct = struct.Struct(fmt)
        self.keys = tuple(key for _off, _code, key in self.leaves)

    def pack(self, values: Mapping[str, Any]) -> bytes:
        """Return the body bytes.

        Raises:
            WireFormatError: a value does not fit its member.
        """
        try:
            return self.struct.pack(*(values.get(key, 0) for key in self.keys))
        except struct.error as exc:
            msg = f"value out of range for its member: {exc}"
            raise WireFormatError(msg) from exc

    def record_dtype(self) -> np.dtype[Any]:
        """Structured dtype of ``[u8 type_index][body]`` for bulk packing with numpy."""
        names = ["_type_index", *self.keys]
        formats = ["u1"] + [_NUMPY_OF[code] for _off, code, _key in self.leaves]
        offsets = [0] + [1 + off for off, _code, _key in self.leaves]
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": 1 + self.size})
