"""The production :class:`SessionProvider`: sessions from the lakehouse's ``SessionFactory``.

For each request it builds a ``QuerySession`` over the request's range (partition selection,
global views, ``view_instance`` and the SQL functions), runs the JIT updates of the
``view_instance(…)`` calls the SQL names, and hands DataFusion's context to the server. Nested
queries of Sirius table functions (``process_spans``, ``perfetto_trace_chunks``) go through
:meth:`prepare` first, so their ``view_instance`` calls are materialised too.

The session is restricted to the caller's audiences (:func:`read_scope`): a caller that is not
an admin sees only the processes of its audiences, through every view, ``view_instance`` and
the functions taking an id; the gateway and Explore query through here with their user's
credential, so they are restricted alike.
"""

from __future__ import annotations

import weakref

import datafusion
import pyarrow as pa

from ..identity import ANONYMOUS as ANONYMOUS_PRINCIPAL
from ..identity import read_audiences
from ..lakehouse import (
    Lakehouse,
    LakehousePartitionAdmin,
    PartitionAdmin,
    QueryRange,
    QuerySession,
    ReadScope,
    SessionFactory,
    SessionSettings,
    unstamped_audience_from_env,
)
from ._bulk_ingest import bulk_ingest
from ._query_governance import QueryGovernance
from ._session import Caller, SessionRequest

__all__ = ["LakehouseSessionProvider", "read_scope"]


def read_scope(caller: Caller, unstamped_audience: str | None) -> ReadScope | None:
    """What ``caller`` may read: None (everything) for admins and when authentication is off."""
    principal = caller.principal
    if caller.is_admin or principal.method == ANONYMOUS_PRINCIPAL.method:
        return None
    audiences = read_audiences(principal)
    return None if audiences is None else ReadScope(audiences, unstamped_audience)


class LakehouseSessionProvider:
    """Serves queries over a :class:`~sirius.lakehouse.Lakehouse`.

    Args:
        lake: the lakehouse (its pool belongs to the event loop the server is given).
        settings: DataFusion tunables of the sessions.
        unstamped_audience: the audience of processes written without one
            (``MICROMEGAS_UNSTAMPED_AUDIENCE``, read once when omitted).

    Each session gets the request's per-query memory pool. Its :attr:`governance` (query audit
    log and deny list, in the lakehouse's PostgreSQL) is picked up by the FlightSQL server.
    """

    def __init__(
        self, lake: Lakehouse, settings: SessionSettings | None = None, *, unstamped_audience: str | None = ""
    ) -> None:
        self._lake = lake
        self._unstamped = unstamped_audience_from_env() if unstamped_audience == "" else unstamped_audience
        self._factory = SessionFactory(lake, settings)
        self._partitions = LakehousePartitionAdmin(lake)
        self._sessions: weakref.WeakKeyDictionary[datafusion.SessionContext, QuerySession] = weakref.WeakKeyDictionary()
        self.governance = QueryGovernance.for_pool(lake.pool)

    @property
    def partitions(self) -> PartitionAdmin | None:
        """The lakehouse's partition administration."""
        return self._partitions

    async def session(self, request: SessionRequest) -> datafusion.SessionContext:
        """A session over the request's range, with the SQL's ``view_instance`` calls materialised."""
        query_range = None
        if request.begin_ns is not None and request.end_ns is not None:
            query_range = QueryRange(request.begin_ns, request.end_ns)
        context = {"partitions": self._partitions, **request.function_context}
        scope = read_scope(request.caller, self._unstamped)
        session = await self._factory.create(
            query_range, memory_limit_bytes=request.memory_limit_bytes, scope=scope, **context
        )
        self._sessions[session.ctx] = session
        if request.sql:
            await session.prepare(request.sql)
        return session.ctx

    async def bulk_ingest(self, table: str, data: pa.Table) -> int:
        """Write a ``bulk_ingest`` upload into the lakehouse (``_bulk_ingest.py``); the rows received."""
        return await bulk_ingest(self._lake, table, data)

    async def prepare(self, ctx: datafusion.SessionContext, sql: str) -> None:
        """Materialise the ``view_instance`` calls of ``sql`` before it is planned on ``ctx``."""
        session = self._sessions.get(ctx)
        if session is not None:
            await session.prepare(sql)
