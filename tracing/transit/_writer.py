"""Python transit writer: one stream's events → ``StreamInfo`` and LZ4-framed ``Block`` s.

A ``TransitWriter`` is bound to a ``ProcessInfo`` and a stream kind (``log``, ``metrics``,
``cpu``). Records are packed from the layouts of ``_layouts`` (metadata offsets, never
hand-written ones), so what it writes is exactly what its ``StreamInfo`` declares. Strings,
descriptors and property sets get process-lifetime ids, tagged in the high byte so the three
kinds never collide (the reader has one id space per block); each block's dependency queue
carries every string first, then the records that point at them (``micromegas-wire.md`` §5.8).
Used by tests, the telemetry sink and the OTel bridge: correctness first, numpy for bulk POD.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ._exceptions import WireFormatError
from ._layouts import Level, RecordPacker, StreamLayout, StringCodec, stream_layout
from ._udt import UserDefinedType
from ._wire_format import Block, BlockPayload, ProcessInfo, StreamInfo, compress_queue


@dataclass(frozen=True, slots=True)
class LogMetadata:
    """Static description of a log call site (→ ``LogMetadataRecord``)."""

    fmt_str: str
    target: str
    level: int = Level.INFO
    module_path: str = ""
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class SpanMetadata:
    """Static description of a span (→ ``SpanRecord``)."""

    name: str
    target: str = ""
    module_path: str = ""
    file: str = ""
    line: int = 0
    lod: int = 0


@dataclass(frozen=True, slots=True)
class SpanLocation:
    """Where a dynamically named span is opened (→ ``SpanLocationRecord``)."""

    target: str = ""
    module_path: str = ""
    file: str = ""
    line: int = 0
    lod: int = 0


@dataclass(frozen=True, slots=True)
class MetricMetadata:
    """Static description of a metric (→ ``MetricMetadataDependency``)."""

    name: str
    unit: str = ""
    target: str = ""
    file: str = ""
    line: int = 0
    lod: int = 0


Descriptor = LogMetadata | SpanMetadata | SpanLocation | MetricMetadata
_RECORD_OF: dict[type, str] = {
    LogMetadata: "LogMetadataRecord",
    SpanMetadata: "SpanRecord",
    SpanLocation: "SpanLocationRecord",
    MetricMetadata: "MetricMetadataDependency",
}

# Id tags (high byte): strings, descriptors and property sets live in disjoint ranges.
_STRING_TAG = 1 << 56
_DESC_TAG = 2 << 56
_PROPS_TAG = 3 << 56

_U32 = struct.Struct("<I")
_DYN_HEADER = struct.Struct("<BI")


def _codec(codec: int) -> StringCodec:
    try:
        return StringCodec(codec)
    except ValueError:
        msg = f"invalid string codec {codec!r}"
        raise WireFormatError(msg) from None


def _encode_text(text: str, codec: StringCodec) -> bytes:
    try:
        if codec == StringCodec.UTF16:
            return text.encode("utf-16-le")
        if codec == StringCodec.ANSI:
            # Readers decode ANSI as UTF-8 (lossy), so only ASCII round-trips.
            return text.encode("ascii")
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"text cannot be encoded with codec {codec.name}: {exc}"
        raise WireFormatError(msg) from exc


def _dyn_string(text: str, codec: int = StringCodec.UTF8) -> bytes:
    codec = _codec(codec)
    data = _encode_text(text, codec)
    return _DYN_HEADER.pack(int(codec), len(data)) + data


class TransitWriter:
    """Accumulates one stream's events and seals them into ``Block`` s.

    Args:
        process: the process the stream belongs to (``start_ticks`` anchors block ticks).
        kind: ``"log"``, ``"metrics"`` or ``"cpu"``.
        stream_id: defaults to a fresh UUIDv4.
        properties: stream properties (``thread-id``, ``thread-name`` for cpu streams).
        begin_ticks: absolute ticks at which the first block opens (default ``start_ticks``).
        begin_time_ns: wall clock of that instant (default ``start_time_ns``).
        string_codec: ``None`` interns strings as ``StaticString`` (UTF-8); a codec writes
            ``StaticStringDependency`` records with it (log and metrics streams only).
        new_block_id: block id factory (inject for deterministic tests).

    Raises:
        ValueError: for an unknown kind.
        WireFormatError: when ``string_codec`` is set on a stream without ``StaticStringDependency``.

    >>> import uuid
    >>> p = ProcessInfo(uuid.UUID(int=1), "exe", "u", "u", "h", "linux", "cpu", 1000, 0, 0)
    >>> w = TransitWriter(p, "cpu", stream_id=uuid.UUID(int=2))
    >>> w.begin_thread_span(SpanMetadata("work"), ticks=10)
    >>> w.end_thread_span(SpanMetadata("work"), ticks=20)
    >>> block = w.finish_block(end_ticks=30, end_time_ns=30_000_000)
    >>> (block.nb_objects, block.object_offset, block.end_ticks)
    (2, 0, 30)
    """

    def __init__(
        self,
        process: ProcessInfo,
        kind: str,
        *,
        stream_id: uuid.UUID | None = None,
        properties: Mapping[str, str] | None = None,
        begin_ticks: int | None = None,
        begin_time_ns: int | None = None,
        string_codec: StringCodec | None = None,
        new_block_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self.process = process
        self.layout: StreamLayout = stream_layout(kind)
        self.stream_id = stream_id or uuid.uuid4()
        self._properties = dict(properties or {})
        self._new_block_id = new_block_id
        self._string_codec = None if string_codec is None else _codec(string_codec)
        if string_codec is not None:
            self._dep_index("StaticStringDependency")
        self._begin_ticks = process.start_ticks if begin_ticks is None else begin_ticks
        self._begin_time_ns = process.start_time_ns if begin_time_ns is None else begin_time_ns
        self._object_offset = 0
        self._packers: dict[str, RecordPacker] = {}
        # process-lifetime ids (like Rust's static pointers), per-block emission lists
        self._ids: dict[tuple[str, Any], int] = {}
        self._reset_block()

    # ------------------------------------------------------------------ registration and sealing

    def stream_info(self) -> StreamInfo:
        """Return the ``StreamInfo`` to register before the first block."""
        return StreamInfo(
            process_id=self.process.process_id,
            stream_id=self.stream_id,
            dependencies_metadata=self.layout.dependencies_metadata,
            objects_metadata=self.layout.objects_metadata,
            tags=self.layout.tags,
            properties=dict(self._properties),
        )

    @property
    def nb_objects(self) -> int:
        """Number of events in the open block."""
        return self._nb_objects

    @property
    def object_queue_size(self) -> int:
        """Bytes in the open block's uncompressed object queue (for size-based sealing)."""
        return len(self._objects)

    def _reset_block(self) -> None:
        self._objects = bytearray()
        self._strings: dict[int, bytes] = {}  # id → encoded dependency record (strings first)
        self._records: dict[int, bytes] = {}  # id → encoded descriptor / property-set record
        self._nb_objects = 0
        self._max_ticks: int | None = None

    def dependency_queue(self) -> bytes:
        """Return the open block's (uncompressed) dependency queue: strings, then records."""
        return b"".join(self._strings.values()) + b"".join(self._records.values())

    def object_queue(self) -> bytes:
        """Return the open block's (uncompressed) object queue."""
        return bytes(self._objects)

    def finish_block(self, *, end_ticks: int, end_time_ns: int, block_id: uuid.UUID | None = None) -> Block:
        """Seal the open block and start the next one at ``end_ticks`` / ``end_time_ns``.

        Args:
            end_ticks: absolute ticks at close (stored relative to ``start_ticks``).
            end_time_ns: wall clock at close, Unix nanoseconds.
            block_id: defaults to ``new_block_id()``.

        Returns:
            The ``Block`` with LZ4-frame queues, ready for ``block_to_cbor``.
        """
        start = self.process.start_ticks
        block = Block(
            block_id=block_id or self._new_block_id(),
            stream_id=self.stream_id,
            process_id=self.process.process_id,
            begin_time_ns=self._begin_time_ns,
            begin_ticks=self._begin_ticks - start,
            end_time_ns=end_time_ns,
            end_ticks=end_ticks - start,
            payload=BlockPayload(
                dependencies=compress_queue(self.dependency_queue()),
                objects=compress_queue(bytes(self._objects)),
            ),
            object_offset=self._object_offset,
            nb_objects=self._nb_objects,
        )
        self._object_offset += self._nb_objects
        self._begin_ticks, self._begin_time_ns = end_ticks, end_time_ns
        self._reset_block()
        return block

    def seal(self) -> Block:
        """Seal at the last event's ticks; the end time follows from ``tsc_frequency`` when known."""
        end_ticks = max(self._begin_ticks, self._max_ticks if self._max_ticks is not None else self._begin_ticks)
        end_time_ns = self._begin_time_ns
        freq = self.process.tsc_frequency
        if freq > 0:
            delta = (end_ticks - self.process.start_ticks) * (1e9 / freq)
            end_time_ns = max(end_time_ns, self.process.start_time_ns + round(delta))
        return self.finish_block(end_ticks=end_ticks, end_time_ns=end_time_ns)

    # ------------------------------------------------------------------ dependencies

    def _dep_index(self, name: str) -> int:
        try:
            return self.layout.dependency_index(name)
        except KeyError:
            msg = f"{self.layout.kind} streams declare no {name} dependency"
            raise WireFormatError(msg) from None

    def _packer(self, udt: UserDefinedType, udts: Sequence[UserDefinedType]) -> RecordPacker:
        packer = self._packers.get(udt.name)
        if packer is None:
            packer = self._packers[udt.name] = RecordPacker(udt, udts)
        return packer

    def _id(self, key: tuple[str, Any], tag: int) -> tuple[int, bool]:
        """Return ``(id, first_use_in_block)``."""
        ident = self._ids.get(key)
        if ident is None:
            ident = self._ids[key] = tag | (len(self._ids) + 1)
        return ident, ident not in self._strings and ident not in self._records

    def string(self, text: str) -> int:
        """Intern ``text`` for the open block and return its id."""
        if not isinstance(text, str):
            msg = f"expected str, got {type(text).__name__}"
            raise WireFormatError(msg)
        ident, new = self._id(("s", text), _STRING_TAG)
        if new:
            if self._string_codec is None:
                body = struct.pack("<Q", ident) + _encode_text(text, StringCodec.UTF8)
                index = self._dep_index("StaticString")
            else:
                body = struct.pack("<Q", ident) + _dyn_string(text, self._string_codec)
                index = self._dep_index("StaticStringDependency")
            self._strings[ident] = bytes([index]) + _U32.pack(len(body)) + body
        return ident

    def descriptor(self, desc: Descriptor) -> int:
        """Intern a descriptor (its strings first) for the open block and return its id."""
        record_name = _RECORD_OF.get(type(desc))
        if record_name is None:
            msg = f"not a descriptor: {desc!r}"
            raise WireFormatError(msg)
        ident, new = self._id(("d", desc), _DESC_TAG)
        if new:
            index = self._dep_index(record_name)
            udts = self.layout.dependencies_metadata
            values: dict[str, Any] = {"id": ident}
            for f in fields(desc):
                value = getattr(desc, f.name)
                values[f.name] = self.string(value) if isinstance(value, str) else int(value)
            self._records[ident] = bytes([index]) + self._packer(udts[index], udts).pack(values)
        return ident

    def property_set(self, properties: Mapping[str, str]) -> int:
        """Intern a property set (names and values as strings first) and return its id."""
        items = tuple(sorted(properties.items()))
        ident, new = self._id(("p", items), _PROPS_TAG)
        if new:
            index = self._dep_index("PropertySetDependency")
            udts = self.layout.dependencies_metadata
            prop = self._packer(next(u for u in udts if u.name == "Property"), udts)
            body = bytearray(struct.pack("<QI", ident, len(items)))
            for name, value in items:
                body += prop.pack({"name": self.string(name), "value": self.string(value)})
            self._records[ident] = bytes([index]) + _U32.pack(len(body)) + bytes(body)
        return ident

    # ------------------------------------------------------------------ objects

    def _object(self, name: str) -> tuple[int, UserDefinedType]:
        try:
            index = self.layout.object_index(name)
        except KeyError:
            msg = f"{self.layout.kind} streams declare no {name} object"
            raise WireFormatError(msg) from None
        return index, self.layout.objects_metadata[index]

    def _tick(self, ticks: int) -> None:
        self._nb_objects += 1
        if self._max_ticks is None or ticks > self._max_ticks:
            self._max_ticks = ticks

    def _member_value(self, value: Any) -> Any:
        """Intern what needs an id (str, property-set mapping, descriptor); pass numbers through."""
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, Mapping):
            return self.property_set(value)
        if type(value) in _RECORD_OF:
            return self.descriptor(value)
        return value

    def pod(self, type_name: str, ticks: int, /, **values: Any) -> None:
        """Append a POD event ``type_name``; descriptor, property-set and str values are interned."""
        index, udt = self._object(type_name)
        resolved: dict[str, Any] = {key: self._member_value(value) for key, value in values.items()}
        resolved["time"] = ticks
        self._objects.append(index)
        self._objects += self._packer(udt, self.layout.objects_metadata).pack(resolved)
        self._tick(ticks)

    def extend(self, type_name: str, ticks: npt.ArrayLike, /, **columns: Any) -> None:
        """Append many POD events ``type_name`` at once (numpy structured records).

        Args:
            type_name: a POD object type of this stream.
            ticks: absolute ticks, one per event.
            **columns: per member, an array (numbers) or a scalar/descriptor/str broadcast to all.
        """
        index, udt = self._object(type_name)
        packer = self._packer(udt, self.layout.objects_metadata)
        times = np.asarray(ticks, dtype=np.int64).reshape(-1)
        records = np.zeros(times.size, dtype=packer.record_dtype())
        records["_type_index"] = index
        records["time"] = times
        for key, value in columns.items():
            if isinstance(value, Sequence) and value and type(value[0]) in _RECORD_OF:
                records[key] = np.array([self.descriptor(v) for v in value], dtype=np.uint64)
            else:
                records[key] = self._member_value(value)
        self._objects += records.tobytes()
        if times.size:
            self._nb_objects += times.size - 1
            self._tick(int(times.max()))

    def _dynamic(self, name: str, ticks: int, body: bytes) -> None:
        index, _udt = self._object(name)
        self._objects.append(index)
        self._objects += _U32.pack(len(body))
        self._objects += body
        self._tick(ticks)

    # log stream
    def log_static(self, desc: LogMetadata, *, ticks: int) -> None:
        """``LogStaticStrEvent``: the message is the descriptor's ``fmt_str``."""
        self.pod("LogStaticStrEvent", ticks, desc=desc)

    def log_string(self, desc: LogMetadata, msg: str, *, ticks: int, codec: StringCodec = StringCodec.UTF8) -> None:
        """``LogStringEventV2``: a dynamic message under a static descriptor."""
        self._dynamic(
            "LogStringEventV2", ticks, struct.pack("<Qq", self.descriptor(desc), ticks) + _dyn_string(msg, codec)
        )

    def log_static_interop(self, level: int, target: str, msg: str, *, ticks: int) -> None:
        """``LogStaticStrInteropEvent``: level, target and message as interned strings."""
        self.pod("LogStaticStrInteropEvent", ticks, level=level, target=target, msg=msg)

    def log_string_interop(
        self, level: int, target: str, msg: str, *, ticks: int, codec: StringCodec = StringCodec.UTF8
    ) -> None:
        """``LogStringInteropEventV3``: ``i64 time · u8 level · StaticStringRef target · DynString msg``."""
        ref_udt = next(u for u in self.layout.objects_metadata if u.name == "StaticStringRef")
        target_ref = self._packer(ref_udt, self.layout.objects_metadata).pack({"id": self.string(target)})
        body = struct.pack("<qB", ticks, level) + target_ref + _dyn_string(msg, codec)
        self._dynamic("LogStringInteropEventV3", ticks, body)

    def log_tagged(
        self,
        desc: LogMetadata,
        properties: Mapping[str, str],
        msg: str,
        *,
        ticks: int,
        codec: StringCodec = StringCodec.UTF8,
    ) -> None:
        """``TaggedLogString``: properties may override the descriptor's target and level."""
        head = struct.pack("<QQq", self.descriptor(desc), self.property_set(properties), ticks)
        self._dynamic("TaggedLogString", ticks, head + _dyn_string(msg, codec))

    # metrics stream
    def metric_int(self, desc: MetricMetadata, value: int, *, ticks: int) -> None:
        """``IntegerMetricEvent`` (u64 value)."""
        self.pod("IntegerMetricEvent", ticks, desc=desc, value=value)

    def metric_float(self, desc: MetricMetadata, value: float, *, ticks: int) -> None:
        """``FloatMetricEvent`` (f64 value)."""
        self.pod("FloatMetricEvent", ticks, desc=desc, value=float(value))

    def metric_tagged_float(
        self, desc: MetricMetadata, properties: Mapping[str, str], value: float, *, ticks: int
    ) -> None:
        """``TaggedFloatMetricEvent``."""
        self.pod("TaggedFloatMetricEvent", ticks, desc=desc, properties=properties, value=float(value))

    def metric_tagged_int(self, desc: MetricMetadata, properties: Mapping[str, str], value: int, *, ticks: int) -> None:
        """``TaggedIntegerMetricEvent``."""
        self.pod("TaggedIntegerMetricEvent", ticks, desc=desc, properties=properties, value=value)

    # cpu stream
    def begin_thread_span(self, desc: SpanMetadata, *, ticks: int) -> None:
        """``BeginThreadSpanEvent``."""
        self.pod("BeginThreadSpanEvent", ticks, thread_span_desc=desc)

    def end_thread_span(self, desc: SpanMetadata, *, ticks: int) -> None:
        """``EndThreadSpanEvent``."""
        self.pod("EndThreadSpanEvent", ticks, thread_span_desc=desc)

    def begin_thread_named_span(self, location: SpanLocation, name: str, *, ticks: int) -> None:
        """``BeginThreadNamedSpanEvent``: the span name is a dynamic (interned) string."""
        self.pod("BeginThreadNamedSpanEvent", ticks, thread_span_location=location, name=name)

    def end_thread_named_span(self, location: SpanLocation, name: str, *, ticks: int) -> None:
        """``EndThreadNamedSpanEvent``."""
        self.pod("EndThreadNamedSpanEvent", ticks, thread_span_location=location, name=name)

    def begin_async_span(
        self, desc: SpanMetadata, span_id: int, parent_span_id: int, *, depth: int, ticks: int
    ) -> None:
        """``BeginAsyncSpanEvent``."""
        self.pod(
            "BeginAsyncSpanEvent", ticks, span_desc=desc, span_id=span_id, parent_span_id=parent_span_id, depth=depth
        )

    def end_async_span(self, desc: SpanMetadata, span_id: int, parent_span_id: int, *, depth: int, ticks: int) -> None:
        """``EndAsyncSpanEvent``."""
        self.pod(
            "EndAsyncSpanEvent", ticks, span_desc=desc, span_id=span_id, parent_span_id=parent_span_id, depth=depth
        )

    def begin_async_named_span(
        self, location: SpanLocation, name: str, span_id: int, parent_span_id: int, *, depth: int, ticks: int
    ) -> None:
        """``BeginAsyncNamedSpanEvent``."""
        self.pod(
            "BeginAsyncNamedSpanEvent",
            ticks,
            span_location=location,
            name=name,
            span_id=span_id,
            parent_span_id=parent_span_id,
            depth=depth,
        )

    def end_async_named_span(
        self, location: SpanLocation, name: str, span_id: int, parent_span_id: int, *, depth: int, ticks: int
    ) -> None:
        """``EndAsyncNamedSpanEvent``."""
        self.pod(
            "EndAsyncNamedSpanEvent",
            ticks,
            span_location=location,
            name=name,
            span_id=span_id,
            parent_span_id=parent_span_id,
            depth=depth,
        )
