"""Exceptions of ``sirius.flight`` and how each reaches a FlightSQL client.

::

    FlightSqlError                 base; carries the query id (None outside a query)
     ├── InvalidQueryError         bad SQL, unknown view or function, bad header/ticket/command → INVALID_ARGUMENT
     ├── QueryResourcesError       the query hit its memory limit (or another DataFusion resource limit)
     ├── QueryTimeoutError         the query ran past its timeout and was cancelled → DEADLINE_EXCEEDED
     ├── UnsupportedCommandError   a FlightSQL command or action Sirius does not serve → UNIMPLEMENTED
     ├── ServerBusyError           too many queries running → UNAVAILABLE
     └── InternalQueryError        anything else (a bug, a failing dependency) → INTERNAL

Foreign errors (DataFusion's ``Exception``/``ValueError`` with DataFusion's message prefixes,
protobuf decode errors, header parsing) are classified once, in :func:`classify_datafusion_error`.

The status a client sees is decided in ``_server.py`` and limited by Arrow C++'s gRPC transport
(pyarrow 23): it can emit INVALID_ARGUMENT and UNIMPLEMENTED cleanly only through a failing
record-batch stream (so only on ``DoGet``), INTERNAL/DEADLINE_EXCEEDED/UNAVAILABLE/UNAUTHENTICATED
cleanly through Flight errors, and it has **no mapping to RESOURCE_EXHAUSTED at all**; resource
errors therefore travel as INVALID_ARGUMENT with a ``Resources exhausted:`` message (which is
also how pyarrow-based clients render a RESOURCE_EXHAUSTED status).
"""

from __future__ import annotations

import re

__all__ = [
    "FlightSqlError",
    "InternalQueryError",
    "InvalidQueryError",
    "QueryResourcesError",
    "QueryTimeoutError",
    "ServerBusyError",
    "UnsupportedCommandError",
    "classify_datafusion_error",
]


class FlightSqlError(Exception):
    """Base class of every error raised by ``sirius.flight``.

    Attributes:
        message: the client-facing text, without the query id.
        query_id: the id of the query that failed (also in ``str(error)``), or None.
    """

    def __init__(self, message: str, query_id: str | None = None) -> None:
        self.message = message
        self.query_id = query_id
        super().__init__(self._render())

    def _render(self) -> str:
        return f"{self.message} (query_id={self.query_id})" if self.query_id else self.message

    def with_query_id(self, query_id: str) -> FlightSqlError:
        """Return a copy of this error naming ``query_id`` (the type is kept)."""
        return type(self)(self.message, query_id)


class InvalidQueryError(FlightSqlError):
    """The request cannot be served as sent: SQL, view, function, header, ticket or command."""


class QueryResourcesError(FlightSqlError):
    """The query exceeded a resource limit (memory) and was stopped."""


class QueryTimeoutError(FlightSqlError):
    """The query ran past its timeout; its execution was cancelled and its memory released."""


class UnsupportedCommandError(FlightSqlError):
    """A FlightSQL command, action or RPC that this server does not implement."""


class ServerBusyError(FlightSqlError):
    """Too many queries are running; the client should retry later."""


class InternalQueryError(FlightSqlError):
    """An unexpected failure inside the server; the message names it without a traceback."""


# DataFusion renders errors as "<stage>: <detail>"; the stage decides who is at fault.
_USER_PREFIXES = (
    "SQL error",
    "Error during planning",
    "Schema error",
    "Execution error",
    "Arrow error",
    "Invalid or Unsupported Configuration",
    "Optimizer rule",
    "External error",
    "Parquet error",
    "Object Store error",
)
_RESOURCE_MARKERS = ("Resources exhausted", "Not enough memory")
_NOT_IMPLEMENTED_MARKERS = ("This feature is not implemented",)
_INTERNAL_MARKERS = ("Internal error",)
_DATAFUSION_PREFIX = re.compile(r"^(DataFusion error: )+")
_PY_ERR = re.compile(r"PyErr \{ type: <class '(?:[\w.]+\.)?(\w+)'>, value: \w+\((?P<q>['\"])(?P<msg>.*?)(?P=q)\)", re.S)


def _clean(text: str) -> str:
    text = _DATAFUSION_PREFIX.sub("", text.strip())
    # A Python UDF's exception arrives as a Rust debug print with the traceback: keep its message.
    match = _PY_ERR.search(text)
    if match:
        prefix = text[: match.start()].rstrip()
        text = f"{prefix} {match.group(1)}: {match.group('msg')}".strip()
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines) if lines else "query failed"


def classify_datafusion_error(exc: BaseException, query_id: str | None = None) -> FlightSqlError:
    """Turn an exception raised by DataFusion (planning or execution) into a Sirius error.

    Args:
        exc: what ``SessionContext.sql`` or a record-batch stream raised.
        query_id: id to attach to the error.

    Returns:
        ``QueryResourcesError`` for resource limits, ``UnsupportedCommandError`` for
        DataFusion's "not implemented", ``InternalQueryError`` for its internal errors, else
        ``InvalidQueryError`` (the SQL or the data it touches is at fault).
    """
    if isinstance(exc, FlightSqlError):
        return exc if exc.query_id or not query_id else exc.with_query_id(query_id)
    text = _clean(str(exc))
    if any(marker in text for marker in _RESOURCE_MARKERS):
        return QueryResourcesError(
            text if text.startswith("Resources exhausted") else f"Resources exhausted: {text}", query_id
        )
    if any(text.startswith(marker) for marker in _NOT_IMPLEMENTED_MARKERS):
        return UnsupportedCommandError(text, query_id)
    if any(text.startswith(marker) for marker in _INTERNAL_MARKERS):
        return InternalQueryError(text, query_id)
    if isinstance(exc, (ValueError, TypeError, KeyError)) or text.startswith(_USER_PREFIXES):
        return InvalidQueryError(text, query_id)
    return InternalQueryError(f"{type(exc).__name__}: {text}", query_id)
