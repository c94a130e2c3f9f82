"""A bounded pool of prepared DataFusion contexts that query sessions borrow and hand back clean.

Why: DataFusion caches Parquet footers and file statistics in a context's ``RuntimeEnv``
(``datafusion.runtime.metadata_cache_limit``, ``file_statistics_cache_limit``), keyed by the
file's path, size and modification time. A fresh context per session re-reads and decodes every
footer while planning (a trace lookup over ten 2.4 M-span partitions: ~25-45 ms fresh against
~11 ms in a context that read them before, ``bench/README.md``), and datafusion-python 55 cannot
share one runtime between contexts. So contexts are reused instead: a session borrows one
(created on demand when none is idle, Sirius's stateless functions already registered), adds
its own tables and functions, and gives it back. Partition files are immutable and every write
has a new name (``partition_file_key``: a UUID per file, ``put_if_absent``), so a cached footer
is never stale.

Giving a context back (:meth:`ContextPool.release`) removes everything a session may have added
and checks the result against what the context held when it was made; any difference, error or
doubt discards the context instead of keeping it:

* every table of every schema is deregistered (views, ``from_arrow`` frames, table-function
  results), and no catalog or schema may have been added;
* scalar, aggregate and window functions not in the prepared set are deregistered (the
  caller's rights, bound to its session: admin and block functions); the names must then
  equal the prepared set. A function registered under a prepared name (Sirius's or one of
  DataFusion's own) replaced it, which names alone cannot show and which cannot be undone:
  the contexts the pool makes are :class:`PooledContext` s, which remember every function
  registered on them, and such a context is dropped. Table functions cannot be listed: the
  session names those it registered (``view_instance``), and a context on which more were
  registered than named is dropped;
* settings are set back where the session changed them (``SET`` of Parquet pushdown for a
  lookup by id; callers' SQL cannot run ``SET``, ``_read_only_sql.py``) and every setting of
  ``information_schema.df_settings`` must equal its value when the pool made its first
  context for the same memory bound.

A context is used by one session at a time; its memory pool (the per-query bound) belongs to its
runtime, so contexts are pooled per memory bound. At most ``max_idle`` wait idle; more given
back are dropped. The metadata caches are bounded per context by DataFusion (50 MiB and 20 MiB by
default), so idle contexts hold at most ``max_idle`` times that.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import datafusion

__all__ = ["ContextPool", "PoolCounters", "PooledContext"]

_SETTINGS_SQL = "SELECT name, value FROM information_schema.df_settings"


@dataclass(slots=True)
class PoolCounters:
    """What the pool did (for tests and benchmarks).

    Attributes:
        created: contexts made because none was idle.
        reused: borrowings served by an idle context.
        returned: contexts given back clean and kept idle.
        discarded: contexts given back but dropped (not clean, an error, or the pool full).
    """

    created: int = 0
    reused: int = 0
    returned: int = 0
    discarded: int = 0


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a context holds when it is made: the state every returned context must match."""

    udfs: frozenset[str]
    udafs: frozenset[str]
    udwfs: frozenset[str]


class PooledContext(datafusion.SessionContext):
    """A ``SessionContext`` that remembers the functions registered on it since it was lent.

    DataFusion lists functions by name only, and a registration under a taken name replaces
    the function silently; table functions are not listed at all. What a session registered
    is known here instead (``SessionContext``'s own ``register_*`` methods are the only way
    in: callers' SQL cannot ``CREATE FUNCTION``, ``_read_only_sql.py``).
    """

    def __init__(
        self, config: datafusion.SessionConfig | None = None, runtime: datafusion.RuntimeEnvBuilder | None = None
    ) -> None:
        super().__init__(config, runtime)
        self.registered_functions: set[tuple[str, str]] = set()
        """``(kind, name)`` of the scalar (``udf``), aggregate (``udaf``) and window (``udwf``) functions."""
        self.registered_table_functions = 0

    def register_udf(self, udf: datafusion.ScalarUDF) -> None:
        super().register_udf(udf)
        self.registered_functions.add(("udf", udf.name))

    def register_udaf(self, udaf: datafusion.AggregateUDF) -> None:
        super().register_udaf(udaf)
        self.registered_functions.add(("udaf", udaf.name))

    def register_udwf(self, udwf: datafusion.WindowUDF) -> None:
        super().register_udwf(udwf)
        self.registered_functions.add(("udwf", udwf.name))

    def register_udtf(self, func: datafusion.TableFunction) -> None:
        super().register_udtf(func)
        self.registered_table_functions += 1

    def forget_registrations(self) -> None:
        """Start a new record (the context is prepared, or cleaned for another session)."""
        self.registered_functions = set()
        self.registered_table_functions = 0


def _replaced_prepared(ctx: datafusion.SessionContext, prepared: _Prepared, udtfs: set[str]) -> bool:
    """Whether a function of the prepared set was registered again, or unnamed table functions were added."""
    if not isinstance(ctx, PooledContext):
        return False  # a context made elsewhere: checked by names only
    kinds = {"udf": prepared.udfs, "udaf": prepared.udafs, "udwf": prepared.udwfs}
    replaced = any(name in kinds[kind] for kind, name in ctx.registered_functions)
    return replaced or ctx.registered_table_functions > len(udtfs)


def _settings(ctx: datafusion.SessionContext) -> dict[str, str | None]:
    table = ctx.sql(_SETTINGS_SQL).to_arrow_table()
    return dict(zip(table.column("name").to_pylist(), table.column("value").to_pylist(), strict=True))


def _tables(ctx: datafusion.SessionContext) -> list[tuple[str, str, str]]:
    found = []
    for catalog_name in ctx.catalog_names():
        catalog = ctx.catalog(catalog_name)
        for schema_name in catalog.names():
            found.extend((catalog_name, schema_name, t) for t in catalog.schema(schema_name).names())
    return found


class ContextPool:
    """Prepared contexts per memory bound, borrowed by one session at a time.

    Args:
        make: builds a prepared context for a memory bound (None: unbounded): settings and
            the functions every session has.
        max_idle: contexts kept idle in all (0: none is ever kept, every session gets a new one).
    """

    def __init__(self, make: Callable[[int | None], datafusion.SessionContext], *, max_idle: int) -> None:
        self._make = make
        self._max_idle = max_idle
        self._lock = threading.Lock()  # FlightSQL gives contexts back from its stream threads
        self._idle: dict[int | None, list[datafusion.SessionContext]] = {}
        # Contexts made here and not dropped (weak: a session never closed just loses its context).
        self._prepared: weakref.WeakKeyDictionary[datafusion.SessionContext, _Prepared] = weakref.WeakKeyDictionary()
        self._settings: dict[int | None, dict[str, str | None]] = {}
        self.counters = PoolCounters()

    @property
    def idle(self) -> int:
        """Contexts waiting to be borrowed."""
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def acquire(self, memory_limit_bytes: int | None) -> datafusion.SessionContext:
        """An idle context of this memory bound, or a new one."""
        with self._lock:
            idle = self._idle.get(memory_limit_bytes)
            if idle:
                self.counters.reused += 1
                return idle.pop()
        ctx = self._make(memory_limit_bytes)
        if isinstance(ctx, PooledContext):
            ctx.forget_registrations()  # the prepared functions; what the session adds counts
        prepared = _Prepared(frozenset(ctx.udfs()), frozenset(ctx.udafs()), frozenset(ctx.udwfs()))
        # The reference settings of this bound, read once (a context never kept needs none).
        settings = None if self._max_idle == 0 or memory_limit_bytes in self._settings else _settings(ctx)
        with self._lock:
            self.counters.created += 1
            if self._max_idle > 0:
                self._prepared[ctx] = prepared
                if settings is not None:
                    self._settings.setdefault(memory_limit_bytes, settings)
        return ctx

    def release(
        self,
        ctx: datafusion.SessionContext,
        memory_limit_bytes: int | None,
        *,
        udtfs: Iterable[str] = (),
        settings: dict[str, str] | None = None,
        discard: bool = False,
    ) -> bool:
        """Clean ``ctx`` and keep it for another session; True if kept, False if dropped.

        Args:
            ctx: a context ``acquire`` gave.
            memory_limit_bytes: the memory bound it was acquired for.
            udtfs: table functions the session registered (they cannot be listed).
            settings: settings the session may have changed, with the value to set back.
            discard: drop it without cleaning (the session failed or was not finished).
        """
        with self._lock:
            if any(ctx is idle for contexts in self._idle.values() for idle in contexts):
                return False  # given back already (a second close): listed once, lent once
            prepared = self._prepared.pop(ctx, None)
            full = sum(len(v) for v in self._idle.values()) >= self._max_idle
            reference = self._settings.get(memory_limit_bytes)
        if discard or prepared is None or full or reference is None:
            kept = False
        else:
            kept = self._clean(ctx, prepared, reference, udtfs, settings)
        if not kept:
            with self._lock:
                self.counters.discarded += 1
            return False
        with self._lock:
            if sum(len(v) for v in self._idle.values()) >= self._max_idle:
                self.counters.discarded += 1
                return False
            self._prepared[ctx] = prepared
            self._idle.setdefault(memory_limit_bytes, []).append(ctx)
            self.counters.returned += 1
        return True

    def _clean(
        self,
        ctx: datafusion.SessionContext,
        prepared: _Prepared,
        reference: dict[str, str | None],
        udtfs: Iterable[str],
        settings: dict[str, str] | None,
    ) -> bool:
        """Remove what a session added; whether the context is then exactly as prepared."""
        try:
            udtfs = set(udtfs)
            if _replaced_prepared(ctx, prepared, udtfs):
                return False
            for name in udtfs:
                ctx.deregister_udtf(name)
            if {(c, s) for c, s, _ in _tables(ctx)} - {("datafusion", "public")}:
                return False
            if set(ctx.catalog_names()) != {"datafusion"} or set(ctx.catalog().names()) != {"public"}:
                return False
            for _, _, table in _tables(ctx):
                ctx.deregister_table(table)
            for listed, expected, deregister in (
                (ctx.udfs, prepared.udfs, ctx.deregister_udf),
                (ctx.udafs, prepared.udafs, ctx.deregister_udaf),
                (ctx.udwfs, prepared.udwfs, ctx.deregister_udwf),
            ):
                for name in set(listed()) - expected:
                    deregister(name)
                if frozenset(listed()) != expected:
                    return False
            current = _settings(ctx)
            changed = {k: v for k, v in (settings or {}).items() if current.get(k) != v}
            for key, value in changed.items():
                ctx.sql(f"SET {key} = {value}").collect()
            if changed:
                current = _settings(ctx)
            if isinstance(ctx, PooledContext):
                ctx.forget_registrations()
            return not _tables(ctx) and current == reference
        except Exception:  # noqa: BLE001 - any doubt drops the context; the session is already done
            return False
