"""``otel_spans``: one row per OTel span of ``otlp/v1/traces`` blocks, per process and global.

The schema is Micromegas's (``micromegas-query.md`` §3, column order is a contract): ids as
``FixedSizeBinary`` (``parent_span_id`` NULL at roots), start/end times and duration from the
span itself (never from block ticks), ``kind`` and ``status`` as their OTLP names,
``status_message`` NULL when empty, properties = span attributes + ``otel.scope.*``, and
``events`` / ``links`` as JSONB arrays of objects (``name``, ``time_unix_nano``,
``attributes``; ``trace_id``, ``span_id``, ``trace_state``, ``attributes``). Spans the
receivers report as rejected (ids of the wrong size, a zero time) are dropped.

Micromegas only has per-process instances (``view_instance('otel_spans', process_id)``), so a
trace crossing services needs a UNION over processes. Sirius adds a **global** instance
(daemon, update group 2000) built for lookups by ``trace_id``: every partition's rows are sorted
by ``(trace_id, start_time)`` and written in row groups of ``TRACE_ROW_GROUP_ROWS`` rows, so the
Parquet min/max statistics of ``trace_id`` let DataFusion skip all but one row group per
partition file: ``SELECT * FROM otel_spans WHERE trace_id = X'…'`` (or ``= decode('…', 'hex')``)
returns a whole trace, every service, in one query (``bench/otel_views.py`` measures it).
Sirius appends ``service_name`` (``_columns.service_name_of``) after Micromegas's columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .._block_source import SourceBatch
from .._otlp_payloads import (
    OTLP_TRACES_FORMAT,
    RAW_RESOURCE_SPANS,
    PropertySets,
    any_value_json,
    fixed_binary,
    parse_resources,
    scope_items,
    unix_ns,
)
from .._sql_jsonb import encode_jsonb
from .._time_range import NS_PER_HOUR
from .._view_set import DICT_BIN, DICT_STR, TIMESTAMP, BlockViewSet, InstanceKind, TableMaker
from ._columns import SERVICE_NAME_FIELD, BlockRows, dictionary_strings, timestamps

__all__ = ["OTEL_SPANS_SCHEMA", "TRACE_ROW_GROUP_ROWS", "OtelSpansView", "otlp_spans"]

OTEL_SPANS_SCHEMA = pa.schema(
    [
        pa.field("process_id", DICT_STR, nullable=False),
        pa.field("stream_id", DICT_STR, nullable=False),
        pa.field("block_id", DICT_STR, nullable=False),
        pa.field("insert_time", TIMESTAMP, nullable=False),
        pa.field("exe", pa.string(), nullable=False),
        pa.field("username", pa.string(), nullable=False),
        pa.field("computer", pa.string(), nullable=False),
        pa.field("process_properties", DICT_BIN, nullable=False),
        pa.field("trace_id", pa.binary(16), nullable=False),
        pa.field("span_id", pa.binary(8), nullable=False),
        pa.field("parent_span_id", pa.binary(8)),
        pa.field("start_time", TIMESTAMP, nullable=False),
        pa.field("end_time", TIMESTAMP, nullable=False),
        pa.field("duration", pa.int64(), nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("kind", DICT_STR, nullable=False),
        pa.field("status", DICT_STR, nullable=False),
        pa.field("status_message", pa.string()),
        pa.field("properties", DICT_BIN, nullable=False),
        pa.field("events", pa.binary(), nullable=False),
        pa.field("links", pa.binary(), nullable=False),
        # Sirius: the process's service (OTel service.name, else the service.name property, else exe).
        SERVICE_NAME_FIELD,
    ]
)

TRACE_ROW_GROUP_ROWS = 16 * 1024
"""Row-group size of ``otel_spans`` partitions: one row group is what a trace lookup reads per file."""

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUSES = ("UNSET", "OK", "ERROR")
_EMPTY_ARRAY = encode_jsonb([])
_SORT = [("trace_id", "ascending"), ("start_time", "ascending")]


def _names(codes: np.ndarray, names: tuple[str, ...]) -> pa.DictionaryArray:
    known = (codes >= 0) & (codes < len(names))
    indices = np.where(known, codes, 0).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(names, pa.string()))


def _events(span_events: Any) -> bytes:
    if not span_events:
        return _EMPTY_ARRAY
    events: list[dict[str, Any]] = []
    for event in map(Span.Event.FromString, span_events):
        item: dict[str, Any] = {
            "name": event.name,
            "time_unix_nano": event.time_unix_nano,
            "attributes": {kv.key: any_value_json(kv.value) for kv in event.attributes},
        }
        if event.dropped_attributes_count:
            item["dropped_attributes_count"] = event.dropped_attributes_count
        events.append(item)
    return encode_jsonb(events)


def _links(span_links: Any) -> bytes:
    if not span_links:
        return _EMPTY_ARRAY
    links: list[dict[str, Any]] = []
    for link in map(Span.Link.FromString, span_links):
        item: dict[str, Any] = {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": {kv.key: any_value_json(kv.value) for kv in link.attributes},
        }
        if link.trace_state:
            item["trace_state"] = link.trace_state
        links.append(item)
    return encode_jsonb(links)


class _Spans:
    def __init__(self) -> None:
        self.props = PropertySets()
        self.counts: list[int] = []
        self.trace_ids: list[bytes] = []
        self.span_ids: list[bytes] = []
        self.parents: list[bytes] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.names: list[str] = []
        self.kinds: list[int] = []
        self.statuses: list[int] = []
        self.messages: list[str] = []
        self.prop_indices: list[int] = []
        self.events: list[bytes] = []
        self.links: list[bytes] = []
        self._statuses: dict[bytes, tuple[int, str]] = {}

    def _status(self, raw: bytes) -> tuple[int, str]:
        found = self._statuses.get(raw)
        if found is None:
            status = Status.FromString(raw)
            found = self._statuses[raw] = (status.code, status.message)
        return found

    def scope(self, scope_spans: Any) -> int:
        spans = list(scope_spans.spans)
        trace_ids = [s.trace_id for s in spans]
        span_ids = [s.span_id for s in spans]
        parents = [s.parent_span_id for s in spans]
        starts = [s.start_time_unix_nano for s in spans]
        ends = [s.end_time_unix_nano for s in spans]
        n = len(spans)
        trace_len = np.fromiter(map(len, trace_ids), np.int64, n)
        span_len = np.fromiter(map(len, span_ids), np.int64, n)
        parent_len = np.fromiter(map(len, parents), np.int64, n)
        keep = (trace_len == 16) & (span_len == 8) & ((parent_len == 0) | (parent_len == 8))
        keep &= (np.asarray(starts, np.uint64) != 0) & (np.asarray(ends, np.uint64) != 0)
        if not keep.all():
            picked = np.flatnonzero(keep).tolist()
            spans = [spans[i] for i in picked]
            trace_ids, span_ids, parents = ([ids[i] for i in picked] for ids in (trace_ids, span_ids, parents))
            starts, ends = [starts[i] for i in picked], [ends[i] for i in picked]
        self.trace_ids += trace_ids
        self.span_ids += span_ids
        self.parents += parents
        self.starts += starts
        self.ends += ends
        scope = scope_items(scope_spans.scope)
        index = self.props.raw_index
        # one comprehension per column: the cheapest way to read a field of every message
        self.names += [s.name for s in spans]
        self.kinds += [s.kind for s in spans]
        statuses = [self._status(s.status) for s in spans]
        self.statuses += [code for code, _ in statuses]
        self.messages += [message for _, message in statuses]
        self.prop_indices += [index(s.attributes, scope, scope) for s in spans]
        self.events += [_events(s.events) for s in spans]
        self.links += [_links(s.links) for s in spans]
        return len(spans)

    def table(self, batch: SourceBatch, schema: pa.Schema) -> pa.Table:
        rows = BlockRows(batch, self.counts)
        starts, ends = unix_ns(self.starts), unix_ns(self.ends)
        has_parent = np.fromiter(map(len, self.parents), np.int64, len(self.parents)) > 0
        messages = pa.array(self.messages, pa.string())
        messages = pc.if_else(pc.equal(pc.binary_length(messages), 0), pa.scalar(None, pa.string()), messages)
        return pa.table(
            [
                rows.process_id(),
                rows.stream_id(),
                rows.block_id(),
                rows.insert_time(),
                rows.process_text("exe").dictionary_decode(),
                rows.process_text("username").dictionary_decode(),
                rows.process_text("computer").dictionary_decode(),
                rows.process_properties(),
                fixed_binary(self.trace_ids, 16),
                fixed_binary(self.span_ids, 8),
                fixed_binary(self.parents, 8, has_parent),
                timestamps(starts),
                timestamps(ends),
                pa.array(ends - starts, pa.int64()),
                dictionary_strings(pa.array(self.names, pa.string())),
                _names(np.asarray(self.kinds, np.int64), _KINDS),
                _names(np.asarray(self.statuses, np.int64), _STATUSES),
                messages,
                self.props.column(self.prop_indices),
                pa.array(self.events, pa.binary()),
                pa.array(self.links, pa.binary()),
                rows.service_name(),
            ],
            schema=schema,
        )


def otlp_spans(batch: SourceBatch, schema: pa.Schema) -> pa.Table:
    """Rows of the ``otlp/v1/traces`` blocks of ``batch``, in ``schema`` (block after block)."""
    out = _Spans()
    for resource in parse_resources(batch, RAW_RESOURCE_SPANS):
        out.counts.append(sum(out.scope(s) for s in resource.scope_spans) if resource is not None else 0)
    return out.table(batch, schema)


class OtelSpansView(BlockViewSet):
    """OTel spans; per process (JIT, as Micromegas) and global (daemon, group 2000; Sirius)."""

    name: ClassVar[str] = "otel_spans"
    schema: ClassVar[pa.Schema] = OTEL_SPANS_SCHEMA
    file_schema_hash: ClassVar[bytes] = bytes([2])  # [1] in Micromegas; [2] since service_name
    update_group: ClassVar[int | None] = 2000
    jit_instance: ClassVar[InstanceKind | None] = InstanceKind.PROCESS
    max_partition_delta_ns: ClassVar[int] = NS_PER_HOUR
    event_time_columns: ClassVar[tuple[str, str]] = ("start_time", "end_time")
    sort_order: ClassVar[tuple[str, ...]] = ("trace_id", "start_time")
    row_group_rows: ClassVar[int | None] = TRACE_ROW_GROUP_ROWS
    tag: ClassVar[str | None] = "trace"
    formats: ClassVar[tuple[str, ...]] = (OTLP_TRACES_FORMAT,)
    extra_formats: ClassVar[Mapping[str, TableMaker]] = {
        OTLP_TRACES_FORMAT: partial(otlp_spans, schema=OTEL_SPANS_SCHEMA)
    }

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Native (transit) blocks hold no OTel spans."""
        del batch
        return OTEL_SPANS_SCHEMA.empty_table()

    def transform_batch(self, batch: SourceBatch) -> pa.Table:
        """Rows of the batch, sorted by ``(trace_id, start_time)``."""
        return super().transform_batch(batch).sort_by(_SORT)

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Rows of several partitions, sorted by ``(trace_id, start_time)``."""
        return super().merge(tables).sort_by(_SORT)
