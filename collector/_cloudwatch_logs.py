"""CloudWatch Logs subscription-filter records → an OTLP logs request.

Each Firehose record is gzip-compressed JSON::

    {"messageType": "DATA_MESSAGE" | "CONTROL_MESSAGE", "owner": "123456789012",
     "logGroup": "/ecs/app", "logStream": "task/1", "subscriptionFilters": ["f"],
     "logEvents": [{"id": "…", "timestamp": <ms>, "message": "…"}]}

``CONTROL_MESSAGE`` records (CloudWatch checking the destination) and data messages without
events are skipped. A data message becomes one OTLP resource, exactly as Micromegas builds it (so
both ingesters derive the same ids): ``service.name`` = log group, ``service.instance.id`` = log
stream, ``cloud.account.id`` = owner, ``aws.log.group.name``, ``aws.log.stream.name``; one log
record per event with its time (ms → ns), the message verbatim as the body, severity unset (read
as Info) and the attribute ``aws.log.event.id``.

The decompressed size of all records together is bounded by the route's request limit (413).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ._exceptions import OtlpInvalidRequestError, OtlpRequestTooLargeError
from ._otlp_codec import decompress

__all__ = [
    "CONTROL_MESSAGE",
    "DATA_MESSAGE",
    "CloudWatchLogEvent",
    "CloudWatchLogsMessage",
    "decode_logs_record",
    "logs_request",
]

DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"
_NS_PER_MS = 1_000_000
_U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class CloudWatchLogEvent:
    """One ``logEvents`` item: its id, time in Unix milliseconds and message."""

    id: str
    timestamp_ms: int
    message: str


@dataclass(frozen=True, slots=True)
class CloudWatchLogsMessage:
    """A decoded subscription-filter message."""

    message_type: str
    owner: str
    log_group: str
    log_stream: str
    events: tuple[CloudWatchLogEvent, ...]


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        msg = f"{where}: '{key}' must be a string"
        raise OtlpInvalidRequestError(msg)
    return value


def _event(item: Any, where: str) -> CloudWatchLogEvent:
    if not isinstance(item, dict):
        msg = f"{where} must be an object with 'id', 'timestamp' and 'message'"
        raise OtlpInvalidRequestError(msg)
    timestamp = item.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        msg = f"{where}: 'timestamp' must be a non-negative integer (Unix milliseconds)"
        raise OtlpInvalidRequestError(msg)
    return CloudWatchLogEvent(_text(item, "id", where), timestamp, _text(item, "message", where))


def decode_logs_record(raw: bytes, index: int, budget: list[int]) -> CloudWatchLogsMessage | None:
    """Gunzip and parse one record; None for a control message or a data message without events.

    Args:
        raw: the record's bytes (base64 already undone).
        index: its place in the request, for error messages.
        budget: ``[bytes left]`` for the decompressed records of this request, decremented here.

    Raises:
        OtlpInvalidRequestError: not gzip, not JSON, or not the subscription-filter shape.
        OtlpRequestTooLargeError: the decompressed records exceed the budget.
    """
    where = f"record[{index}]"
    try:
        data = decompress(raw, "gzip", budget[0])
    except OtlpRequestTooLargeError as exc:
        msg = f"{where}: the decompressed records are larger than the request limit"
        raise OtlpRequestTooLargeError(msg) from exc
    except OtlpInvalidRequestError as exc:
        detail = exc.message.removeprefix("body is not valid gzip: ")
        msg = f"{where}: not valid gzip (CloudWatch Logs records are gzip-compressed JSON): {detail}"
        raise OtlpInvalidRequestError(msg) from exc
    budget[0] -= len(data)
    try:
        parsed: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{where}: not valid JSON after gunzip: {exc}"
        raise OtlpInvalidRequestError(msg) from exc
    if not isinstance(parsed, dict):
        msg = f"{where}: a CloudWatch Logs message must be a JSON object"
        raise OtlpInvalidRequestError(msg)
    message_type = _text(parsed, "messageType", where)
    if message_type not in (DATA_MESSAGE, CONTROL_MESSAGE):
        msg = f"{where}: unknown messageType {message_type!r} (expected {DATA_MESSAGE} or {CONTROL_MESSAGE})"
        raise OtlpInvalidRequestError(msg)
    raw_events = parsed.get("logEvents", [])
    if not isinstance(raw_events, list):
        msg = f"{where}: 'logEvents' must be a list"
        raise OtlpInvalidRequestError(msg)
    events = tuple(_event(item, f"{where} logEvents[{i}]") for i, item in enumerate(raw_events))
    if message_type == CONTROL_MESSAGE:
        return None
    message = CloudWatchLogsMessage(
        message_type=message_type,
        owner=_text(parsed, "owner", where),
        log_group=_text(parsed, "logGroup", where),
        log_stream=_text(parsed, "logStream", where),
        events=events,
    )
    return message if events else None


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource_logs(message: CloudWatchLogsMessage) -> ResourceLogs:
    records = [
        LogRecord(
            time_unix_nano=min(event.timestamp_ms * _NS_PER_MS, _U64_MAX),
            body=AnyValue(string_value=event.message),
            attributes=[_kv("aws.log.event.id", event.id)],
        )
        for event in message.events
    ]
    resource = Resource(
        attributes=[
            _kv("service.name", message.log_group),
            _kv("service.instance.id", message.log_stream),
            _kv("cloud.account.id", message.owner),
            _kv("aws.log.group.name", message.log_group),
            _kv("aws.log.stream.name", message.log_stream),
        ]
    )
    return ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])


def logs_request(messages: list[CloudWatchLogsMessage]) -> ExportLogsServiceRequest:
    """One OTLP logs request with a resource per data message (one block each when stored)."""
    return ExportLogsServiceRequest(resource_logs=[_resource_logs(m) for m in messages])
