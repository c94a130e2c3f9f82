"""``log_entries`` rows of OTLP blocks: log records, and the exception events of spans.

Log records (``otlp.md`` §10.3): ``time_unix_nano``, else ``observed_time_unix_nano``, else the
block's ``begin_time``; ``severity_number`` mapped to a Micromegas level (0 and out-of-range
numbers → Info, counted and warned once per block); the body as text (strings as-is, arrays and
maps as JSON, bytes in base64); the scope name as ``target``; properties: the attributes, then
``otel.scope.*``, ``otel.trace_id`` / ``otel.span_id`` (hex), ``otel.severity_text``,
``otel.event_name`` and ``otel.severity_number`` (the raw number, lossless). Trace and span ids
also fill the ``trace_id`` / ``span_id`` columns Sirius appends to the view, for joins with
``otel_spans``. Records with malformed ids are dropped, as the receivers report them.

Span events named ``exception`` (Sirius addition, §10.2) become rows with target
``otel.span.exception`` (``EXCEPTION_TARGET``) at level Warn (``EXCEPTION_LEVEL``, 3): message
``<exception.type>: <exception.message>``, the event's attributes (``exception.type``,
``exception.message``, ``exception.stacktrace``, …) plus the span's name and ids and the scope
(``otel.scope.*``) as properties, time of the event (the span's end when unset). They are copies
of span data: the failure itself is the span's ``ERROR`` status and, when the application logs
it, its own Error record, so a plain ``level <= 2`` counts each logged failure once; select the
copies with ``target = 'otel.span.exception'``. Span blocks without the bytes ``exception``
anywhere are not even parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .._block_source import SourceBatch
from .._otlp_payloads import (
    RAW_RESOURCE_LOGS,
    RAW_RESOURCE_SPANS,
    PropertySets,
    any_value_text,
    attribute_items,
    fixed_binary,
    parse_resources,
    scope_items,
    unix_ns,
)
from ._columns import BlockRows, dictionary_strings, timestamps

__all__ = ["EXCEPTION_LEVEL", "EXCEPTION_TARGET", "exception_log_entries", "otel_level", "otlp_log_entries"]

_log = logging.getLogger(__name__)

EXCEPTION_LEVEL = 3
"""Micromegas level of span exception events (Warn: the Error is the span's status or the app's own log)."""
EXCEPTION_TARGET = "otel.span.exception"
"""``target`` of the ``log_entries`` rows copied from span exception events."""
_INFO = 4
# SeverityNumber 0..24 → level: UNSPECIFIED → Info, TRACE* → Trace, DEBUG* → Debug, INFO* → Info,
# WARN* → Warn, ERROR* → Error, FATAL* → Fatal (rust/analytics/src/lakehouse/otel/attrs.rs).
_LEVEL_OF_SEVERITY = np.array([4] + [6] * 4 + [5] * 4 + [4] * 4 + [3] * 4 + [2] * 4 + [1] * 4, dtype=np.int32)
_EXCEPTION = b"exception"


def otel_level(severity: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Micromegas levels (1 Fatal … 6 Trace) of OTel severity numbers; Info when out of range.

    >>> otel_level([0, 1, 5, 9, 13, 17, 21, 24, 25, -1]).tolist()
    [4, 6, 5, 4, 3, 2, 1, 1, 4, 4]
    """
    numbers = np.asarray(severity, dtype=np.int64)
    known = (numbers >= 0) & (numbers < _LEVEL_OF_SEVERITY.size)
    return np.where(known, _LEVEL_OF_SEVERITY[np.where(known, numbers, 0)], _INFO).astype(np.int32)


def body_text(body: AnyValue) -> str:
    """A log body as ``msg``: strings as-is, arrays and maps as JSON, bytes in base64."""
    return any_value_text(body)


class _Rows:
    """Columns of ``log_entries`` rows gathered block after block."""

    def __init__(self) -> None:
        self.props = PropertySets()
        self.counts: list[int] = []
        self.times: list[npt.NDArray[np.int64]] = []
        self.levels: list[npt.NDArray[np.int32]] = []
        self.targets: list[str] = []
        self.msgs: list[str] = []
        self.prop_indices: list[int] = []
        self.trace_ids: list[bytes] = []
        self.span_ids: list[bytes] = []

    def table(self, batch: SourceBatch, schema: pa.Schema) -> pa.Table:
        rows = BlockRows(batch, self.counts)
        trace_ids = np.fromiter(map(len, self.trace_ids), np.int64, len(self.trace_ids)) > 0
        span_ids = np.fromiter(map(len, self.span_ids), np.int64, len(self.span_ids)) > 0
        times = np.concatenate(self.times) if self.times else np.empty(0, np.int64)
        levels = np.concatenate(self.levels) if self.levels else np.empty(0, np.int32)
        return pa.table(
            [
                *rows.context_columns(),
                timestamps(times),
                dictionary_strings(pa.array(self.targets, pa.string())),
                pa.array(levels, pa.int32()),
                pa.array(self.msgs, pa.string()),
                self.props.column(self.prop_indices),
                rows.process_properties(),
                fixed_binary(self.trace_ids, 16, trace_ids),
                fixed_binary(self.span_ids, 8, span_ids),
                rows.service_name(),
            ],
            schema=schema,
        )


def _id_lengths(ids: Sequence[bytes]) -> npt.NDArray[np.int64]:
    return np.fromiter(map(len, ids), np.int64, len(ids))


def otlp_log_entries(batch: SourceBatch, schema: pa.Schema) -> pa.Table:
    """Rows of the ``otlp/v1/logs`` blocks of ``batch``, in ``schema`` (``log_entries``)."""
    out = _Rows()
    for block, resource in zip(batch.blocks, parse_resources(batch, RAW_RESOURCE_LOGS), strict=True):
        count = 0
        out_of_range = 0
        for scope_logs in resource.scope_logs if resource is not None else ():
            records = list(scope_logs.log_records)
            trace_ids = [r.trace_id for r in records]
            span_ids = [r.span_id for r in records]
            trace_len, span_len = _id_lengths(trace_ids), _id_lengths(span_ids)
            keep = ((trace_len == 0) | (trace_len == 16)) & ((span_len == 0) | (span_len == 8))
            if not keep.all():
                picked = np.flatnonzero(keep).tolist()
                records = [records[i] for i in picked]
                trace_ids = [trace_ids[i] for i in picked]
                span_ids = [span_ids[i] for i in picked]
            if not records:
                continue
            times = unix_ns([r.time_unix_nano for r in records])
            observed = unix_ns([r.observed_time_unix_nano for r in records])
            times = np.where(times != 0, times, np.where(observed != 0, observed, block.begin_time_ns))
            severity = np.array([r.severity_number for r in records], dtype=np.int64)
            out_of_range += int(np.count_nonzero((severity < 0) | (severity > 24)))
            scope = scope_items(scope_logs.scope)
            index, attributes_of = out.props.index, out.props.raw_items
            for record, trace_id, span_id, number in zip(records, trace_ids, span_ids, severity.tolist(), strict=True):
                extra: list[tuple[str, str]] = [("otel.severity_number", str(number))]
                if trace_id:
                    extra.append(("otel.trace_id", trace_id.hex()))
                if span_id:
                    extra.append(("otel.span_id", span_id.hex()))
                if record.severity_text:
                    extra.append(("otel.severity_text", record.severity_text))
                if record.event_name:
                    extra.append(("otel.event_name", record.event_name))
                out.prop_indices.append(index((*attributes_of(record.attributes), *scope, *extra)))
                out.msgs.append(body_text(record.body))
            out.times.append(times)
            out.levels.append(otel_level(severity))
            out.targets.extend([scope_logs.scope.name] * len(records))
            out.trace_ids.extend(trace_ids)
            out.span_ids.extend(span_ids)
            count += len(records)
        if out_of_range:
            _log.warning(
                "block %s: %d log records with an unknown severity number read as Info", block.block_id, out_of_range
            )
        out.counts.append(count)
    return out.table(batch, schema)


def _maybe_exceptions(raw_events: Sequence[bytes]) -> list[bytes]:
    return [e for e in raw_events if _EXCEPTION in e]


def _exception_message(attributes: dict[str, str]) -> str:
    kind = attributes.get("exception.type", "")
    message = attributes.get("exception.message", "")
    if kind and message:
        return f"{kind}: {message}"
    return kind or message or "exception"


def _span_ok(trace_id: bytes, span_id: bytes, parent: bytes, start: int, end: int) -> bool:
    # sirius.otel_bridge.span_is_valid, on values already read.
    return len(trace_id) == 16 and len(span_id) == 8 and len(parent) in (0, 8) and start != 0 and end != 0


def exception_log_entries(batch: SourceBatch, schema: pa.Schema) -> pa.Table:
    """Rows (target ``otel.span.exception``, level Warn) for the ``exception`` events of ``otlp/v1/traces`` spans."""
    out = _Rows()
    candidates = [i for i, payload in enumerate(batch.payloads) if _EXCEPTION in payload]
    parsed: dict[int, Any] = {}
    if candidates:
        sub = batch.subset([batch.blocks[i] for i in candidates], [batch.payloads[i] for i in candidates])
        parsed = dict(zip(candidates, parse_resources(sub, RAW_RESOURCE_SPANS), strict=True))
    for index in range(len(batch.blocks)):
        resource = parsed.get(index)
        count = 0
        times: list[int] = []
        for scope_spans in resource.scope_spans if resource is not None else ():
            scope = scope_items(scope_spans.scope)
            for span in scope_spans.spans:
                events = [
                    e for e in map(Span.Event.FromString, _maybe_exceptions(span.events)) if e.name == "exception"
                ]
                if not events:
                    continue
                trace_id, span_id = span.trace_id, span.span_id
                end = span.end_time_unix_nano
                if not _span_ok(trace_id, span_id, span.parent_span_id, span.start_time_unix_nano, end):
                    continue
                ids = (
                    ("otel.trace_id", trace_id.hex()),
                    ("otel.span_id", span_id.hex()),
                    ("otel.span.name", span.name),
                )
                for event in events:
                    attributes = attribute_items(event.attributes)
                    out.msgs.append(_exception_message(dict(attributes)))
                    out.prop_indices.append(out.props.index((*attributes, *scope, *ids)))
                    times.append(event.time_unix_nano or end)
                    out.trace_ids.append(trace_id)
                    out.span_ids.append(span_id)
                    out.targets.append(EXCEPTION_TARGET)
                    count += 1
        out.times.append(unix_ns(times))
        out.levels.append(np.full(count, EXCEPTION_LEVEL, np.int32))
        out.counts.append(count)
    return out.table(batch, schema)
