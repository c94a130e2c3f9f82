"""Request options carried in gRPC headers (micromegas-query.md §10.3).

* ``query_range_begin``, ``query_range_end``: RFC 3339 (``Z`` or ``±hh:mm``, any number of
  fractional digits). The range applies when **both** are present and non-empty; a lone one is
  validated, then ignored, as in Micromegas. Unparsable, or begin after end → INVALID_ARGUMENT.
* ``limit``: decimal row limit wrapped around the plan (Grafana's auto-limit).
* ``preserve_dictionary``: ``true`` (any case) keeps dictionary-encoded columns.
* ``x-sirius-engine``: ``datafusion`` (the default) or ``sail``: run the statement (Spark SQL) on
  the server's Sail cluster (``SIRIUS_SAIL_CLUSTER``; docs/scaling-out.md).

Unknown headers are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..tracing import parse_rfc3339_ns
from ._exceptions import InvalidQueryError

__all__ = ["RequestOptions", "parse_range", "parse_request_options"]

BEGIN_HEADER = "query_range_begin"
END_HEADER = "query_range_end"
LIMIT_HEADER = "limit"
PRESERVE_DICTIONARY_HEADER = "preserve_dictionary"
ENGINE_HEADER = "x-sirius-engine"
ENGINES = ("datafusion", "sail")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Options of one request.

    Attributes:
        begin_ns: range start (Unix ns) or None.
        end_ns: range end (Unix ns) or None; set together with ``begin_ns``.
        limit: row limit or None.
        preserve_dictionary: keep dictionary encoding in results.
        engine: ``datafusion`` (this server's sessions) or ``sail`` (its Sail cluster).
    """

    begin_ns: int | None = None
    end_ns: int | None = None
    limit: int | None = None
    preserve_dictionary: bool = False
    engine: str = "datafusion"


def _time(name: str, value: str) -> int:
    try:
        return parse_rfc3339_ns(value.strip())
    except ValueError:
        msg = f"invalid {name} header {value!r}: expected an RFC 3339 time such as 2024-01-01T00:00:00Z"
        raise InvalidQueryError(msg) from None


def parse_range(begin: str | None, end: str | None) -> tuple[int | None, int | None]:
    """The query range of the two header values (see the module docstring).

    >>> parse_range("1970-01-01T00:00:01Z", "1970-01-01T01:00:01.5+01:00")
    (1000000000, 1500000000)
    """
    begin_ns = _time(BEGIN_HEADER, begin) if begin and begin.strip() else None
    end_ns = _time(END_HEADER, end) if end and end.strip() else None
    if begin_ns is None or end_ns is None:
        return None, None
    if begin_ns > end_ns:
        msg = f"{BEGIN_HEADER} ({begin}) is after {END_HEADER} ({end})"
        raise InvalidQueryError(msg)
    return begin_ns, end_ns


def parse_request_options(headers: Mapping[str, str]) -> RequestOptions:
    """Read the options from a call's headers (lower-case names, one value each).

    Raises:
        InvalidQueryError: a malformed range or limit.
    """
    begin_ns, end_ns = parse_range(headers.get(BEGIN_HEADER), headers.get(END_HEADER))
    limit = None
    raw_limit = (headers.get(LIMIT_HEADER) or "").strip()
    if raw_limit:
        if not raw_limit.isdigit():
            msg = f"invalid limit header {raw_limit!r}: expected a non-negative integer"
            raise InvalidQueryError(msg)
        limit = int(raw_limit)
    preserve = (headers.get(PRESERVE_DICTIONARY_HEADER) or "").strip().lower() == "true"
    engine = (headers.get(ENGINE_HEADER) or "datafusion").strip().lower()
    if engine not in ENGINES:
        msg = f"invalid {ENGINE_HEADER} header {engine!r}: expected one of {', '.join(ENGINES)}"
        raise InvalidQueryError(msg)
    return RequestOptions(begin_ns, end_ns, limit, preserve, engine)
