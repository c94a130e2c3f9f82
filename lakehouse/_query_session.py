"""DataFusion sessions over the lakehouse: partitions selected in PostgreSQL, JIT before planning.

``SessionFactory.create(query_range)`` builds a ``QuerySession``:

* every global view set is registered as a plain table (``log_entries``, ``measures``,
  ``processes``, ``streams``, ``blocks``, ``log_stats``, ``measure_stats`` …): its partitions of
  the current schema whose event times overlap the query range (one PostgreSQL query for all views, §7), read by
  DataFusion's own Parquet reader (local files, or a bucket through a registered cloud store)
  pruning row groups on their statistics (filters are pushed into the decoding only for lookups
  by id, ``SessionSettings``), and wrapped in the view's row filter when a range is given;
* ``view_instance(view_set, id)`` is a table function. DataFusion-python cannot run async work
  or queries while planning (``environment.md`` §5.2), so ``QuerySession.sql`` first finds the
  ``view_instance('…', '…')`` calls in the SQL text, runs their JIT update and builds their
  (filtered) DataFrames, and only then plans; the function hands back the prepared DataFrame;
* a global view set the SQL names may add rows not yet materialised (``fresh_global_rows``:
  the DDL-defined views that allow JIT), registered again before planning when a range is given;
* ``register_sql_functions(ctx, …)`` adds the other SQL functions;
* a caller restricted to some audiences (``scope``, ``_audience_scope.py``) sees only the rows
  of its audiences' processes: every table is restricted where it is registered (here, and
  nowhere else), and ``view_instance`` of another audience's process is empty, without JIT.

A session is meant for one query (or a few with the same range): the partition list is a
snapshot taken at ``create``. Its DataFusion context comes from the factory's pool
(``_context_pool.py``) and goes back to it when the session is closed (``close``, or leaving
``async with``), so the Parquet footers and statistics DataFusion cached while planning serve
later sessions; a session never closed simply keeps its context to itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import datafusion
import pyarrow as pa
from datafusion import SessionContext, Table, col, lit, udtf

from ._audience_scope import ReadScope, SessionAudience, VisibleProcesses, forget_audience_of_session
from ._context_pool import ContextPool, PoolCounters
from ._exceptions import ViewError
from ._log_stats_rewrite import (
    LOG_STATS,
    MEASURE_STATS,
    SPAN_STATS,
    LogStatsRewriter,
    PreAggregate,
    log_stats_covers,
)
from ._materialize import jit_update
from ._partition_admin import LakehousePartitionAdmin
from ._partition_files import PartitionFiles as _Files
from ._partitions import Partition, find_overlapping, partitions_for_query
from ._session_settings import QueryRange, SessionSettings, prepared_context
from ._sql_functions import prepare_sql, register_sql_functions
from ._sql_hex_ids import PUSHDOWN_OPTION, is_id_lookup, plan_sql
from ._time_range import TimeRange
from ._view_ddl import is_view_ddl, sql_identifiers
from ._view_set import GLOBAL_INSTANCE, TIMESTAMP, ViewSet

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = [
    "QueryRange",
    "QuerySession",
    "SessionFactory",
    "SessionSettings",
    "find_view_instance_calls",
    "substitute_view_instance_calls",
]

_CALL = re.compile(r"\bview_instance\s*\(\s*'((?:[^']|'')*)'\s*,\s*'((?:[^']|'')*)'\s*\)", re.IGNORECASE)


def find_view_instance_calls(sql: str) -> list[tuple[str, str]]:
    """The distinct ``view_instance('set', 'id')`` calls with literal arguments, in order.

    >>> find_view_instance_calls("SELECT * FROM view_instance('log_entries', 'p1') JOIN VIEW_INSTANCE ( 'a' ,'b' )")
    [('log_entries', 'p1'), ('a', 'b')]
    """
    seen: dict[tuple[str, str], None] = {}
    for match in _CALL.finditer(sql):
        seen[(match.group(1).replace("''", "'"), match.group(2).replace("''", "'"))] = None
    return list(seen)


def substitute_view_instance_calls(sql: str, names: dict[tuple[str, str], str]) -> str:
    """``sql`` with each ``view_instance('set', 'id')`` call replaced by ``names[(set, id)]``.

    Engines without table functions (Sail's Spark SQL) read an instance from a view of that name.

    >>> substitute_view_instance_calls("SELECT * FROM view_instance('a', 'b')", {("a", "b"): "v1"})
    'SELECT * FROM v1'
    """

    def name(match: re.Match[str]) -> str:
        return names[(match.group(1).replace("''", "'"), match.group(2).replace("''", "'"))]

    return _CALL.sub(name, sql)


def _timestamp(ns: int) -> datafusion.Expr:
    return lit(pa.scalar(ns, type=TIMESTAMP))


def _row_filter(df: datafusion.DataFrame, view: ViewSet, query_range: TimeRange | None) -> datafusion.DataFrame:
    if query_range is None:
        return df
    low, high = view.row_filter_bounds()
    if low == high:
        return df.filter(col(low) >= _timestamp(query_range.begin_ns), col(low) <= _timestamp(query_range.end_ns))
    return df.filter(col(low) <= _timestamp(query_range.end_ns), col(high) >= _timestamp(query_range.begin_ns))


class QuerySession:
    """A DataFusion ``SessionContext`` over the lakehouse for one query range.

    Attributes:
        ctx: the DataFusion context (global views registered, ``view_instance`` available).
        query_range: the range in ns, or None.
    """

    def __init__(
        self,
        lake: Lakehouse,
        ctx: SessionContext,
        query_range: TimeRange | None,
        files: _Files,
        audience: SessionAudience | None = None,
        *,
        pushdown_filters: bool = False,
        partitions: dict[str, list[Partition]] | None = None,
        log_stats_rewrite: bool = True,
        measure_stats_rewrite: bool = True,
        span_stats_rewrite: bool = True,
        release: Callable[[SessionContext, bool], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.query_range = query_range
        self.audience = audience
        """The caller's restriction to its audiences' processes; None when it sees everything."""
        self._lake = lake
        self._files = files
        self._instances: dict[tuple[str, str], datafusion.DataFrame] = {}
        self.global_frames: dict[str, datafusion.DataFrame] = {}
        """The partitions' rows of each global view (before the range filter), as registered."""
        self._fresh_checked: set[str] = set()
        self._pushdown_default = pushdown_filters
        self._lookup_planned = False
        self._partitions = partitions or {}
        self._release = release  # gives ctx back to its pool (with True: to be dropped)
        self._closed = False
        # One rewriter per pre-aggregate switched on, keyed by the source view it stands in for.
        switched_on = (
            (LOG_STATS, log_stats_rewrite),
            (MEASURE_STATS, measure_stats_rewrite),
            (SPAN_STATS, span_stats_rewrite),
        )
        self._rewriters: dict[str, LogStatsRewriter] = {
            spec.source: LogStatsRewriter(ctx, query_range, functools.partial(self._covers, spec), spec)
            for spec, on in switched_on
            if on
        }
        ctx.register_udtf(udtf(self._view_instance, "view_instance"))

    def close(self, *, discard: bool = False) -> None:
        """End the session: its context goes back to the factory's pool, cleaned, or is dropped.

        Call it once the results are read (nothing may still stream from ``ctx``); the session
        and its DataFrames must not be used after. ``discard`` drops the context instead (a
        query failed or was cut short). Closing twice does nothing.
        """
        if self._closed:
            return
        self._closed = True
        forget_audience_of_session(self.ctx)
        self._instances.clear()
        self.global_frames.clear()
        if self._release is not None:
            self._release(self.ctx, discard)

    def _check_open(self) -> None:
        if self._closed:  # its context may already serve another session
            msg = "this query session is closed"
            raise RuntimeError(msg)

    async def __aenter__(self) -> QuerySession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A failure may leave a stream or state half-way: that context is not reused.
        self.close(discard=exc_type is not None)

    def _view_instance(self, view_set: datafusion.Expr, instance: datafusion.Expr) -> Table:
        key = (_literal(view_set), _literal(instance))
        frame = self._instances.get(key)
        if frame is None:
            msg = (
                f"view_instance{key} was not prepared: pass the SQL through QuerySession.sql "
                "(arguments must be string literals)"
            )
            raise ViewError(msg)
        return Table(frame)

    async def prepare_view_instance(self, view_set: str, instance: str) -> datafusion.DataFrame:
        """Run the JIT update of an instance and build its (range-filtered) DataFrame.

        Raises:
            ViewError: unknown view set, bad instance id, or ``thread_spans`` without a range.
            MetadataStoreError, ObjectStoreError, CorruptBlockError: materialisation failed.
        """
        key = (view_set, instance)
        if key not in self._instances:
            view = self._lake.views.get(view_set)
            view.check_instance(instance)
            if self.audience is not None and not await self.audience.sees_instance(view, instance):
                # Another audience's (or no) process: no rows, and no work done on its behalf.
                self._instances[key] = self.ctx.from_arrow(view.schema.empty_table())
                return self._instances[key]
            await jit_update(self._lake, view_set, instance, self.query_range)
            found = await partitions_for_query(
                self._lake.pool, [(view.name, view.file_schema_hash)], instance, self.query_range
            )
            frame = await self._files.frame(view, found[view.name])
            self._instances[key] = _row_filter(frame, view, self.query_range)
        return self._instances[key]

    async def prepare(self, sql: str) -> None:
        """Materialise every ``view_instance`` the SQL mentions (before planning it).

        View DDL is left alone: the queries of a definition are text until the daemon runs them.
        """
        self._check_open()
        if is_view_ddl(sql):
            return
        for view_set, instance in find_view_instance_calls(sql):
            await self.prepare_view_instance(view_set, instance)
        await self._add_fresh_rows(sql)

    async def _add_fresh_rows(self, sql: str) -> None:
        """Register again, with their rows not yet materialised, the global views ``sql`` names.

        Only with a query range (it bounds the work) and only views whose name is an identifier
        of the SQL (one used as a column name too costs a useless check, never a wrong answer).
        """
        if self.query_range is None:
            return
        words = sql_identifiers(sql)
        for view in self._lake.views.global_views():
            if view.name not in words or view.name in self._fresh_checked or view.name not in self.global_frames:
                continue
            self._fresh_checked.add(view.name)
            fresh = await view.fresh_global_rows(self._lake, self.query_range)
            if fresh is None or fresh.num_rows == 0:
                continue
            frame = self.global_frames[view.name].union(self.ctx.from_arrow(fresh.cast(view.schema)))
            await self.register_global(view, frame)

    async def register_global(self, view: ViewSet, frame: datafusion.DataFrame) -> None:
        """Register the global instance of ``view`` from its rows: range filter, then the caller's audiences.

        The one place a session registers a view's rows, so no table escapes the restriction.
        """
        frame = _row_filter(frame, view, self.query_range)
        rewriter = self._rewriters.get(view.name)
        if rewriter is not None:
            rewriter.source_changed()
        if self.audience is not None:
            frame = await self.audience.restrict(self.ctx, view, frame)
        view.register_global(self.ctx, frame)

    async def sql(self, sql: str) -> datafusion.DataFrame:
        """Plan ``sql`` after the JIT updates it needs; collect the result in a worker thread.

        Raises:
            ViewError: a ``view_instance`` call is invalid.
            RuntimeError: the session is closed.
            Exception: DataFusion's planning errors, unchanged.
        """
        await self.prepare(sql)
        if self._lookup_planned and not self._pushdown_default:
            # plan_sql switched filter pushdown on for the previous statement, a lookup by id;
            # back to the session's setting (read when a scan is planned).
            self.ctx.sql(f"SET {PUSHDOWN_OPTION} = false").collect()
        self._lookup_planned = is_id_lookup(sql)
        return await self.rewrite(plan_sql(self.ctx, prepare_sql(sql)))

    async def rewrite(self, df: datafusion.DataFrame) -> datafusion.DataFrame:
        """``df`` (planned on ``ctx``) over a pre-aggregate when that answers it exactly, else ``df``.

        The pre-aggregates are ``log_stats``, ``measure_stats`` and ``span_stats``. ``sql`` calls
        it; FlightSQL, which plans on ``ctx`` itself, calls it through its provider. A statement
        reads one source at most in the shapes rewritten, so at most one rewriter changes it.
        """
        self._check_open()
        if self.audience is not None:
            return df
        for rewriter in self._rewriters.values():
            rewritten = await rewriter.rewrite(df)
            if rewritten is not df:
                return rewritten
        return df

    @property
    def log_stats_rewrites(self) -> int:
        """Statements of this session planned over ``log_stats`` instead of ``log_entries``."""
        return self._rewrites_of(LOG_STATS)

    @property
    def measure_stats_rewrites(self) -> int:
        """Statements of this session planned over ``measure_stats`` instead of ``measures``."""
        return self._rewrites_of(MEASURE_STATS)

    @property
    def span_stats_rewrites(self) -> int:
        """Statements of this session planned over ``span_stats`` instead of ``otel_spans``."""
        return self._rewrites_of(SPAN_STATS)

    def _rewrites_of(self, spec: PreAggregate) -> int:
        rewriter = self._rewriters.get(spec.source)
        return 0 if rewriter is None else rewriter.rewrites

    async def _covers(self, spec: PreAggregate) -> bool:
        """Whether the session's ``spec.target`` partitions count exactly its ``spec.source`` rows."""
        entries, stats = self._partitions.get(spec.source), self._partitions.get(spec.target)
        if entries is None or stats is None:
            return False
        stored: list[Partition] = list(entries)
        if self.query_range is not None and stats:
            # Partitions without events in the range are not in the session but were counted.
            source = self._lake.views.get(spec.source)
            span = TimeRange(min(p.begin_insert_ns for p in stats), max(p.end_insert_ns for p in stats))
            stored = await find_overlapping(
                self._lake.pool, source.name, GLOBAL_INSTANCE, source.file_schema_hash, span
            )
        return log_stats_covers(entries, stats, stored)


def _literal(expr: Any) -> str:
    value = expr.python_value().as_py() if hasattr(expr, "python_value") else expr
    if not isinstance(value, str):
        msg = f"view_instance arguments must be string literals, got {value!r}"
        raise ViewError(msg)
    return value


class SessionFactory:
    """Builds ``QuerySession`` s over one lakehouse.

    Args:
        lake: the lakehouse.
        settings: DataFusion tunables.
        **function_context: passed to ``register_sql_functions`` for every session (e.g. the
            caller's rights), merged with the per-session context given to ``create``. Every
            session also passes ``lakehouse``, ``query_range`` (``TimeRange | None``),
            ``session`` (the ``QuerySession``) and ``partitions`` (a
            ``LakehousePartitionAdmin`` unless given). The admin SQL functions also need
            ``run_async`` (run a coroutine on the loop from a DataFusion worker thread) and
            ``is_admin``: pass them when the query is executed off the event loop.
    """

    def __init__(self, lake: Lakehouse, settings: SessionSettings | None = None, **function_context: Any) -> None:
        self._lake = lake
        self._settings = settings or SessionSettings()
        self._function_context = function_context
        self._visible = VisibleProcesses()  # audience-restricted callers' processes, across sessions
        self._contexts = ContextPool(
            functools.partial(prepared_context, self._settings), max_idle=self._settings.pooled_contexts
        )

    @property
    def context_counters(self) -> PoolCounters:
        """What the context pool did: contexts created, reused, returned, discarded."""
        return self._contexts.counters

    async def create(
        self,
        query_range: QueryRange | TimeRange | None = None,
        *,
        memory_limit_bytes: int | None = None,
        scope: ReadScope | None = None,
        **function_context: Any,
    ) -> QuerySession:
        """A session whose global views hold the partitions overlapping ``query_range``.

        ``scope`` restricts it to the processes of some audiences (None: everything).

        ``memory_limit_bytes`` bounds the query's memory pool (exceeding it fails the query with
        DataFusion's "Resources exhausted"); None leaves it unbounded.

        Close the session when its results are read (``close`` or ``async with``): its context
        then serves a later session, with the Parquet metadata it cached.

        Raises:
            MetadataStoreError: PostgreSQL failed.
            ObjectStoreError: an in-memory store lost a file.
        """
        time_range = query_range.to_time_range() if isinstance(query_range, QueryRange) else query_range
        await self._lake.refresh_view_definitions()
        ctx = self._contexts.acquire(memory_limit_bytes)
        try:
            return await self._build(ctx, time_range, memory_limit_bytes, scope, function_context)
        except BaseException:
            self._contexts.release(ctx, memory_limit_bytes, discard=True)
            raise

    def _releaser(self, memory_limit_bytes: int | None) -> Callable[[SessionContext, bool], None]:
        # What a session may have left besides tables and functions: its view_instance
        # function and the pushdown setting a lookup by id switched on (plan_sql).
        restore = {PUSHDOWN_OPTION: str(self._settings.pushdown_filters).lower()}

        def release(ctx: SessionContext, discard: bool) -> None:
            self._contexts.release(ctx, memory_limit_bytes, udtfs=("view_instance",), settings=restore, discard=discard)

        return release

    async def _build(
        self,
        ctx: SessionContext,
        time_range: TimeRange | None,
        memory_limit_bytes: int | None,
        scope: ReadScope | None,
        function_context: dict[str, Any],
    ) -> QuerySession:
        forget_audience_of_session(ctx)
        files = _Files(ctx, self._lake.store)
        views = self._lake.views.global_views()
        found = await partitions_for_query(
            self._lake.pool, [(v.name, v.file_schema_hash) for v in views], GLOBAL_INSTANCE, time_range
        )
        audience = None
        if scope is not None:
            audience = await SessionAudience.resolve(self._lake.pool, scope, ctx, self._visible)
        session = QuerySession(
            self._lake,
            ctx,
            time_range,
            files,
            audience,
            pushdown_filters=self._settings.pushdown_filters,
            partitions=found,
            log_stats_rewrite=self._settings.log_stats_rewrite,
            measure_stats_rewrite=self._settings.measure_stats_rewrite,
            span_stats_rewrite=self._settings.span_stats_rewrite,
            release=self._releaser(memory_limit_bytes),
        )
        for view in views:
            frame = await files.frame(view, found[view.name])
            session.global_frames[view.name] = frame
            await session.register_global(view, frame)
        context = {**self._function_context, **function_context}
        context.setdefault("partitions", LakehousePartitionAdmin(self._lake))
        register_sql_functions(
            ctx, stateless=False, lakehouse=self._lake, query_range=time_range, session=session, **context
        )
        return session
