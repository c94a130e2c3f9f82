"""Sirius collector: network ingestion (Micromegas HTTP routes, OTLP over gRPC and HTTP)."""

from __future__ import annotations

from ._admission import InflightBudget
from ._auth import PRINCIPAL_KEY, ApiKeys, check_bind_is_safe, is_loopback, request_principal
from ._exceptions import (
    AudienceOwnershipError,
    AuthConfigurationError,
    BodyTooLargeError,
    CollectorError,
    IncompleteBodyError,
    LengthRequiredError,
    NativeRequestError,
    OtlpInvalidRequestError,
    OtlpOverloadedError,
    OtlpPermissionDeniedError,
    OtlpRequestError,
    OtlpRequestTooLargeError,
    OtlpUnauthenticatedError,
    OtlpUnavailableError,
    OtlpUnsupportedEncodingError,
    OverloadedError,
    TlsConfigurationError,
)
from ._fast_http import add_fast_lane_middleware
from ._http_server import HttpServer
from ._ingestion_limits import IngestionLimits
from ._ingestion_service import MAX_BODY_BYTES, IngestionService, block_object_key
from ._otlp_grpc import OtlpGrpcServer
from ._otlp_http import DEFAULT_MAX_REQUEST_BYTES, OtlpHttpRoutes
from ._otlp_service import DEFAULT_OTLP_GRPC_PORT, DEFAULT_OTLP_HTTP_PORT, OtlpLimits, OtlpPorts, OtlpService
from ._otlp_writer import OtlpWriter
from ._tls import ServerTls, warn_plaintext_bind

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_OTLP_GRPC_PORT",
    "DEFAULT_OTLP_HTTP_PORT",
    "MAX_BODY_BYTES",
    "PRINCIPAL_KEY",
    "ApiKeys",
    "AudienceOwnershipError",
    "AuthConfigurationError",
    "BodyTooLargeError",
    "CollectorError",
    "HttpServer",
    "IncompleteBodyError",
    "InflightBudget",
    "IngestionLimits",
    "IngestionService",
    "LengthRequiredError",
    "NativeRequestError",
    "OtlpGrpcServer",
    "OtlpHttpRoutes",
    "OtlpInvalidRequestError",
    "OtlpLimits",
    "OtlpOverloadedError",
    "OtlpPermissionDeniedError",
    "OtlpPorts",
    "OtlpRequestError",
    "OtlpRequestTooLargeError",
    "OtlpService",
    "OtlpUnauthenticatedError",
    "OtlpUnavailableError",
    "OtlpUnsupportedEncodingError",
    "OtlpWriter",
    "OverloadedError",
    "ServerTls",
    "TlsConfigurationError",
    "add_fast_lane_middleware",
    "block_object_key",
    "check_bind_is_safe",
    "is_loopback",
    "request_principal",
    "warn_plaintext_bind",
]
