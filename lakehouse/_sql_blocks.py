"""One block seen from SQL: ``get_payload`` (its raw bytes) and ``parse_block`` (its events).

* ``get_payload(process_id, stream_id, block_id) → Binary``: the stored payload object
  (``blobs/{process_id}/{stream_id}/{block_id}``), as the ingestion service wrote it;
* ``parse_block(block_id)``: one row per object of the block, ``object_index Int64`` (the
  block's ``object_offset`` plus the object's position), ``type_name Utf8`` and ``value``
  (JSONB object of the event's members with ``__type``; referenced records, such as a log
  call's ``desc``, are objects with their own ``__type``; byte members become
  ``"<binary N bytes>"``; objects of a type this reader skips carry only ``__type``). Transit blocks give their events;
  OTLP blocks give one ``otlp.LogRecord`` / ``otlp.Span`` / ``otlp.*DataPoint`` per leaf, its
  OTLP/JSON fields plus ``__attributes`` and ``__resource`` (key → native JSON value: strings,
  numbers, bools, base64 bytes, lists, objects), ``__scope`` (``otel.scope.name``,
  ``otel.scope.version``, ``otel.scope.attr.*``, ``otel.scope.schema_url``) and, for data
  points, ``__metric`` (name, unit, description, ``otel.metric.kind``, temporality, …).

Block metadata comes from PostgreSQL (the block's stream holds the transit layouts and format),
so a block is parseable as soon as it is ingested. An unknown or malformed block id is an error.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ..tracing.transit import WireFormatError, decode_udts, payload_from_cbor
from ._block_source import block_object_key
from ._exceptions import CorruptBlockError, ObjectNotFoundError
from ._pool import pg_errors
from ._sql_jsonb import encode_jsonb
from ._transit_reader import POSITION, DecodedBlock, decode_block

if TYPE_CHECKING:
    from ._audience_scope import SessionAudience
    from ._lakehouse import Lakehouse

__all__ = ["PARSE_BLOCK_SCHEMA", "PARSE_BLOCK_TYPE", "PARSE_BLOCK_UDF", "block_objects", "fetch_payload", "parse_block"]

PARSE_BLOCK_SCHEMA = pa.schema(
    [("object_index", pa.int64(), False), ("type_name", pa.utf8(), False), ("value", pa.binary(), False)]
)
PARSE_BLOCK_TYPE = pa.list_(pa.struct(list(PARSE_BLOCK_SCHEMA)))
"""The rows of ``parse_block`` as one list value (how the internal scalar hands them over)."""
PARSE_BLOCK_UDF = "__sirius_parse_block"
"""Scalar behind the ``parse_block`` table function: a block's rows as one list value."""


_POINT_TYPES = {
    "gauge": "otlp.NumberDataPoint",
    "sum": "otlp.NumberDataPoint",
    "histogram": "otlp.HistogramDataPoint",
    "exponential_histogram": "otlp.ExponentialHistogramDataPoint",
    "summary": "otlp.SummaryDataPoint",
}


def _uuid(value: str, function: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        msg = f"{function}: '{value}' is not a valid {what}"
        raise ValueError(msg) from None


async def fetch_payload(
    lake: Lakehouse, process_id: str, stream_id: str, block_id: str, audience: SessionAudience | None = None
) -> bytes:
    """The stored payload of a block.

    ``audience`` restricts the caller to its audiences' processes: another audience's block is
    answered as a missing one (the payload's key holds its process id, so no other is reachable).

    Raises:
        ValueError: an id is not a UUID, or no payload is stored under them (that it may read).
    """
    process = _uuid(process_id, "get_payload", "process id")
    key = block_object_key(
        process,
        _uuid(stream_id, "get_payload", "stream id"),
        _uuid(block_id, "get_payload", "block id"),
    )
    missing = f"get_payload: no payload for block {block_id} of stream {stream_id}, process {process_id}"
    if audience is not None and not audience.sees_process(process):
        raise ValueError(missing)
    try:
        return await lake.store.get(key)
    except ObjectNotFoundError:
        raise ValueError(missing) from None


async def parse_block(lake: Lakehouse, block_id: str, audience: SessionAudience | None = None) -> pa.Table:
    """The objects of block ``block_id`` (rows of :data:`PARSE_BLOCK_SCHEMA`).

    ``audience`` restricts the caller to its audiences' processes: another audience's block is
    answered as a missing one.

    Raises:
        ValueError: not a UUID, no such block, or its payload cannot be decoded.
    """
    ident = _uuid(block_id, "parse_block", "block id")
    with pg_errors("reading a block"):
        row = await lake.pool.fetchrow(
            "SELECT b.process_id, b.stream_id, b.object_offset, s.dependencies_metadata, s.objects_metadata,"
            " s.format FROM blocks b JOIN streams s ON s.stream_id = b.stream_id WHERE b.block_id = $1",
            ident,
        )
    if row is None or (audience is not None and not audience.sees_process(row["process_id"])):
        msg = f"parse_block: block '{block_id}' not found"
        raise ValueError(msg)
    try:
        payload = await lake.store.get(block_object_key(row["process_id"], row["stream_id"], ident))
    except ObjectNotFoundError:
        msg = f"parse_block: block '{block_id}' has no stored payload"
        raise ValueError(msg) from None
    try:
        return block_objects(
            payload,
            object_offset=row["object_offset"] or 0,
            stream_format=row["format"] or "",
            dependencies_metadata=bytes(row["dependencies_metadata"] or b""),
            objects_metadata=bytes(row["objects_metadata"] or b""),
        )
    except (WireFormatError, CorruptBlockError, DecodeError) as exc:
        msg = f"parse_block: block '{block_id}' cannot be decoded: {exc}"
        raise ValueError(msg) from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<binary {len(bytes(value))} bytes>"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def block_objects(
    payload: bytes,
    *,
    object_offset: int,
    stream_format: str,
    dependencies_metadata: bytes,
    objects_metadata: bytes,
) -> pa.Table:
    """Decode one stored payload into ``parse_block`` rows.

    Raises:
        WireFormatError, CorruptBlockError, DecodeError: the payload does not decode.
    """
    decoded_payload = payload_from_cbor(payload)
    if stream_format.startswith("otlp/"):
        objects = _otlp_objects(stream_format, decoded_payload.objects)
    else:
        block = decode_block(decode_udts(dependencies_metadata), decode_udts(objects_metadata), decoded_payload)
        objects = _transit_objects(block)
    return pa.table(
        {
            "object_index": pa.array(range(object_offset, object_offset + len(objects)), pa.int64()),
            "type_name": pa.array([t for t, _ in objects], pa.utf8()),
            "value": pa.array([encode_jsonb(v) for _, v in objects], pa.binary()),
        },
        schema=PARSE_BLOCK_SCHEMA,
    )


def _transit_objects(block: DecodedBlock) -> list[tuple[str, dict[str, Any]]]:
    """The block's events in queue order; references resolved, records with their ``__type``."""
    deps = block.dependencies

    def resolve(ident: Any) -> Any:
        value = deps.value(ident)
        if isinstance(value, dict) and ident in deps.records:
            return {**_jsonable(value), "__type": deps.kinds[ident]}
        return _jsonable(value)

    positioned: list[tuple[int, str, dict[str, Any]]] = []
    for type_name, table in block.tables.items():
        refs = set(block.reference_columns.get(type_name, ()))
        for row in table.to_pylist():
            position = row.pop(POSITION)
            event = {key: resolve(v) if key in refs else _jsonable(v) for key, v in row.items()}
            positioned.append((position, type_name, {**event, "__type": type_name}))
    for type_name, positions in block.skipped.items():
        positioned.extend((int(p), type_name, {"__type": type_name}) for p in positions)
    positioned.sort(key=lambda item: item[0])
    return [(type_name, event) for _, type_name, event in positioned]


def _dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=False)


def _any_value(value: AnyValue) -> Any:
    """An attribute value as native JSON: strings, numbers, bools, base64 bytes, lists, objects."""
    kind = value.WhichOneof("value")
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, kind)
    return None


def _attributes(items: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) if kv.HasField("value") else None for kv in items}


def _scope(scope: InstrumentationScope, schema_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if scope.name:
        out["otel.scope.name"] = scope.name
    if scope.version:
        out["otel.scope.version"] = scope.version
    for kv in scope.attributes:
        if kv.HasField("value"):
            out[f"otel.scope.attr.{kv.key}"] = _any_value(kv.value)
    if schema_url:
        out["otel.scope.schema_url"] = schema_url
    return out


def _leaf(
    type_name: str, leaf: Any, resource: dict[str, Any], scope: dict[str, Any], metric: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    value = _dict(leaf)
    value.update(
        {"__type": type_name, "__attributes": _attributes(leaf.attributes), "__resource": resource, "__scope": scope}
    )
    if metric:
        value["__metric"] = metric
    return type_name, value


def _metric_info(metric: Any, field: str) -> dict[str, Any]:
    info: dict[str, Any] = {"name": metric.name, "unit": metric.unit, "description": metric.description}
    if len(metric.metadata):
        info["otel.metric.metadata"] = _attributes(metric.metadata)
    info["otel.metric.kind"] = field
    data = getattr(metric, field)
    if field in ("sum", "histogram", "exponential_histogram"):
        info["otel.metric.aggregation_temporality"] = int(data.aggregation_temporality)
    if field == "sum":
        info["otel.metric.is_monotonic"] = bool(data.is_monotonic)
    return info


def _otlp_objects(stream_format: str, data: bytes) -> list[tuple[str, dict[str, Any]]]:
    kind = stream_format.rsplit("/", 1)[-1]
    out: list[tuple[str, dict[str, Any]]] = []
    if kind == "logs":
        logs = logs_pb2.ResourceLogs.FromString(data)
        resource = _attributes(logs.resource.attributes)
        for scope_logs in logs.scope_logs:
            scope = _scope(scope_logs.scope, scope_logs.schema_url)
            out.extend(_leaf("otlp.LogRecord", r, resource, scope) for r in scope_logs.log_records)
    elif kind == "traces":
        spans = trace_pb2.ResourceSpans.FromString(data)
        resource = _attributes(spans.resource.attributes)
        for scope_spans in spans.scope_spans:
            scope = _scope(scope_spans.scope, scope_spans.schema_url)
            out.extend(_leaf("otlp.Span", s, resource, scope) for s in scope_spans.spans)
    elif kind == "metrics":
        metrics = metrics_pb2.ResourceMetrics.FromString(data)
        resource = _attributes(metrics.resource.attributes)
        for scope_metrics in metrics.scope_metrics:
            scope = _scope(scope_metrics.scope, scope_metrics.schema_url)
            for metric in scope_metrics.metrics:
                field = metric.WhichOneof("data")
                type_name = _POINT_TYPES.get(field or "")
                if type_name is None:
                    continue  # a metric without data emits nothing
                info = _metric_info(metric, field or "")
                out.extend(_leaf(type_name, p, resource, scope, info) for p in getattr(metric, field or "").data_points)
    else:
        msg = f"no decoder for streams.format='{stream_format}'"
        raise WireFormatError(msg)
    return out
