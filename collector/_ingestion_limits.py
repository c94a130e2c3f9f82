"""Size and concurrency limits of the native ingestion routes, resolved once from the environment.

``/ingestion/insert_{process,stream,block}`` admit a request only when its declared body fits
under ``max_body_bytes`` (413 otherwise; 411 without a ``Content-Length``) and the service's
in-flight budget has room for it (429 with ``Retry-After`` otherwise). The budget is the same
``InflightBudget`` the OTLP receivers use; the ingestion service's ``/ingestion/otlp/v1/*``
routes share the native routes' budget, so the limits bound the whole port.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._admission import (
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    DEFAULT_RETRY_AFTER_SECONDS,
    InflightBudget,
)
from ._environment_variables import (
    SIRIUS_INGESTION_MAX_BODY_BYTES,
    SIRIUS_INGESTION_MAX_INFLIGHT_BYTES,
    SIRIUS_INGESTION_MAX_INFLIGHT_REQUESTS,
    read_int,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "IngestionLimits"]

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
"""Largest native request body (Micromegas's ``RequestBodyLimitLayer`` on these routes)."""


@dataclass(frozen=True, slots=True)
class IngestionLimits:
    """Limits of the native ingestion routes.

    Attributes:
        max_body_bytes: largest request body (413 past it).
        max_inflight_requests: requests handled at once (429 past it).
        max_inflight_bytes: request bodies held at once, counted from ``Content-Length`` before
            they are read (429 past it; a single request is admitted when nothing else is in flight).
        retry_after_seconds: delay asked of refused clients (``Retry-After``).
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0 or self.max_inflight_bytes <= 0 or self.max_inflight_requests <= 0:
            msg = "ingestion body and in-flight limits must be positive"
            raise ValueError(msg)
        if self.retry_after_seconds < 0:
            msg = "ingestion retry delay must not be negative"
            raise ValueError(msg)

    @classmethod
    def resolve(cls) -> IngestionLimits:
        """Defaults overridden by ``SIRIUS_INGESTION_MAX_BODY_BYTES`` / ``…_INFLIGHT_REQUESTS`` / ``…_INFLIGHT_BYTES``.

        Raises:
            ValueError: a variable is not a valid integer, or a limit is not positive.
        """
        default = cls()
        return cls(
            max_body_bytes=_or_default(read_int(SIRIUS_INGESTION_MAX_BODY_BYTES), default.max_body_bytes),
            max_inflight_requests=_or_default(
                read_int(SIRIUS_INGESTION_MAX_INFLIGHT_REQUESTS), default.max_inflight_requests
            ),
            max_inflight_bytes=_or_default(read_int(SIRIUS_INGESTION_MAX_INFLIGHT_BYTES), default.max_inflight_bytes),
        )

    def budget(self) -> InflightBudget:
        """A fresh in-flight budget with these limits."""
        return InflightBudget(self.max_inflight_requests, self.max_inflight_bytes, self.retry_after_seconds)


def _or_default(value: int | None, default: int) -> int:
    # Unlike ``value or default``, an explicit 0 reaches __post_init__ and is refused there.
    return default if value is None else value
