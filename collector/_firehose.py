"""Amazon Data Firehose HTTP endpoint delivery: the request envelope, the reply, record framing.

Firehose POSTs ``{"requestId": …, "timestamp": <ms>, "records": [{"data": <base64>}, …]}``
(JSON, optionally ``Content-Encoding: gzip``) with the headers ``X-Amz-Firehose-Request-Id``
and ``X-Amz-Firehose-Access-Key``; it expects ``{"requestId", "timestamp"}`` back with a 200,
and ``{"requestId", "timestamp", "errorMessage"}`` with any other status (then it retries the
same request, same ``requestId``, until its retry duration runs out). The reply's
``requestId`` is the header's, else the body's, as Micromegas answers.

CloudWatch Metric Streams in the OpenTelemetry 1.0 output format put one or more
length-delimited ``ExportMetricsServiceRequest`` messages in each record: a varint length, then
that many bytes (``split_length_delimited``).

Everything here is pure (no I/O) and raises ``OtlpInvalidRequestError`` (400) with the place
of the problem (``record[3]: …``) for malformed input.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from ._exceptions import OtlpInvalidRequestError

__all__ = [
    "HEADER_ACCESS_KEY",
    "HEADER_REQUEST_ID",
    "FirehoseEnvelope",
    "decode_envelope",
    "reply_body",
    "split_length_delimited",
]

HEADER_ACCESS_KEY = "X-Amz-Firehose-Access-Key"
"""Firehose's only credential channel (it cannot send ``Authorization``)."""
HEADER_REQUEST_ID = "X-Amz-Firehose-Request-Id"
"""The delivery's id; the same on every retry of it."""

_MAX_VARINT_BYTES = 10


@dataclass(frozen=True, slots=True)
class FirehoseEnvelope:
    """A decoded delivery request.

    Attributes:
        request_id: the body's ``requestId`` (empty when absent).
        records: each record's ``data``, base64-decoded.
    """

    request_id: str
    records: tuple[bytes, ...]


def decode_envelope(body: bytes) -> FirehoseEnvelope:
    """Parse the JSON envelope and base64-decode every record's ``data``.

    ``records`` may be absent (no records); ``requestId`` and ``timestamp`` are optional here
    (the header carries the id too).

    Raises:
        OtlpInvalidRequestError: not JSON, not the envelope's shape, or a record's data is not
            standard padded base64.
    """
    try:
        parsed: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"Firehose request body is not valid JSON: {exc}"
        raise OtlpInvalidRequestError(msg) from exc
    if not isinstance(parsed, dict):
        msg = "Firehose request body must be a JSON object with 'requestId', 'timestamp' and 'records'"
        raise OtlpInvalidRequestError(msg)
    request_id = parsed.get("requestId", "")
    if request_id is None:
        request_id = ""
    if not isinstance(request_id, str):
        msg = "Firehose 'requestId' must be a string"
        raise OtlpInvalidRequestError(msg)
    records = parsed.get("records", [])
    if not isinstance(records, list):
        msg = "Firehose 'records' must be a list of {\"data\": <base64>} objects"
        raise OtlpInvalidRequestError(msg)
    decoded: list[bytes] = []
    for index, record in enumerate(records):
        data = record.get("data") if isinstance(record, dict) else None
        if not isinstance(data, str):
            msg = f"Firehose record[{index}] must be an object with a string 'data'"
            raise OtlpInvalidRequestError(msg)
        try:
            decoded.append(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError) as exc:
            msg = f"Firehose record[{index}] data is not valid base64: {exc}"
            raise OtlpInvalidRequestError(msg) from exc
    return FirehoseEnvelope(request_id=request_id, records=tuple(decoded))


def reply_body(request_id: str, error_message: str | None = None, *, now_ms: int | None = None) -> bytes:
    """The JSON reply: ``{"requestId", "timestamp"}``, plus ``errorMessage`` on failure.

    >>> reply_body("r1", now_ms=5)
    b'{"requestId": "r1", "timestamp": 5}'
    >>> reply_body("r1", "bad", now_ms=5)
    b'{"requestId": "r1", "timestamp": 5, "errorMessage": "bad"}'
    """
    reply: dict[str, object] = {
        "requestId": request_id,
        "timestamp": time.time_ns() // 1_000_000 if now_ms is None else now_ms,
    }
    if error_message is not None:
        reply["errorMessage"] = error_message
    return json.dumps(reply).encode()


def split_length_delimited(data: bytes, where: str = "record") -> list[bytes]:
    r"""The messages of a buffer of ``varint length + message`` entries, back to back.

    An empty buffer holds no messages; a zero length is an empty message.

    >>> split_length_delimited(b"\x02ab\x00\x01c")
    [b'ab', b'', b'c']

    Raises:
        OtlpInvalidRequestError: a truncated or over-long varint, or a length past the end.
    """
    messages: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        length = shift = 0
        while True:
            if pos >= end:
                msg = f"{where} message[{len(messages)}]: truncated length prefix at byte {start}"
                raise OtlpInvalidRequestError(msg)
            if pos - start >= _MAX_VARINT_BYTES:
                msg = f"{where} message[{len(messages)}]: length prefix at byte {start} is longer than 10 bytes"
                raise OtlpInvalidRequestError(msg)
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if length > end - pos:
            msg = (
                f"{where} message[{len(messages)}]: length prefix says {length} bytes"
                f" but {end - pos} remain (is the stream's output format OpenTelemetry 1.0?)"
            )
            raise OtlpInvalidRequestError(msg)
        messages.append(data[pos : pos + length])
        pos += length
    return messages
