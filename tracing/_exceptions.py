"""Exceptions of ``sirius.tracing``.

::

    TracingError
     ├── WireFormatError        a CBOR body, block payload or UDT metadata is malformed
     │    └── TransitScanError  the native scanner rejected a transit queue (code, offset)
     └── SpoolEntryError        a spool entry file is damaged (skipped and counted, never delivered)

The telemetry sink never raises into the application: these reach only code that decodes
wire data (the ingestion service, the lakehouse) or builds it (writers given bad input).
"""

from __future__ import annotations


class TracingError(Exception):
    """Base class of every error raised by ``sirius.tracing``."""


class WireFormatError(TracingError):
    """Bytes that do not follow the Micromegas wire format (CBOR bodies, payloads, metadata)."""


class TransitScanError(WireFormatError):
    """A transit queue the native scanner rejected: unknown type index, truncated header or body.

    Attributes:
        code: the negative ``SIRIUS_SCAN_E_*`` code returned by the C function.
        offset: byte offset of the offending record in the decompressed queue (-1 when unknown).
    """

    def __init__(self, message: str, code: int, offset: int) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


class SpoolEntryError(TracingError):
    """A spool entry file that is not a complete, intact entry (bad header, length or CRC-32)."""
