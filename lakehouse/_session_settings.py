"""What a query session is asked for and tuned by: its time range and the DataFusion settings.

``QueryRange`` is the range a caller gives (headers ``query_range_begin`` / ``query_range_end``);
``SessionSettings`` the tunables of every session a ``SessionFactory`` builds (Parquet pushdown,
pre-aggregate rewrites, the context pool), measured in ``bench/aggregates.py``; ``new_context``
and ``prepared_context`` make the DataFusion contexts those settings describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from datafusion import SessionContext

from ._context_pool import PooledContext
from ._sql_functions import new_session_context, register_sql_functions
from ._time_range import TimeRange, to_ns

__all__ = ["QueryRange", "SessionSettings", "new_context", "prepared_context"]

_FAR_FUTURE_NS = 2**62


@dataclass(frozen=True, slots=True)
class QueryRange:
    """The time range of a query (headers ``query_range_begin`` / ``query_range_end``).

    Either bound may be missing; ``to_time_range`` fills it with the epoch or the far future.
    """

    begin: datetime | int | None = None
    end: datetime | int | None = None

    def to_time_range(self) -> TimeRange | None:
        """The range in ns, or None when neither bound is set."""
        if self.begin is None and self.end is None:
            return None
        begin = 0 if self.begin is None else to_ns(self.begin)
        end = _FAR_FUTURE_NS if self.end is None else to_ns(self.end)
        return TimeRange(begin, max(begin, end))


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Session tunables.

    Attributes:
        target_partitions: DataFusion parallelism (None = number of cores).
        batch_size: rows per record batch.
        pushdown_filters: evaluate filters while decoding Parquet. Off by default:
            ``bench/aggregates.py`` measured it slower on the observability queries that filter
            (10 M rows, DataFusion 55: errors in a time window 1.6x slower with it, the latest
            errors by time 5x slower); row-group pruning on statistics does not need it. A
            statement comparing ``trace_id``, ``span_id`` or ``parent_span_id`` with a literal
            runs with it on whatever this says: a lookup decodes only the matching rows (a
            trace among small one-row-group partitions: 19 ms with it, 77 ms without).
        page_index: read the Parquet page index the partitions carry, to skip pages whose
            statistics exclude a filter. Off: no measured gain on the query set.
        log_stats_rewrite: plan counting questions over ``log_entries`` over ``log_stats``
            when it answers them exactly (``_log_stats_rewrite.py``; 0.01-0.5x of DuckDB
            over ``log_entries`` instead of 1.6-4x in ``bench/aggregates.py``).
        measure_stats_rewrite: plan statistics of ``measures`` (count, avg, min, max, sum)
            over ``measure_stats`` when it answers them exactly (same module and conditions).
        span_stats_rewrite: plan span counts and duration sums, minima and maxima of
            ``otel_spans`` over ``span_stats`` when it answers them exactly (sessions without
            a range only: the range filter of spans reads their end time too).
        pooled_contexts: DataFusion contexts kept for reuse by later sessions once a session
            is closed (``_context_pool.py``; 0: a new context for every session). A reused
            context has the Parquet footers and statistics earlier sessions read cached: a
            trace lookup planned in ~11 ms instead of ~25-45 ms (``bench/aggregates.py``).
    """

    target_partitions: int | None = None
    batch_size: int = 8192
    pushdown_filters: bool = False
    page_index: bool = False
    log_stats_rewrite: bool = True
    measure_stats_rewrite: bool = True
    span_stats_rewrite: bool = True
    pooled_contexts: int = 4


def new_context(
    settings: SessionSettings, memory_limit_bytes: int | None, context_class: type[SessionContext] = SessionContext
) -> SessionContext:
    """A new context configured by ``settings``, with no tables and no functions of Sirius."""
    # One place configures sessions (new_session_context: information_schema, Utf8 strings,
    # the per-query memory pool); the lakehouse adds its Parquet pushdown settings on top.
    return new_session_context(
        memory_limit_bytes=memory_limit_bytes,
        target_partitions=settings.target_partitions,
        batch_size=settings.batch_size,
        options={
            "datafusion.execution.parquet.pushdown_filters": str(settings.pushdown_filters).lower(),
            "datafusion.execution.parquet.reorder_filters": "true",
            "datafusion.execution.parquet.enable_page_index": str(settings.page_index).lower(),
        },
        context_class=context_class,
    )


def prepared_context(settings: SessionSettings, memory_limit_bytes: int | None) -> SessionContext:
    """A context as every session starts from: settings and the stateless SQL functions.

    A ``PooledContext``: the pool learns what a session registered on it (``_context_pool.py``).
    """
    ctx = new_context(settings, memory_limit_bytes, PooledContext)
    register_sql_functions(ctx)
    return ctx
