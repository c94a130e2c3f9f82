"""Exceptions of ``sirius.flight`` and how each reaches a FlightSQL client.

::

    FlightSqlError                 base; carries the query id (None outside a query)
     ├── InvalidQueryError         bad SQL, unknown view or function, bad header/ticket/command → INVALID_ARGUMENT
     │    └── AdminOnlyError       admin function (retirement, view DDL, deny list) by a non-admin → PERMISSION_DENIED
     ├── QueryResourcesError       the query hit its memory limit (or another DataFusion resource limit)
     ├── QueryTimeoutError         the query ran past its timeout and was cancelled → DEADLINE_EXCEEDED
     ├── UnsupportedCommandError   a FlightSQL command or action Sirius does not serve → UNIMPLEMENTED
     ├── ServerBusyError           too many queries running → UNAVAILABLE
     ├── QueryDeniedError          refused by a deny rule → INVALID_ARGUMENT (Micromegas's RESOURCE_EXHAUSTED, as read)
     └── InternalQueryError        anything else (a bug, a failing dependency) → INTERNAL

Foreign errors (DataFusion's ``Exception``/``ValueError`` with DataFusion's message prefixes,
protobuf decode errors, header parsing) are classified once, in :func:`classify_datafusion_error`.
Its messages are DataFusion's root cause (an analyser or optimiser rule's "caused by" wrapper is
dropped) without DataFusion's "Internal error … likely caused by a bug in DataFusion's code"
wording when the root cause is the SQL. Internal errors reach clients with a generic message
and their query id; the detail is logged by :func:`internal_error`, never sent.

The status a client sees is decided in ``_server.py`` and limited by Arrow C++'s gRPC transport
(pyarrow 23): it can emit INVALID_ARGUMENT and UNIMPLEMENTED cleanly only through a failing
record-batch stream (so only on ``DoGet``), INTERNAL/DEADLINE_EXCEEDED/UNAVAILABLE/UNAUTHENTICATED
cleanly through Flight errors, and it has **no mapping to RESOURCE_EXHAUSTED at all**; resource
errors therefore travel as INVALID_ARGUMENT with a ``Resources exhausted:`` message (which is
also how pyarrow-based clients render a RESOURCE_EXHAUSTED status).
"""

from __future__ import annotations

import logging
import re

__all__ = [
    "AdminOnlyError",
    "FlightSqlError",
    "InternalQueryError",
    "InvalidQueryError",
    "QueryDeniedError",
    "QueryResourcesError",
    "QueryTimeoutError",
    "ServerBusyError",
    "UnsupportedCommandError",
    "classify_datafusion_error",
    "internal_error",
]

_LOG = logging.getLogger(__name__)


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


class QueryDeniedError(FlightSqlError):
    """An admin's query deny rule matches the query; the message names the rule and its reason.

    Micromegas answers RESOURCE_EXHAUSTED, which Arrow C++'s gRPC transport cannot emit (see the
    module docstring); pyarrow-based clients (the ``micromegas`` client among them) raise
    ``ArrowInvalid`` for RESOURCE_EXHAUSTED, so INVALID_ARGUMENT is what they see either way.
    """


class AdminOnlyError(InvalidQueryError):
    """A caller who is not an admin called an admin function; the message names the function."""


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
# "<rule name>\ncaused by\n<error>": an analyser/optimiser rule wrapping the root cause.
_CAUSED_BY = re.compile(r"\n\s*caused by\s*\n")
# DataFusion's "Internal error: <detail>.\nThis issue was likely caused by a bug in DataFusion's
# code. Please help us … issue tracker: <url>" (the detail and the plea, up to the URL).
_INTERNAL_PLEA = re.compile(
    r"Internal error: (?P<detail>.*?)\s*This (?:issue|error) was likely caused by a bug in DataFusion's code\."
    r".*?(?:https?://\S+?)(?=\.?(?:\s|$))\.?\s*",
    re.S,
)
_GENERIC_INTERNAL = "the server failed to run this query; its log has the details"


def _strip_internal_plea(text: str) -> str:
    """Drop DataFusion's bug-report wording; inside a user error, drop its internal detail too.

    ``Error during planning: Internal error: Function 'sum' failed to match any signature, …
    This issue was likely caused by a bug … No function matches …`` keeps only the planning error
    and what follows the plea (the signature help).
    """
    match = _INTERNAL_PLEA.search(text)
    if match is None:
        return text
    rest = text[match.end() :]
    if match.start() == 0:  # a real internal error: keep its label (it decides the status)
        return f"Internal error: {match.group('detail')}" + (f" {rest}" if rest.strip() else "")
    if rest.strip():
        return text[: match.start()] + rest
    return text[: match.start()] + match.group("detail")


def _clean(text: str) -> str:
    text = _DATAFUSION_PREFIX.sub("", text.strip())
    # An analyser/optimiser rule's failure: the root cause says what is wrong with the query.
    text = _DATAFUSION_PREFIX.sub("", _CAUSED_BY.split(text)[-1].strip())
    text = _strip_internal_plea(text)
    # A Python UDF's exception arrives as a Rust debug print with the traceback: keep its message.
    match = _PY_ERR.search(text)
    if match:
        prefix = text[: match.start()].rstrip()
        text = f"{prefix} {match.group(1)}: {match.group('msg')}".strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
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
        return internal_error(text, query_id)
    if isinstance(exc, (ValueError, TypeError, KeyError)) or text.startswith(_USER_PREFIXES):
        return InvalidQueryError(text, query_id)
    return internal_error(f"{type(exc).__name__}: {text}", query_id)


def internal_error(detail: str, query_id: str | None = None, exc: BaseException | None = None) -> InternalQueryError:
    """An :class:`InternalQueryError` with a generic message; ``detail`` goes to the server log.

    Clients learn that the server failed and the query id to quote; the detail (a DataFusion
    internal error, a Python exception, a failing dependency) stays in the log, with that id
    (and ``exc``'s traceback when given).
    """
    _LOG.error("query %s failed inside the server: %s", query_id or "-", detail, exc_info=exc)
    return InternalQueryError(_GENERIC_INTERNAL, query_id)
