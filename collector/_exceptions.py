"""Exceptions of ``sirius.collector``.

::

    CollectorError
     ├── AuthConfigurationError        bad MICROMEGAS_API_KEYS, or an unauthenticated public bind
     ├── TlsConfigurationError         a TLS certificate or key that cannot be served (missing, unreadable, mismatched)
     ├── OverloadedError               the in-flight budget is full (429 + Retry-After / UNAVAILABLE)
     ├── AudienceOwnershipError        a write to another audience's process (403 / PERMISSION_DENIED)
     ├── NativeRequestError            a native ``/ingestion/insert_*`` body refused before decoding
     │    ├── LengthRequiredError             411   no Content-Length (chunked upload)
     │    ├── BodyTooLargeError               413   Content-Length over the body limit
     │    └── IncompleteBodyError             400   fewer bytes than Content-Length announced
     └── OtlpRequestError              an OTLP, webhook or Firehose request refused (gRPC code, HTTP status)
          ├── OtlpInvalidRequestError         400 · INVALID_ARGUMENT    undecodable body, bad JSON ids
          ├── OtlpUnauthenticatedError        401 · UNAUTHENTICATED     missing or unknown Bearer key
          ├── OtlpRequestTooLargeError        413 · RESOURCE_EXHAUSTED  over the limit after decompression
          ├── OtlpUnsupportedEncodingError    415 · INVALID_ARGUMENT    unknown Content-Encoding
          ├── OtlpPermissionDeniedError       403 · PERMISSION_DENIED   another audience's process
          ├── OtlpOverloadedError             429 · UNAVAILABLE         in-flight budget full (Retry-After);
          │                                                             also an OverloadedError
          └── OtlpUnavailableError            503 · UNAVAILABLE         storage failing (Retry-After)

Request-level problems never leave a handler as exceptions: the OTLP handlers map
``OtlpRequestError`` to the status above (HTTP) or the code (gRPC) in one place each, with a
``google.rpc.Status`` body; the native routes map ``NativeRequestError`` and ``OverloadedError``
in one place and otherwise answer 400, 401 or 503 with a reason.
"""

from __future__ import annotations

# google.rpc.Code values (the numeric gRPC status codes), so this module needs no grpc import.
CODE_INVALID_ARGUMENT = 3
CODE_PERMISSION_DENIED = 7
CODE_RESOURCE_EXHAUSTED = 8
CODE_INTERNAL = 13
CODE_UNAVAILABLE = 14
CODE_UNAUTHENTICATED = 16


class CollectorError(Exception):
    """Base class of every error raised by ``sirius.collector``."""


class AuthConfigurationError(CollectorError):
    """The authentication settings are malformed or unsafe for the requested bind address."""


class TlsConfigurationError(CollectorError):
    """The TLS certificate and key given to a listener cannot be used; the message says why."""


class AudienceOwnershipError(CollectorError):
    """A write to a process of another audience; the message says which process (never whose)."""


class OverloadedError(CollectorError):
    """Too much is in flight (requests or bytes); the client should retry after ``retry_after`` seconds.

    The in-flight budget raises ``OtlpOverloadedError``, which is also this class: the OTLP
    receivers map it like their other refusals, the native routes catch this base.

    Attributes:
        retry_after: seconds the client should wait before retrying.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class NativeRequestError(CollectorError):
    """A native ingestion request refused before its body is read (permanent: do not retry as is).

    Attributes:
        http_status: the answer's status.
    """

    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LengthRequiredError(NativeRequestError):
    """No ``Content-Length``: the body's size must be known before it is admitted."""

    http_status = 411


class BodyTooLargeError(NativeRequestError):
    """The declared body is larger than the route's limit."""

    http_status = 413


class IncompleteBodyError(NativeRequestError):
    """The connection delivered fewer bytes than ``Content-Length`` announced."""


class OtlpRequestError(CollectorError):
    """An OTLP request is refused.

    Attributes:
        http_status: the OTLP/HTTP status.
        grpc_code: the ``google.rpc.Code`` / gRPC status code.
        retry_after: seconds the client should wait before retrying (retryable errors only).
    """

    http_status = 400
    grpc_code = CODE_INVALID_ARGUMENT

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class OtlpInvalidRequestError(OtlpRequestError):
    """The body cannot be decoded (permanent: clients must not retry)."""


class OtlpUnauthenticatedError(OtlpRequestError):
    """No valid ``Authorization: Bearer`` key."""

    http_status = 401
    grpc_code = CODE_UNAUTHENTICATED


class OtlpRequestTooLargeError(OtlpRequestError):
    """The request is over the size limit after decompression (permanent)."""

    http_status = 413
    grpc_code = CODE_RESOURCE_EXHAUSTED


class OtlpUnsupportedEncodingError(OtlpRequestError):
    """The ``Content-Encoding`` is not one the receiver decodes."""

    http_status = 415
    grpc_code = CODE_INVALID_ARGUMENT


class OtlpUnsupportedMediaTypeError(OtlpRequestError):
    """The ``Content-Type`` is neither OTLP protobuf nor OTLP JSON (the reply is protobuf)."""

    http_status = 415
    grpc_code = CODE_INVALID_ARGUMENT


class OtlpPermissionDeniedError(OtlpRequestError):
    """The request writes to a process of another audience (permanent: nothing was stored for it)."""

    http_status = 403
    grpc_code = CODE_PERMISSION_DENIED


class OtlpOverloadedError(OtlpRequestError, OverloadedError):
    """Too much is in flight; retry after ``retry_after`` seconds."""

    http_status = 429
    grpc_code = CODE_UNAVAILABLE


class OtlpUnavailableError(OtlpRequestError):
    """Storage is failing; retry after ``retry_after`` seconds."""

    http_status = 503
    grpc_code = CODE_UNAVAILABLE
