"""Errors of the wire format: the root of ``sirius.tracing``'s hierarchy and the malformed-bytes error.

The whole tree is drawn in ``sirius.tracing``'s exceptions module; its root lives here because
the wire format is the layer every other part of ``sirius.tracing`` builds on, and it must not
import its producers. ``WireFormatError`` reaches code that decodes wire data (the ingestion
service, the lakehouse) or builds it (writers given bad input).
"""

from __future__ import annotations


class TracingError(Exception):
    """Base class of every error raised by ``sirius.tracing``."""


class WireFormatError(TracingError):
    """Bytes that do not follow the Micromegas wire format (CBOR bodies, payloads, metadata)."""
