"""Exceptions of ``sirius.tracing``.

::

    TracingError
     └── WireFormatError        a CBOR body, block payload or UDT metadata is malformed

The telemetry sink never raises into the application: these reach only code that decodes
wire data (the ingestion service, the lakehouse) or builds it (writers given bad input).
"""

from __future__ import annotations


class TracingError(Exception):
    """Base class of every error raised by ``sirius.tracing``."""


class WireFormatError(TracingError):
    """Bytes that do not follow the Micromegas wire format (CBOR bodies, payloads, metadata)."""
