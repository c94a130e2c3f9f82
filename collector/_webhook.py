"""The generic webhook: an HTTP request described by ``X-Micromegas-*`` headers → one OTLP log record.

Any producer that can set headers (GitLab, GitHub, a SaaS) posts to ``/ingestion/webhook``:
``X-Micromegas-Service-Name`` → ``service.name``, ``X-Micromegas-Service-Namespace`` →
``service.namespace`` (resource attributes; absent or non-ASCII headers are left out),
``X-Micromegas-Target`` → the scope name (the ``target`` of ``log_entries``). The body, verbatim
(invalid UTF-8 replaced by U+FFFD), is the record's body, at severity Info. The record's times
stay 0 (readers use the block's arrival time), so a retried delivery encodes to the same bytes;
every request header, canonicalised, is hashed into the block id as Micromegas does, so two
deliveries of the same body that differ in some header (a delivery id) are both kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO, LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = [
    "HEADER_SERVICE_NAME",
    "HEADER_SERVICE_NAMESPACE",
    "HEADER_TARGET",
    "canonical_headers",
    "header_text",
    "webhook_request",
]

HEADER_SERVICE_NAME = "X-Micromegas-Service-Name"
HEADER_SERVICE_NAMESPACE = "X-Micromegas-Service-Namespace"
HEADER_TARGET = "X-Micromegas-Target"


def header_text(raw_headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The first value of header ``name`` when it is visible ASCII (or tab), else None.

    >>> header_text([(b"X-A", b"one"), (b"x-a", b"two")], "x-a")
    'one'
    >>> header_text([(b"X-A", "é".encode())], "X-A") is None
    True
    """
    wanted = name.lower().encode()
    for key, value in raw_headers:
        if key.lower() == wanted:
            if all(0x20 <= b < 0x7F or b == 0x09 for b in value):
                return value.decode("ascii")
            return None
    return None


def canonical_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    r"""Every header as ``name\0value\0``, names lower-cased, sorted by (name, value).

    Independent of the order headers arrive in.

    >>> canonical_headers([(b"X-B", b"2"), (b"Host", b"h")])
    b'host\x00h\x00x-b\x002\x00'
    """
    pairs = sorted((key.lower(), value) for key, value in raw_headers)
    return b"".join(key + b"\0" + value + b"\0" for key, value in pairs)


def webhook_request(
    service_name: str | None, service_namespace: str | None, target: str, body: bytes
) -> ExportLogsServiceRequest:
    """One resource, one scope named ``target``, one Info record whose body is ``body`` as text."""
    attributes = [
        KeyValue(key=key, value=AnyValue(string_value=value))
        for key, value in (("service.name", service_name), ("service.namespace", service_namespace))
        if value is not None
    ]
    record = LogRecord(
        severity_number=SEVERITY_NUMBER_INFO,
        body=AnyValue(string_value=body.decode("utf-8", errors="replace")),
    )
    scope = ScopeLogs(scope=InstrumentationScope(name=target), log_records=[record])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=Resource(attributes=attributes), scope_logs=[scope])]
    )
