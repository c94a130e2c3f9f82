"""OTLP blocks as the views read them: payloads, attribute text, ids, property sets.

A block of an ``otlp/v1/{logs,metrics,traces}`` stream holds one ``ResourceLogs`` /
``ResourceMetrics`` / ``ResourceSpans`` message (``micromegas-wire.md`` §9.5), parsed here with
the C (upb) protobuf runtime. The per-record Python work left is the unavoidable part — reading
fields of the parsed messages — and is kept small:

* the payloads are parsed as *raw variants* of the OTLP messages (``RAW_RESOURCE_SPANS``, …):
  the same wire format with every ``attributes`` field, and a span's ``status``, ``events`` and
  ``links``, declared as ``bytes``. Reading an attribute list then costs one bytes object per
  attribute instead of three message wrappers, and the raw bytes are dictionary keys: each
  distinct attribute, attribute list and status is decoded once per partition (most repeat:
  routes, methods, code locations), which makes attributes about five times cheaper than walking messages;
* one list comprehension per field gathers numbers and ids into numpy/Arrow columns;
* property sets (attributes as ``key → text``) are interned by value, each distinct set encoded
  as JSONB once.

Attribute values become text (``otlp.md`` §10.5): strings as-is, ints in decimal, bools
``true``/``false``, doubles as Rust's ``Display`` prints them (as the process properties do),
bytes in base64, arrays and key-value lists as compact JSON.

The item filters of the OTLP receivers (``sirius.otel_bridge`` ``span_is_valid``,
``log_record_is_valid``, data points with a zero time) are applied here as vectorised checks
over the id lengths and times; the tests hold the two definitions together.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ..tracing.transit import WireFormatError, payload_from_cbor
from ._block_source import SourceBatch
from ._property_jsonb import PropertyDictionary

__all__ = [
    "OTLP_LOGS_FORMAT",
    "OTLP_METRICS_FORMAT",
    "OTLP_TRACES_FORMAT",
    "RAW_RESOURCE_LOGS",
    "RAW_RESOURCE_METRICS",
    "RAW_RESOURCE_SPANS",
    "Items",
    "PropertySets",
    "any_value_json",
    "any_value_text",
    "attribute_items",
    "encode_string_map",
    "fixed_binary",
    "parse_resources",
    "scope_items",
    "unix_ns",
]

_log = logging.getLogger(__name__)

OTLP_LOGS_FORMAT = "otlp/v1/logs"
"""``streams.format`` of OTLP log blocks (``sirius.otel_bridge.LOGS.format``)."""
OTLP_METRICS_FORMAT = "otlp/v1/metrics"
"""``streams.format`` of OTLP metric blocks."""
OTLP_TRACES_FORMAT = "otlp/v1/traces"
"""``streams.format`` of OTLP span blocks."""

Items = tuple[tuple[str, str], ...]
"""A property set as ``(key, text)`` pairs; later pairs override earlier ones with the same key."""

M = TypeVar("M", bound=Message)

_OBJECT = 0x40000000
_STRING = 0x10000000
_MAX_ENTRY = 0x0FFFFFFF


def _raw_variants() -> dict[str, type[Message]]:
    """``Resource{Spans,Logs,Metrics}`` whose attribute lists (and span status/events/links) are ``bytes``.

    Built from the installed OTLP descriptors: each file is copied under the package
    ``sirius.raw.<package>``, its ``attributes`` fields (repeated ``KeyValue``) and the span's
    ``status``, ``events`` and ``links`` retyped as ``bytes`` (same field numbers, same wire
    format), every other field kept as it is.
    """
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    raw_fields = {"Span": {"status", "events", "links"}}
    classes: dict[str, type[Message]] = {}
    for module, resource in (
        (trace_pb2, "ResourceSpans"),
        (logs_pb2, "ResourceLogs"),
        (metrics_pb2, "ResourceMetrics"),
    ):
        file = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        old = f".{file.package}."
        file.package = f"sirius.raw.{file.package}"
        file.name = f"sirius/raw/{file.name}"
        new = f".{file.package}."
        pending = list(file.message_type)
        while pending:
            message = pending.pop()
            pending.extend(message.nested_type)
            for f in message.field:
                keyvalue = f.name == "attributes" and f.type_name.endswith(".KeyValue")
                if keyvalue or f.name in raw_fields.get(message.name, ()):
                    f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    f.ClearField("type_name")
                elif f.type_name.startswith(old):
                    f.type_name = new + f.type_name[len(old) :]
        pool.Add(file)
        classes[resource] = message_factory.GetMessageClass(pool.FindMessageTypeByName(file.package + "." + resource))
    return classes


_RAW = _raw_variants()
RAW_RESOURCE_SPANS: type[Message] = _RAW["ResourceSpans"]
"""``ResourceSpans`` with raw ``attributes``, ``status``, ``events``, ``links`` of spans (bytes)."""
RAW_RESOURCE_LOGS: type[Message] = _RAW["ResourceLogs"]
"""``ResourceLogs`` with raw log record ``attributes`` (bytes)."""
RAW_RESOURCE_METRICS: type[Message] = _RAW["ResourceMetrics"]
"""``ResourceMetrics`` with raw data point ``attributes`` (bytes)."""


def parse_resources(batch: SourceBatch, message_type: type[M]) -> list[M | None]:
    """The resource message of every block of ``batch`` (None for a block that does not parse).

    The ingestion services check OTLP payloads before storing them, so a corrupt one is a
    damaged object: it is skipped with a warning rather than making the instance unqueryable.
    """
    out: list[M | None] = []
    for block, payload in zip(batch.blocks, batch.payloads, strict=True):
        try:
            out.append(message_type.FromString(payload_from_cbor(payload).objects))
        except (WireFormatError, DecodeError, RecursionError) as exc:
            _log.warning("block %s: not a %s payload, skipped: %s", block.block_id, message_type.__name__, exc)
            out.append(None)
    return out


def double_text(value: float) -> str:
    """A double as Rust's ``Display`` for ``f64`` prints it (shortest round trip, no exponent).

    >>> [double_text(v) for v in (1.0, 0.25, 1e21, float("-inf"))]
    ['1', '0.25', '1000000000000000000000', '-inf']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def any_value_json(value: AnyValue) -> Any:  # noqa: PLR0911 - one arm per AnyValue kind
    """An ``AnyValue`` as a JSON-ready Python value (bytes in base64; None when unset)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else double_text(number)
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [any_value_json(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_json(kv.value) for kv in value.kvlist_value.values}
    return None


def any_value_text(value: AnyValue) -> str:  # noqa: PLR0911 - one arm per AnyValue kind
    """An ``AnyValue`` as property text (see the module docstring); ``""`` when unset."""
    text = value.string_value
    if text:
        return text
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return double_text(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind in ("array_value", "kvlist_value"):
        return json.dumps(any_value_json(value), separators=(",", ":"), ensure_ascii=False)
    return ""


def attribute_items(attributes: Iterable[KeyValue], prefix: str = "") -> Items:
    """``(prefix + key, text)`` of each attribute, in order."""
    if prefix:
        return tuple([(prefix + kv.key, any_value_text(kv.value)) for kv in attributes])
    return tuple([(kv.key, any_value_text(kv.value)) for kv in attributes])


def scope_items(scope: InstrumentationScope) -> Items:
    """``otel.scope.name``, ``otel.scope.version`` (when set) and ``otel.scope.attr.<k>`` properties."""
    items: list[tuple[str, str]] = []
    if scope.name:
        items.append(("otel.scope.name", scope.name))
    if scope.version:
        items.append(("otel.scope.version", scope.version))
    return (*items, *attribute_items(scope.attributes, "otel.scope.attr."))


def encode_string_map(items: Iterable[tuple[str, str]]) -> bytes:
    """JSONB object of ``key → text`` with sorted keys (the last value of a repeated key wins).

    Same bytes as ``encode_properties`` (``_property_jsonb``), with one ``struct.pack`` for the
    header and entries.
    """
    pairs = sorted(dict(items).items())
    keys = [k.encode() for k, _ in pairs]
    values = [v.encode() for _, v in pairs]
    lengths = [len(b) for b in keys] + [len(b) for b in values]
    if lengths and max(lengths) > _MAX_ENTRY:
        msg = "property too long for JSONB"
        raise ValueError(msg)
    head = struct.pack(f">{1 + len(lengths)}I", _OBJECT | len(pairs), *[_STRING | n for n in lengths])
    return head + b"".join(keys) + b"".join(values)


class PropertySets:
    """Interns property sets of one partition into a ``Dictionary(Int32, Binary)`` column.

    A set is looked up by its ``Items`` value first, so records sharing attributes (the common
    case: a few routes, levels, code locations) are encoded once; raw attribute lists (bytes
    of the raw message variants) are decoded once per distinct attribute and per distinct list.
    """

    __slots__ = ("_attributes", "_cache", "_lists", "dictionary")

    def __init__(self) -> None:
        self.dictionary = PropertyDictionary()
        self._cache: dict[Items, int] = {(): 0}
        self._attributes: dict[bytes, tuple[str, str]] = {}
        self._lists: dict[tuple[Any, ...], int] = {}

    def index(self, items: Items) -> int:
        """The dictionary index of the set ``items``."""
        found = self._cache.get(items)
        if found is None:
            found = self._cache[items] = self.dictionary.intern_encoded(encode_string_map(items))
        return found

    def raw_items(self, raw: Iterable[bytes]) -> Items:
        """``(key, text)`` of raw ``KeyValue`` messages, each distinct one decoded once."""
        known = self._attributes
        out: list[tuple[str, str]] = []
        for data in raw:
            item = known.get(data)
            if item is None:
                try:
                    kv = KeyValue.FromString(data)
                except DecodeError:  # the receivers parse whole resources first: not expected
                    continue
                item = known[data] = (kv.key, any_value_text(kv.value))
            out.append(item)
        return tuple(out)

    def raw_index(self, raw: Sequence[bytes], context: Items = (), context_key: object = None) -> int:
        """The index of raw attributes followed by ``context`` (identified by ``context_key``)."""
        key = (tuple(raw), context_key)
        found = self._lists.get(key)
        if found is None:
            found = self._lists[key] = self.index((*self.raw_items(key[0]), *context))
        return found

    def column(self, indices: npt.ArrayLike) -> pa.DictionaryArray:
        """The ``properties`` column of rows with these set indices."""
        return self.dictionary.column(np.asarray(indices, dtype=np.int32))


def unix_ns(values: Sequence[int] | npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """OTLP ``fixed64`` times as int64 Unix ns (values past 2^63 wrap, as Rust's ``as i64``)."""
    return np.asarray(values, dtype=np.uint64).view(np.int64)


def fixed_binary(values: Sequence[bytes], width: int, present: npt.NDArray[np.bool_] | None = None) -> pa.Array:
    """``FixedSizeBinary(width)`` column of ids; rows where ``present`` is False are null.

    Args:
        values: one id per row; every present one is exactly ``width`` bytes (absent ones
            are empty).
        width: the id size (16 for trace ids, 8 for span ids).
        present: which rows hold an id (None: all).
    """
    n = len(values)
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    if present is None:
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(data.tobytes())])
    full = np.zeros((n, width), dtype=np.uint8)
    full[present] = data.reshape(-1, width)
    validity = pa.array(present, pa.bool_()).buffers()[1]
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [validity, pa.py_buffer(full.tobytes())], null_count=int(n - present.sum())
    )
