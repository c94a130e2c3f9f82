"""The interface between the query services and the lakehouse: who asks, and for which session.

The FlightSQL server (and through it the HTTP gateway and ``sirius query``) never builds a
DataFusion session itself. For every request it asks a :class:`SessionProvider` for a
``datafusion.SessionContext`` in which the global views are registered as tables,
``view_instance`` is available, and the SQL functions are registered
(``sirius.lakehouse.register_sql_functions(ctx, **request.function_context)``).

The production provider is the lakehouse's session factory (partition selection for the query
range, JIT ETL, live views); :class:`~sirius.flight.InMemorySessionProvider` serves in-memory
Arrow tables shaped like the Micromegas views, for tests and demos.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import datafusion

from ..identity import ANONYMOUS as ANONYMOUS_PRINCIPAL
from ..identity import Principal
from ..lakehouse import PartitionAdmin

__all__ = ["ANONYMOUS", "Caller", "SessionProvider", "SessionRequest"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal behind a request.

    Attributes:
        name: the principal's name: the key's name, the OIDC identity (``anonymous`` when
            authentication is off).
        is_admin: may run the admin SQL functions (partition retirement, materialisation, view
            DDL, the deny list).
        client_type: the ``x-client-type`` header (``python``, ``grafana``, …; ``unknown`` if absent).
        principal: the authenticated principal itself (method, audiences, groups), for what
            the session must restrict to it.
    """

    name: str
    is_admin: bool = True
    client_type: str = "unknown"
    principal: Principal = ANONYMOUS_PRINCIPAL


ANONYMOUS = Caller("anonymous")


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """Everything a provider may use to build the session of one query.

    Attributes:
        sql: the statement about to run (lets a provider pre-scan it, e.g. for ``view_instance``).
            Empty for metadata requests (``GetTables``).
        begin_ns: query range start (Unix ns, inclusive) from ``query_range_begin``, or None.
        end_ns: query range end (Unix ns, inclusive) from ``query_range_end``, or None.
            Both are set or both are None.
        caller: who asks.
        query_id: the id reported with errors and logs.
        memory_limit_bytes: the per-query memory pool the session's runtime must enforce
            (``RuntimeEnvBuilder().with_fair_spill_pool(n)``; see
            ``sirius.lakehouse.new_session_context``), or None for no limit.
        function_context: keyword arguments for ``register_sql_functions(ctx, **function_context)``.
    """

    sql: str
    begin_ns: int | None
    end_ns: int | None
    caller: Caller = ANONYMOUS
    query_id: str = ""
    memory_limit_bytes: int | None = None
    function_context: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class SessionProvider(Protocol):
    """Builds DataFusion sessions over the lakehouse (:class:`~sirius.flight.LakehouseSessionProvider`).

    A provider may also define an optional hook, looked up with ``getattr``::

        async def prepare(self, ctx: datafusion.SessionContext, sql: str) -> None

    awaited on the application's loop before ``sql`` is planned on ``ctx`` (the statement after
    table-function expansion, and every nested query of a table function), e.g. to run the JIT
    updates of its ``view_instance`` calls; and::

        async def rewrite(self, ctx: datafusion.SessionContext, df: datafusion.DataFrame) -> datafusion.DataFrame

    awaited on the same loop with the statement's plan, whose result is executed instead (the
    lakehouse answers counting questions over ``log_entries`` from ``log_stats`` this way); and::

        def release(self, ctx: datafusion.SessionContext, *, discard: bool) -> None

    called from a server thread once nothing of the query runs on ``ctx`` any more (its stream
    ended, its metadata answered, or it failed: then ``discard`` is True), so the provider may
    reuse the context for a later session (the lakehouse pools them) or drop it.
    """

    @property
    def partitions(self) -> PartitionAdmin | None:
        """Partition administration behind ``list_partitions``/``retire_partitions``/…, or None."""
        ...

    async def session(self, request: SessionRequest) -> datafusion.SessionContext:
        """Return a fresh session for one query.

        Runs on the application's event loop (the one that owns the PostgreSQL pool). The
        returned context must have: the global views registered as tables (names of
        ``GetTables``); ``view_instance``; the SQL functions registered with
        ``register_sql_functions(ctx, **request.function_context)``; a runtime memory pool of
        ``request.memory_limit_bytes``; and, when the request has a range, the views filtered
        to it (Micromegas's row-filter rule).

        Raises:
            sirius.lakehouse.LakehouseError: the lakehouse cannot serve the session (reported
                to the client as INVALID_ARGUMENT for ``ViewError``, else INTERNAL).
        """
        ...
