"""A record-batch source exported as an Arrow C stream, so errors reach clients with clean statuses.

Why: pyarrow's Flight server turns an exception raised by Python code into a gRPC status whose
message carries the Python traceback (``Detail: Python exception: Traceback …``), and it can
express INVALID_ARGUMENT and UNIMPLEMENTED only that way. An error reported by a C stream's
``get_next`` instead becomes an Arrow status with the stream's own message and no detail:
``EINVAL`` → INVALID_ARGUMENT, ``ENOSYS`` → UNIMPLEMENTED, anything else → UNKNOWN. So ``DoGet``
returns ``RecordBatchStream(reader)`` where ``reader`` is imported from the C stream built here,
whose callbacks (cffi, ABI mode, using pyarrow's own C Data Interface declarations) pull from a
Python :class:`BatchSource`.

The callbacks run on gRPC threads; cffi takes the GIL for them. A source is kept alive by the
registry below until the consumer calls ``release`` (end of stream, client gone, or error).
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any, Protocol

import pyarrow as pa
from pyarrow.cffi import ffi

from ._exceptions import (
    FlightSqlError,
    InvalidQueryError,
    QueryDeniedError,
    QueryResourcesError,
    QueryTimeoutError,
    UnsupportedCommandError,
)

__all__ = ["BatchSource", "ErrorSource", "export_reader"]

_LOG = logging.getLogger(__name__)


class BatchSource(Protocol):
    """What the C stream pulls from."""

    schema: pa.Schema

    def next_batch(self) -> pa.RecordBatch | None:
        """The next batch, None at the end; raises ``FlightSqlError`` on failure."""
        ...

    def close(self) -> None:
        """Release resources (called once, when the consumer releases the stream)."""
        ...


class ErrorSource:
    """A source that fails at the first ``get_next`` with ``error`` (a clean error status)."""

    def __init__(self, error: FlightSqlError, schema: pa.Schema | None = None) -> None:
        self.error = error
        self.schema = schema if schema is not None else pa.schema([])

    def next_batch(self) -> pa.RecordBatch | None:
        """Raise the error."""
        raise self.error

    def close(self) -> None:
        """Nothing to release."""


def _errno(error: FlightSqlError) -> int:
    if isinstance(error, UnsupportedCommandError):
        return errno.ENOSYS
    # Timeouts and resource limits reached mid-stream: INVALID_ARGUMENT is the closest status an
    # Arrow C stream can carry (the message says what happened).
    # A denial too: Micromegas's RESOURCE_EXHAUSTED reads as INVALID_ARGUMENT in Arrow clients.
    if isinstance(error, (InvalidQueryError, QueryResourcesError, QueryTimeoutError, QueryDeniedError)):
        return errno.EINVAL
    return errno.EIO


class _State:
    __slots__ = ("error", "source")

    def __init__(self, source: BatchSource) -> None:
        self.source = source
        self.error: Any = ffi.NULL  # keeps the last error message alive for get_last_error


_LIVE: dict[Any, _State] = {}
_LIVE_LOCK = threading.Lock()


def _state(stream: Any) -> _State:
    return ffi.from_handle(stream.private_data)


def _address(pointer: Any) -> int:
    return int(ffi.cast("uintptr_t", pointer))


@ffi.callback("int(struct ArrowArrayStream*, struct ArrowSchema*)", onerror=lambda *_: None)
def _get_schema(stream: Any, out: Any) -> int:
    try:
        _state(stream).source.schema._export_to_c(_address(out))
    except Exception:  # noqa: BLE001 - a C callback must not raise: report an error code
        _LOG.exception("exporting a result schema failed")
        return errno.EIO
    return 0


@ffi.callback("int(struct ArrowArrayStream*, struct ArrowArray*)", onerror=lambda *_: None)
def _get_next(stream: Any, out: Any) -> int:
    state = _state(stream)
    try:
        batch = state.source.next_batch()
    except FlightSqlError as exc:
        state.error = ffi.new("char[]", str(exc).encode("utf-8", "replace"))
        return _errno(exc)
    except Exception as exc:  # noqa: BLE001 - a C callback must not raise: report an error code
        _LOG.exception("a query stream failed")
        state.error = ffi.new("char[]", f"internal error: {type(exc).__name__}: {exc}".encode("utf-8", "replace"))
        return errno.EIO
    try:
        if batch is None:
            out.release = ffi.NULL  # end of stream
        else:
            batch._export_to_c(_address(out))
    except Exception:  # noqa: BLE001 - a C callback must not raise: report an error code
        _LOG.exception("exporting a result batch failed")
        state.error = ffi.new("char[]", b"internal error: a result batch could not be exported")
        return errno.EIO
    return 0


@ffi.callback("const char*(struct ArrowArrayStream*)", onerror=lambda *_: None)
def _get_last_error(stream: Any) -> Any:
    return _state(stream).error


@ffi.callback("void(struct ArrowArrayStream*)", onerror=lambda *_: None)
def _release(stream: Any) -> None:
    handle = stream.private_data
    stream.release = ffi.NULL
    with _LIVE_LOCK:
        state = _LIVE.pop(handle, None)
    if state is not None:
        try:
            state.source.close()
        except Exception:  # noqa: BLE001 - a C callback must not raise
            _LOG.exception("closing a query stream failed")


def export_reader(source: BatchSource) -> pa.RecordBatchReader:
    """A C++ ``RecordBatchReader`` pulling from ``source`` through the Arrow C stream interface."""
    state = _State(source)
    handle = ffi.new_handle(state)
    with _LIVE_LOCK:
        _LIVE[handle] = state
    stream = ffi.new("struct ArrowArrayStream*")
    stream.get_schema = _get_schema
    stream.get_next = _get_next
    stream.get_last_error = _get_last_error
    stream.release = _release
    stream.private_data = handle
    # The importer moves the struct's content into its own storage; `stream` may then be freed.
    return pa.RecordBatchReader._import_from_c(_address(stream))
