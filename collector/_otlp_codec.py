"""OTLP request bodies: decompression under a size limit, protobuf and OTLP/JSON decoding, replies.

* **Compression** (``Content-Encoding``): ``gzip``/``x-gzip``, ``deflate`` (zlib, or raw deflate),
  ``zstd``, ``lz4`` (frame), ``identity``. Output is counted while it is produced and decoding
  stops one byte past the limit, so a decompression bomb costs at most ``limit`` bytes of memory.
* **JSON** (``otlp.md`` §2.2): ids (``traceId``, ``spanId``, ``parentSpanId`` in spans, links, log
  records and exemplars) are hex, not base64; enums are integers (names are accepted too);
  64-bit integers may be strings or bare numbers; unknown fields are ignored. We rewrite the hex
  ids to base64 at their known places and let ``json_format.ParseDict`` do the rest.
* **Replies** use the request's encoding: ``Export*ServiceResponse`` on success, a
  ``google.rpc.Status`` (with ``BadRequest`` or ``RetryInfo`` details) on failure.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import lz4.frame
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from google.rpc.error_details_pb2 import BadRequest, RetryInfo
from google.rpc.status_pb2 import Status

from ..otel_bridge import Signal, SplitRequest
from ._exceptions import (
    OtlpInvalidRequestError,
    OtlpRequestError,
    OtlpRequestTooLargeError,
    OtlpUnsupportedEncodingError,
)

__all__ = [
    "JSON",
    "PROTOBUF",
    "decompress",
    "encode_message",
    "error_status",
    "export_response",
    "export_response_bytes",
    "media_type",
    "parse_request",
    "retry_info",
]

PROTOBUF = "protobuf"
JSON = "json"
_MEDIA_TYPES = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}
_CHUNK = 1 << 20
_MAX_ERROR_MESSAGE = 4096  # responses stay far below the 4 MiB cap (otlp.md §3)


def media_type(content_type: str | None) -> tuple[str, str] | None:
    """``(media type, encoding)`` of a ``Content-Type`` header, or None when it is not OTLP's.

    >>> media_type("application/json; charset=utf-8")
    ('application/json', 'json')
    >>> media_type("text/plain") is None
    True
    """
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    encoding = _MEDIA_TYPES.get(media)
    return None if encoding is None else (media, encoding)


# -- decompression ---------------------------------------------------------------------------


def _too_large(limit: int) -> OtlpRequestTooLargeError:
    return OtlpRequestTooLargeError(f"request is larger than {limit} bytes after decompression")


def _zlib(data: bytes, wbits: int, limit: int, what: str, *, members: bool) -> bytes:
    parts: list[bytes] = []
    size = 0
    remaining = data
    while remaining:
        decoder = zlib.decompressobj(wbits)
        pending = remaining
        try:
            while pending:
                out = decoder.decompress(pending, limit - size + 1)
                size += len(out)
                parts.append(out)
                if size > limit:
                    raise _too_large(limit)
                pending = decoder.unconsumed_tail
            tail = decoder.flush(limit - size + 1)
        except zlib.error as exc:
            msg = f"body is not valid {what}: {exc}"
            raise OtlpInvalidRequestError(msg) from exc
        size += len(tail)
        parts.append(tail)
        if size > limit:
            raise _too_large(limit)
        if not decoder.eof:
            msg = f"body is not valid {what}: truncated stream"
            raise OtlpInvalidRequestError(msg)
        remaining = decoder.unused_data
        if remaining and not members:
            msg = f"body is not valid {what}: trailing bytes after the stream"
            raise OtlpInvalidRequestError(msg)
    return b"".join(parts)


def _gzip(data: bytes, limit: int) -> bytes:
    # Concatenated gzip members are one valid gzip stream (RFC 1952 §2.2).
    return _zlib(data, 16 + zlib.MAX_WBITS, limit, "gzip", members=True)


def _deflate(data: bytes, limit: int) -> bytes:
    # HTTP "deflate" is the zlib format (RFC 9110 §8.4.1.2); some clients send raw deflate.
    zlib_header = len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
    wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    return _zlib(data, wbits, limit, "deflate", members=False)


def _zstd(data: bytes, limit: int) -> bytes:
    try:
        import zstandard
    except ImportError as exc:  # the [server] extra installs it
        msg = "zstd request bodies need the 'zstandard' package on the server"
        raise OtlpUnsupportedEncodingError(msg) from exc
    parts: list[bytes] = []
    size = 0
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        while True:
            out = reader.read(min(_CHUNK, limit - size + 1))
            if not out:
                break
            size += len(out)
            parts.append(out)
            if size > limit:
                raise _too_large(limit)
    except zstandard.ZstdError as exc:
        msg = f"body is not valid zstd: {exc}"
        raise OtlpInvalidRequestError(msg) from exc
    return b"".join(parts)


def _lz4(data: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    remaining = data
    while remaining:  # concatenated frames are one valid stream
        decoder = lz4.frame.LZ4FrameDecompressor()
        pending = remaining
        try:
            while True:
                out = decoder.decompress(pending, max_length=limit - size + 1)
                size += len(out)
                parts.append(out)
                if size > limit:
                    raise _too_large(limit)
                if decoder.eof or decoder.needs_input:
                    break
                pending = b""  # output was capped: drain what the decoder holds
        except RuntimeError as exc:  # python-lz4 reports corrupt frames as RuntimeError
            msg = f"body is not valid lz4: {exc}"
            raise OtlpInvalidRequestError(msg) from exc
        if not decoder.eof:
            msg = "body is not valid lz4: truncated frame"
            raise OtlpInvalidRequestError(msg)
        remaining = decoder.unused_data
    return b"".join(parts)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "zlib": _deflate,
    "zstd": _zstd,
    "lz4": _lz4,
}


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (codings applied in order, so undone in reverse) within ``limit`` bytes.

    Raises:
        OtlpRequestTooLargeError: the result would exceed ``limit``.
        OtlpUnsupportedEncodingError: a coding we do not decode.
        OtlpInvalidRequestError: corrupt compressed data.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = body
    for coding in reversed(codings):
        if coding == "identity":
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            msg = f"unsupported Content-Encoding {coding!r} (supported: gzip, deflate, zstd, lz4)"
            raise OtlpUnsupportedEncodingError(msg)
        data = decoder(data, limit)
    if len(data) > limit:
        raise _too_large(limit)
    return data


# -- decoding --------------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*", re.ASCII)


def _objects(container: Any, *names: str) -> list[dict[str, Any]]:
    if not isinstance(container, dict):
        return []
    for name in names:
        value = container.get(name)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []


def _hex_ids(obj: dict[str, Any], *fields: tuple[str, str]) -> None:
    for camel, snake in fields:
        for key in (camel, snake):
            value = obj.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not _HEX.fullmatch(value):
                msg = f"{key} must be a hex string, got {value!r:.80}"
                raise OtlpInvalidRequestError(msg)
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


_TRACE = ("traceId", "trace_id")
_SPAN = ("spanId", "span_id")
_PARENT = ("parentSpanId", "parent_span_id")


def _trace_ids(root: dict[str, Any]) -> None:
    for resource in _objects(root, "resourceSpans", "resource_spans"):
        for scope in _objects(resource, "scopeSpans", "scope_spans"):
            for span in _objects(scope, "spans"):
                _hex_ids(span, _TRACE, _SPAN, _PARENT)
                for link in _objects(span, "links"):
                    _hex_ids(link, _TRACE, _SPAN)


def _log_ids(root: dict[str, Any]) -> None:
    for resource in _objects(root, "resourceLogs", "resource_logs"):
        for scope in _objects(resource, "scopeLogs", "scope_logs"):
            for record in _objects(scope, "logRecords", "log_records"):
                _hex_ids(record, _TRACE, _SPAN)


_METRIC_KINDS = (
    ("gauge",),
    ("sum",),
    ("histogram",),
    ("exponentialHistogram", "exponential_histogram"),
    ("summary",),
)


def _metric_ids(root: dict[str, Any]) -> None:
    for resource in _objects(root, "resourceMetrics", "resource_metrics"):
        for scope in _objects(resource, "scopeMetrics", "scope_metrics"):
            for metric in _objects(scope, "metrics"):
                for names in _METRIC_KINDS:
                    data = next((metric[n] for n in names if isinstance(metric.get(n), dict)), None)
                    for point in _objects(data, "dataPoints", "data_points"):
                        for exemplar in _objects(point, "exemplars"):
                            _hex_ids(exemplar, _TRACE, _SPAN)


_JSON_IDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "traces": _trace_ids,
    "logs": _log_ids,
    "metrics": _metric_ids,
}


def parse_request(signal: Signal, data: bytes, encoding: str) -> Message:
    """Decode an ``Export*ServiceRequest`` from protobuf or OTLP/JSON bytes.

    Raises:
        OtlpInvalidRequestError: with the decoder's reason.
    """
    message = signal.request_type()
    if encoding == PROTOBUF:
        try:
            message.ParseFromString(data)
        except (DecodeError, RecursionError) as exc:
            msg = f"body is not a valid {signal.request_type.__name__}: {exc}"
            raise OtlpInvalidRequestError(msg) from exc
        return message
    try:
        root = json.loads(data) if data else {}
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        msg = f"body is not valid JSON: {exc}"
        raise OtlpInvalidRequestError(msg) from exc
    if not isinstance(root, dict):
        msg = f"body must be a JSON object ({signal.request_type.__name__})"
        raise OtlpInvalidRequestError(msg)
    _JSON_IDS[signal.name](root)
    try:
        json_format.ParseDict(root, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        msg = f"body is not a valid OTLP/JSON {signal.request_type.__name__}: {exc}"
        raise OtlpInvalidRequestError(msg) from exc
    return message


# -- replies ---------------------------------------------------------------------------------


def encode_message(message: Message, encoding: str) -> bytes:
    """Serialise a reply in the request's encoding (JSON: lowerCamelCase, int64 as strings)."""
    if encoding == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def export_response(signal: Signal, split: SplitRequest) -> Message:
    """The ``Export*ServiceResponse``: ``partial_success`` set only when items were rejected."""
    response = signal.response_type()
    if split.rejected:
        partial = response.partial_success  # type: ignore[attr-defined]
        setattr(partial, signal.rejected_field, split.rejected)
        partial.error_message = _trim(split.error_message)
    return response


# A full success is an empty ``Export*ServiceResponse`` for every signal: zero protobuf bytes,
# ``{}`` in OTLP/JSON. The receivers answer it on every request, so it is not rebuilt each time.
_EMPTY_RESPONSE = {JSON: b"{}"}


def export_response_bytes(signal: Signal, split: SplitRequest, encoding: str) -> bytes:
    """``encode_message(export_response(signal, split), encoding)``, without a message when nothing was rejected."""
    if not split.rejected:
        return _EMPTY_RESPONSE.get(encoding, b"")
    return encode_message(export_response(signal, split), encoding)


def retry_info(seconds: float) -> RetryInfo:
    """A ``google.rpc.RetryInfo`` asking the client to wait ``seconds``."""
    whole = int(seconds)
    return RetryInfo(retry_delay=Duration(seconds=whole, nanos=round((seconds - whole) * 1e9)))


def _trim(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_MESSAGE else message[: _MAX_ERROR_MESSAGE - 1] + "…"


def error_status(error: OtlpRequestError, code: int | None = None, details: Iterable[Message] = ()) -> Status:
    """The ``google.rpc.Status`` of a refused request.

    Details: ``RetryInfo`` when a retry may succeed, ``BadRequest`` for undecodable requests.
    """
    status = Status(code=error.grpc_code if code is None else code, message=_trim(error.message))
    extra: list[Message] = list(details)
    if error.retry_after is not None:
        extra.append(retry_info(error.retry_after))
    elif error.http_status == 400:
        extra.append(BadRequest(field_violations=[BadRequest.FieldViolation(field="body", description=status.message)]))
    for detail in extra:
        packed = AnyMessage()
        packed.Pack(detail)
        status.details.append(packed)
    return status
