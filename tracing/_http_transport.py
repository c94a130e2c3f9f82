"""The sink's HTTP transport: one kept-alive ``http.client`` connection to the ingestion service.

Standard library only, so an instrumented application installs nothing more. ``Transport`` is
the interface the sink needs (tests inject failing or recording ones).
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._sink import SinkConfig


@dataclass(frozen=True, slots=True)
class TransportResponse:
    """What the sink needs of an HTTP answer."""

    status: int
    retry_after: float | None = None


class Transport(Protocol):
    """Sends one POST; raises ``OSError`` (or ``http.client.HTTPException``) on network failure."""

    def post(self, path: str, body: bytes) -> TransportResponse:
        """POST ``body`` to ``path`` and return the status."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class HttpTransport:
    """``http.client`` keep-alive connection to the ingestion service (stdlib only: apps stay light)."""

    def __init__(self, config: SinkConfig) -> None:
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout = config.request_timeout
        # Built once: loading the CA bundle for every reconnection would cost a file read each time.
        self._tls = config.tls_context() if self._https else None
        self._headers = {"Content-Type": "application/cbor"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> TransportResponse:
        """POST over the kept-alive connection; a broken connection is dropped and the error raised."""
        if self._conn is None:
            if self._tls is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._tls
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            self._conn.request("POST", self._prefix + path, body=body, headers=self._headers)
            response = self._conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        return TransportResponse(response.status, _parse_retry_after(response.getheader("Retry-After")))

    def close(self) -> None:
        """Close the connection (reopened on the next post)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
