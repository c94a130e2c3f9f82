"""OTLP export request → Micromegas process, stream and block (``micromegas-wire.md`` §9.4-9.5).

One block per ``ResourceLogs`` / ``ResourceMetrics`` / ``ResourceSpans``: its payload is
``{dependencies: b"", objects: <that resource, re-encoded as prost does>}`` and is decoded lazily
by the lakehouse views, so the ingest path does no per-record translation — it only walks the
records once for the block's time bounds, its object count and the items a view will drop.

Two producers use this module:

* the OTLP receivers (``process=None``): the process is derived from the resource
  (``process_id_for_resource``), its row per §9.4, block ticks are absolute Unix ns as Rust
  writes them — Rust and Sirius ingesters produce identical rows and objects;
* the in-process OTel SDK exporters (``process=<ProcessInfo>``): every resource goes to the
  running process (shared with the native tracer), streams carry the ``sirius.format`` property,
  block ticks are relative to the process's ``start_ticks`` as for native blocks, and block ids
  are salted with the process id so that two processes can never collide on identical payloads.

Items a view cannot use are counted as *rejected* (reported in ``partial_success``) but stay in
the stored payload, which must be a pure function of the request bytes: spans whose trace_id is
not 16 bytes, span_id not 8 bytes, parent_span_id neither empty nor 8 bytes, or with a zero start
or end time; log records whose trace_id / span_id are neither empty nor 16 / 8 bytes; data points
with a zero ``time_unix_nano``. ``span_is_valid`` & co. let views apply the same rules.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from ..tracing import Block, BlockPayload, ProcessInfo, StreamInfo, parse_rfc3339_ns
from ._identity import (
    SEPARATOR,
    attribute_map,
    attribute_text,
    audience_prefix,
    block_id_for_payload,
    process_id_for_resource,
    process_owner,
    stream_id_for,
)
from ._prost_encoding import encode_resource
from ._signals import LOGS, METRICS, OTLP_FORMATS, STREAM_FORMAT_PROPERTY, TRACES, Signal

__all__ = [
    "OTLP_TICKS_PER_SECOND",
    "REJECTION_REASONS",
    "OtlpBlock",
    "SplitRequest",
    "block_id_prefix",
    "log_record_is_valid",
    "process_info_for_resource",
    "resource_block",
    "span_is_valid",
    "split_request",
    "validate_otlp_block",
]

OTLP_TICKS_PER_SECOND = 1_000_000_000
"""``tsc_frequency`` of OTLP-derived processes: their ticks are Unix nanoseconds."""

_MAX_TEXT = 255  # processes text columns are VARCHAR(255); truncated by character
_U64_SIGN = 1 << 63
_SUMMARY_FAN_OUT = 4  # nb_objects counts a Summary point as its upper-bound fan-out (_count/_sum/_min/_max)

_REASON_SPAN_IDS = "spans need a 16-byte trace_id, an 8-byte span_id and an empty or 8-byte parent_span_id"
_REASON_SPAN_TIMES = "spans need non-zero start and end times"
_REASON_LOG_IDS = "log records need an empty or 16-byte trace_id and an empty or 8-byte span_id"
_REASON_POINT_TIME = "data points need a non-zero time_unix_nano"
REJECTION_REASONS = (_REASON_SPAN_IDS, _REASON_SPAN_TIMES, _REASON_LOG_IDS, _REASON_POINT_TIME)
"""The reasons of rejected items, in the order of the wire scanner's reason bits (1, 2, 4, 8)."""


@dataclass(frozen=True, slots=True)
class OtlpBlock:
    """Everything needed to store one resource: its process and stream rows and the block.

    Attributes:
        process: the process row (derived from the resource, or the running process).
        stream: the stream row; its ``format`` is ``signal.format``.
        block: the block; ``payload.objects`` is the resource's protobuf encoding.
        items: records in the resource (spans, log records, data points).
        rejected: items a view will drop (see the module docstring).
    """

    signal: Signal
    process: ProcessInfo
    stream: StreamInfo
    block: Block
    items: int
    rejected: int


@dataclass(frozen=True, slots=True)
class SplitRequest:
    """The blocks of one export request and its item counts.

    Attributes:
        blocks: one per non-empty resource, in request order.
        items: records in the whole request.
        rejected: records a view will drop.
        reasons: why they are dropped (for ``partial_success.error_message``).
    """

    blocks: tuple[OtlpBlock, ...]
    items: int
    rejected: int
    reasons: tuple[str, ...]

    @property
    def error_message(self) -> str:
        """``partial_success.error_message``: empty when nothing was rejected."""
        if not self.rejected:
            return ""
        return f"{self.rejected} of {self.items} items will not be queryable: " + "; ".join(self.reasons)


def _i64(value: int) -> int:
    # Times are fixed64 on the wire and i64 in Rust (``as i64`` wraps): keep the same value.
    return value - (1 << 64) if value >= _U64_SIGN else value


def span_is_valid(span: Span) -> bool:
    """Whether a view keeps this span (ids of the right sizes, both times set)."""
    parent = len(span.parent_span_id)
    return (
        len(span.trace_id) == 16
        and len(span.span_id) == 8
        and parent in (0, 8)
        and span.start_time_unix_nano != 0
        and span.end_time_unix_nano != 0
    )


def log_record_is_valid(record: LogRecord) -> bool:
    """Whether a view keeps this log record (ids empty or of the right sizes)."""
    return len(record.trace_id) in (0, 16) and len(record.span_id) in (0, 8)


# Per-resource statistics: (items, nb_objects, begin_ns, end_ns, rejected, reasons); begin/end are
# 0 when no record carries a usable time (the block then takes the arrival time, as Rust does).
_Stats = tuple[int, int, int, int, int, set[str]]


def _span_stats(resource: ResourceSpans) -> _Stats:
    count = rejected = 0
    begin = end = None
    reasons: set[str] = set()
    for scope in resource.scope_spans:
        for span in scope.spans:
            count += 1
            start_ns = span.start_time_unix_nano
            end_ns = span.end_time_unix_nano
            if start_ns:
                start_i = _i64(start_ns)
                begin = start_i if begin is None or start_i < begin else begin
            if end_ns:
                end_i = _i64(end_ns)
                end = end_i if end is None or end_i > end else end
            if len(span.trace_id) != 16 or len(span.span_id) != 8 or len(span.parent_span_id) not in (0, 8):
                rejected += 1
                reasons.add(_REASON_SPAN_IDS)
            elif not (start_ns and end_ns):
                rejected += 1
                reasons.add(_REASON_SPAN_TIMES)
    if begin is None or end is None:
        return count, count, 0, 0, rejected, reasons
    return count, count, begin, end, rejected, reasons


def _log_stats(resource: ResourceLogs) -> _Stats:
    count = rejected = 0
    begin = end = None
    reasons: set[str] = set()
    for scope in resource.scope_logs:
        for record in scope.log_records:
            count += 1
            t = record.time_unix_nano or record.observed_time_unix_nano
            if t:
                t = _i64(t)
                if begin is None:
                    begin = end = t
                elif t < begin:
                    begin = t
                elif end is not None and t > end:
                    end = t
            if len(record.trace_id) not in (0, 16) or len(record.span_id) not in (0, 8):
                rejected += 1
                reasons.add(_REASON_LOG_IDS)
    if begin is None or end is None:
        return count, count, 0, 0, rejected, reasons
    return count, count, begin, end, rejected, reasons


def _metric_stats(resource: ResourceMetrics) -> _Stats:
    count = objects = rejected = 0
    begin = end = None
    reasons: set[str] = set()
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            kind = metric.WhichOneof("data")
            if kind is None:
                continue
            points: Any = getattr(metric, kind).data_points
            weight = _SUMMARY_FAN_OUT if kind == "summary" else 1
            for point in points:
                count += 1
                objects += weight
                t = point.time_unix_nano
                if t:
                    t = _i64(t)
                    if begin is None:
                        begin = end = t
                    elif t < begin:
                        begin = t
                    elif end is not None and t > end:
                        end = t
                else:
                    rejected += 1
                    reasons.add(_REASON_POINT_TIME)
    if begin is None or end is None:
        return count, objects, 0, 0, rejected, reasons
    return count, objects, begin, end, rejected, reasons


_STATS: Mapping[str, Callable[[Any], _Stats]] = {
    TRACES.name: _span_stats,
    LOGS.name: _log_stats,
    METRICS.name: _metric_stats,
}


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT]


def process_info_for_resource(
    attributes: Sequence[KeyValue],
    process_id: uuid.UUID,
    fallback_start_ns: int,
    attrs: Mapping[str, AnyValue | None] | None = None,
) -> ProcessInfo:
    """The ``processes`` row of an OTLP resource (``micromegas-wire.md`` §9.4).

    Args:
        attributes: the resource's attributes.
        process_id: its derived id.
        fallback_start_ns: start time when ``process.creation.time`` / ``process.start_time``
            is absent or not RFC 3339 (the block's begin time).
        attrs: ``attribute_map(attributes)`` when the caller already has it.
    """
    attrs = attribute_map(attributes) if attrs is None else attrs
    name = attribute_text(attrs.get("service.name"))
    namespace = attribute_text(attrs.get("service.namespace"))
    owner = _truncate(process_owner(attrs))
    start_ns = fallback_start_ns
    start_text = attribute_text(attrs.get("process.creation.time")) or attribute_text(attrs.get("process.start_time"))
    if start_text:
        try:
            start_ns = parse_rfc3339_ns(start_text)
        except ValueError:
            start_ns = fallback_start_ns
    return ProcessInfo(
        process_id=process_id,
        exe=_truncate(f"{namespace}/{name}" if namespace else name),
        username=owner,
        realname=owner,
        computer=_truncate(attribute_text(attrs.get("host.name"))),
        distro=_truncate(attribute_text(attrs.get("os.description"))),
        cpu_brand=_truncate(attribute_text(attrs.get("host.cpu.model.name"))),
        tsc_frequency=OTLP_TICKS_PER_SECOND,
        start_time_ns=start_ns,
        start_ticks=start_ns,
        parent_process_id=None,
        properties={
            f"otel.resource.{kv.key}": attribute_text(kv.value if kv.HasField("value") else None) for kv in attributes
        },
    )


def _relative_ticks(process: ProcessInfo, time_ns: int) -> int:
    # Native processes: block ticks are relative to start_ticks, at the process's frequency.
    delta_ns = time_ns - process.start_time_ns
    if process.tsc_frequency <= 0 or process.tsc_frequency == OTLP_TICKS_PER_SECOND:
        return delta_ns
    return round(delta_ns * process.tsc_frequency / OTLP_TICKS_PER_SECOND)


def block_id_prefix(audience: str | None, extra_hash_input: bytes, process: ProcessInfo | None = None) -> bytes:
    """What ``split_request`` hashes before each payload for the block id (``micromegas-wire.md`` §9.3)."""
    prefix = audience_prefix(audience) + extra_hash_input
    if process is not None:
        prefix += f"process{SEPARATOR}{process.process_id}{SEPARATOR}".encode()
    return prefix


def resource_block(
    signal: Signal,
    payload: bytes | memoryview,
    attributes: Sequence[KeyValue],
    *,
    stats: tuple[int, int, int, int, int],
    prefix: bytes,
    audience: str | None,
    process: ProcessInfo | None = None,
    derived: ProcessInfo | None = None,
) -> OtlpBlock:
    """The block of one non-empty resource, its process and its stream.

    Args:
        signal: the request's signal.
        payload: the resource's prost-order encoding (stored as is, hashed for the block id).
        attributes: the resource's attributes (its process identity when ``process`` is None).
        stats: (items, nb_objects, begin_ns, end_ns, rejected); begin/end already defaulted to
            the arrival time when no record carries one.
        prefix: ``block_id_prefix(...)`` of the request.
        audience: the bound write audience, or None.
        process: the running process for in-process exporters; None derives one from ``attributes``.
        derived: the process derived from ``attributes`` when the caller already has it
            (``process_info_for_resource`` with this block's begin time as fallback start).
    """
    count, nb_objects, begin_ns, end_ns, bad = stats
    if process is None:
        if derived is None:
            attrs = attribute_map(attributes)
            process_id = process_id_for_resource(attrs, audience)
            derived = process_info_for_resource(attributes, process_id, begin_ns, attrs)
        info = derived
        begin_ticks, end_ticks = begin_ns, end_ns  # absolute Unix ns, as the Rust ingester writes
        properties: dict[str, str] = {}
    else:
        info = process
        begin_ticks, end_ticks = _relative_ticks(info, begin_ns), _relative_ticks(info, end_ns)
        properties = {STREAM_FORMAT_PROPERTY: signal.format}
    stream_id = stream_id_for(info.process_id, signal.name)
    stream = StreamInfo(
        process_id=info.process_id,
        stream_id=stream_id,
        dependencies_metadata=(),
        objects_metadata=(),
        tags=(signal.tag,),
        properties=properties,
    )
    block = Block(
        block_id=block_id_for_payload(payload, prefix),
        stream_id=stream_id,
        process_id=info.process_id,
        begin_time_ns=begin_ns,
        begin_ticks=begin_ticks,
        end_time_ns=end_ns,
        end_ticks=end_ticks,
        payload=BlockPayload(dependencies=b"", objects=payload),
        object_offset=0,
        nb_objects=nb_objects,
    )
    return OtlpBlock(signal, info, stream, block, count, bad)


def split_request(
    signal: Signal,
    request: Any,
    *,
    process: ProcessInfo | None = None,
    audience: str | None = None,
    clock: Callable[[], int] = time.time_ns,
    extra_hash_input: bytes = b"",
) -> SplitRequest:
    """Split an ``Export*ServiceRequest`` into one block per non-empty resource.

    Args:
        signal: ``LOGS``, ``METRICS`` or ``TRACES`` (must match ``request``'s type).
        request: the parsed request; its resources lose their unknown fields (prost drops them).
        process: the running process for in-process exporters; None derives one per resource.
        audience: a bound write audience (per-audience ids, §9.2-9.3); None for none.
        clock: wall clock in Unix ns, for blocks whose records carry no time.
        extra_hash_input: bytes hashed into every block id after the audience prefix (the
            webhook route's canonical headers, ``micromegas-wire.md`` §9.3); empty elsewhere.

    Returns:
        The blocks and the request's item counts.
    """
    stats_of = _STATS[signal.name]
    prefix = block_id_prefix(audience, extra_hash_input, process)
    blocks: list[OtlpBlock] = []
    items = rejected = 0
    reasons: set[str] = set()
    for resource in getattr(request, signal.resources_field):
        count, nb_objects, begin_ns, end_ns, bad, why = stats_of(resource)
        items += count
        rejected += bad
        reasons |= why
        if count == 0:
            continue  # a resource with no records yields no block
        if begin_ns == 0 and end_ns == 0:
            begin_ns = end_ns = clock()
        stats = (count, nb_objects, begin_ns, end_ns, bad)
        payload = encode_resource(resource)
        attributes = resource.resource.attributes
        blocks.append(
            resource_block(signal, payload, attributes, stats=stats, prefix=prefix, audience=audience, process=process)
        )
    return SplitRequest(tuple(blocks), items, rejected, tuple(sorted(reasons)))


def validate_otlp_block(block: Block, stream_format: str) -> str | None:
    """Check a block sent through ``insert_block`` to an OTLP-format stream; return the problem or None.

    The payload must be an empty dependencies queue and one well-formed resource message of the
    stream's signal (the views decode it later; a corrupt one is refused now, with a reason).
    """
    signal = OTLP_FORMATS[stream_format]
    if block.payload.dependencies:
        return f"{stream_format} blocks carry an empty dependencies queue"
    try:
        signal.resource_type.FromString(block.payload.objects)
    except (DecodeError, RecursionError) as exc:
        return f"objects is not a valid {signal.resource_type.__name__}: {exc}"
    return None
