"""Exceptions of ``sirius.tracing``.

::

    TracingError
     ├── WireFormatError        a CBOR body, block payload or UDT metadata is malformed
     │    └── TransitScanError  the native scanner rejected a transit queue (code, offset)
     └── SpoolEntryError        a spool entry file is damaged (skipped and counted, never delivered)

The telemetry sink never raises into the application: these reach only code that decodes
wire data (the ingestion service, the lakehouse) or builds it (writers given bad input).
``TracingError`` and ``WireFormatError`` are defined by the wire format (``sirius.tracing.transit``),
which the rest of the package builds on; they are the same classes here.
"""

from __future__ import annotations

from .transit import TracingError, WireFormatError

__all__ = ["SpoolEntryError", "TracingError", "TransitScanError", "WireFormatError"]


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
