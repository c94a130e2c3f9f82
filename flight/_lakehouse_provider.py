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

import os
import weakref

import datafusion
import pyarrow as pa

from ..identity import ANONYMOUS as ANONYMOUS_PRINCIPAL
from ..identity import read_audiences
from ..lakehouse import (
    Lakehouse,
    LakehousePartitionAdmin,
    PartitionAdmin,
    PoolCounters,
    QueryRange,
    QuerySession,
    ReadScope,
    SessionFactory,
    SessionSettings,
    unstamped_audience_from_env,
)
from ._bulk_ingest import bulk_ingest
from ._environment_variables import SIRIUS_SAIL_CLUSTER
from ._exceptions import InvalidQueryError
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
        sail_cluster: Spark Connect URL of the Sail cluster for ``x-sirius-engine: sail``
            statements (``SIRIUS_SAIL_CLUSTER``, read once when omitted; unset: refused).

    Each session gets the request's per-query memory pool. The server gives each context back
    when its query is over (:meth:`release`); the factory then reuses it for a later session
    (``SessionSettings.pooled_contexts``), with the Parquet metadata DataFusion cached in it.
    Its :attr:`governance` (query audit log and deny list, in the lakehouse's PostgreSQL) is
    picked up by the FlightSQL server.
    """

    def __init__(
        self,
        lake: Lakehouse,
        settings: SessionSettings | None = None,
        *,
        unstamped_audience: str | None = "",
        sail_cluster: str | None = "",
    ) -> None:
        self._lake = lake
        if sail_cluster == "":
            sail_cluster = os.environ.get(SIRIUS_SAIL_CLUSTER, "").strip() or None
        self.sail_cluster = sail_cluster
        """The Sail cluster of ``x-sirius-engine: sail`` statements, or None."""
        self._unstamped = unstamped_audience_from_env() if unstamped_audience == "" else unstamped_audience
        self._factory = SessionFactory(lake, settings)
        self._partitions = LakehousePartitionAdmin(lake)
        self._sessions: weakref.WeakKeyDictionary[datafusion.SessionContext, QuerySession] = weakref.WeakKeyDictionary()
        self.governance = QueryGovernance.for_pool(lake.pool)

    @property
    def context_counters(self) -> PoolCounters:
        """What the sessions' context pool did (created, reused, returned, discarded)."""
        return self._factory.context_counters

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
            try:
                await session.prepare(request.sql)
            except BaseException:
                self.release(session.ctx, discard=True)  # the server never got it: it is dropped here
                raise
        return session.ctx

    async def run_on_sail(self, request: SessionRequest) -> pa.Table:
        """The result of ``request.sql`` (Spark SQL) on the Sail cluster, over the same partitions.

        Raises:
            InvalidQueryError: no cluster is configured, or the caller is restricted to some
                audiences (the Sail views are not restricted: such callers stay on DataFusion).
            DistributedError: the cluster is unreachable or failed the statement.
        """
        if self.sail_cluster is None:
            msg = f"no Sail cluster is configured on this server (set {SIRIUS_SAIL_CLUSTER}=sc://host:port)"
            raise InvalidQueryError(msg, request.query_id)
        if read_scope(request.caller, self._unstamped) is not None:
            msg = "the Sail engine serves callers who may read every process; this key is restricted to some audiences"
            raise InvalidQueryError(msg, request.query_id)
        from ..distributed import DistributedError, SailEngine  # the distributed extra: needed only here

        time_range = QueryRange(request.begin_ns, request.end_ns).to_time_range()
        try:
            return await SailEngine(self.sail_cluster).query(self._lake, request.sql, time_range)
        except DistributedError as exc:  # Spark SQL errors, an unreachable cluster: said as they are
            raise InvalidQueryError(str(exc), request.query_id) from None

    async def bulk_ingest(self, table: str, data: pa.Table) -> int:
        """Write a ``bulk_ingest`` upload into the lakehouse (``_bulk_ingest.py``); the rows received."""
        return await bulk_ingest(self._lake, table, data)

    async def prepare(self, ctx: datafusion.SessionContext, sql: str) -> None:
        """Materialise the ``view_instance`` calls of ``sql`` before it is planned on ``ctx``."""
        session = self._sessions.get(ctx)
        if session is not None:
            await session.prepare(sql)

    def release(self, ctx: datafusion.SessionContext, *, discard: bool) -> None:
        """The query on ``ctx`` is over: its context goes back to the factory's pool, or is dropped."""
        session = self._sessions.pop(ctx, None)
        if session is not None:
            session.close(discard=discard)

    async def rewrite(self, ctx: datafusion.SessionContext, df: datafusion.DataFrame) -> datafusion.DataFrame:
        """The statement planned on ``ctx`` over ``log_stats`` when that answers it exactly."""
        session = self._sessions.get(ctx)
        return df if session is None else await session.rewrite(df)
