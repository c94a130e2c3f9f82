"""The production :class:`SessionProvider`: sessions from the lakehouse's ``SessionFactory``.

For each request it builds a ``QuerySession`` over the request's range (partition selection,
global views, ``view_instance`` and the SQL functions), runs the JIT updates of the
``view_instance(…)`` calls the SQL names, and hands DataFusion's context to the server. Nested
queries of Sirius table functions (``process_spans``, ``perfetto_trace_chunks``) go through
:meth:`prepare` first, so their ``view_instance`` calls are materialised too.
"""

from __future__ import annotations

import weakref

import datafusion
import pyarrow as pa

from ..lakehouse import (
    Lakehouse,
    LakehousePartitionAdmin,
    PartitionAdmin,
    QueryRange,
    QuerySession,
    SessionFactory,
    SessionSettings,
)
from ._bulk_ingest import bulk_ingest
from ._query_governance import QueryGovernance
from ._session import SessionRequest

__all__ = ["LakehouseSessionProvider"]


class LakehouseSessionProvider:
    """Serves queries over a :class:`~sirius.lakehouse.Lakehouse`.

    Args:
        lake: the lakehouse (its pool belongs to the event loop the server is given).
        settings: DataFusion tunables of the sessions.

    Each session gets the request's per-query memory pool. Its :attr:`governance` (query audit
    log and deny list, in the lakehouse's PostgreSQL) is picked up by the FlightSQL server.
    """

    def __init__(self, lake: Lakehouse, settings: SessionSettings | None = None) -> None:
        self._lake = lake
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
        session = await self._factory.create(query_range, memory_limit_bytes=request.memory_limit_bytes, **context)
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
