"""Counting questions over ``log_entries`` answered from ``log_stats`` when the answer is the same.

``log_stats`` holds, per minute (``time_bin``), process, level and target, the number of
``log_entries`` rows. A query that only counts rows grouped and filtered by those keys and by
time bounds on whole minutes has the same answer over ``log_stats`` (summing ``count``) as over
``log_entries``, for a few hundredth of the rows read (``bench/aggregates.py``: 0.01-0.5x of
DuckDB over ``log_entries``, against 1.6-4x for the same questions on ``log_entries``).

The decision is taken on DataFusion's own logical plan of the statement (as planned, before
optimisation), never on the SQL text, so every spelling DataFusion accepts is seen the same way.
The plan must be, from the top:

* any chain of ``Projection``, ``Filter`` (HAVING), ``Sort`` and ``Limit`` over
* one ``Aggregate`` whose aggregates are all ``count(*)`` (``count(Int64(1))``, no DISTINCT,
  FILTER or ORDER BY) or ``count(DISTINCT k)``, ``min(k)``, ``max(k)`` of a key ``k``, whose
  group keys use only ``process_id``, ``level`` and ``target`` (columns, literals, operators)
  and ``time`` inside ``date_bin(<whole minutes>, time)`` or ``date_trunc('<minute or
  coarser>', time)``, over
* an optional ``Filter`` using those key columns and ``time`` only in comparisons with a
  literal whose bound falls on a whole minute (``time >= '12:03'``, ``time < '12:05'``), over
* ``log_entries`` itself (the registered view, not a subquery or CTE of that name).

Such a comparison or time bin has the same value for every row of one minute, so it is a
function of ``time_bin``: the statement is re-planned over a ``log_entries``-shaped projection
of ``log_stats`` (``time_bin AS time``) reusing DataFusion's expressions unchanged, with
``count(*)`` as ``coalesce(sum(count), 0)`` under the same output name (the aggregates of keys
as written).

The data must match too: the rewrite is taken only when every ``log_entries`` partition of the
session lies inside a ``log_stats`` partition's insert range, each of those ``log_stats``
partitions counted (``source_data_hash``) exactly the ``log_entries`` rows now stored in its
insert range (none stale, none partial), the session has no audience restriction (it filters
``log_entries`` by process properties ``log_stats`` lacks), and its query range cuts no minute.
Anything else plans over ``log_entries`` as written.

Columns of the process (``exe``, ``username``, ``computer``) are functions of ``process_id``:
``log_entries`` copies them from the process's row, which is written once and never changed
(``INSERT … ON CONFLICT DO NOTHING``), and the ``processes`` view reads the same row. A statement
grouping or filtering by them is planned over ``log_stats`` joined with the session's
``processes`` on ``process_id`` — only when that view holds exactly one row for every
``process_id`` of the session's ``log_stats`` (checked once per session by one query over both;
a process missing from ``processes``, e.g. not yet materialised, keeps the statement as written).

``min(time)`` and ``max(time)`` are finer than a minute, yet ``log_stats`` says in which minute
each group's first and last rows lie. A statement with them first runs the statement's groups
over ``log_stats`` (``min``/``max`` of ``time_bin``, a few thousand rows), giving ``L`` (the
latest first minute of any group, plus a minute) and ``H`` (the earliest last minute). Every
group's first row is then before ``L`` and its last row at or after ``H``, so the exact bounds
come from the ``log_entries`` rows with ``time < L OR time >= H`` alone (Parquet statistics skip
the partitions between), appended to the ``log_stats`` rows with a count of 0 so they change no
count: ``min(time)`` becomes the ``min`` of those rows' real times.

The same machinery answers statistics of ``measures`` from ``measure_stats`` (per minute,
process, target, name and unit: row count, sum/min/max of ``value``, count and sum of ``delta``;
``PreAggregate`` describes each pair): ``count(*)``, ``count(value)``, ``avg(value)`` (the sum
of the sums over the sum of the counts), ``sum``/``min``/``max(value)``, ``count(delta)`` and
``sum(delta)``, grouped and filtered as above by those keys, the process's columns and whole
minutes. Counts, minima and maxima are exact (``measure_stats`` computes them with DataFusion,
so NaN and -0.0 order as they do over ``measures``); sums and averages add the same values in
another order, as DataFusion's own parallel aggregation does, so they agree to the last few
bits. ``min/max(time)`` of measures is not answered (``measure_stats`` has no exact times).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import datafusion
import pyarrow as pa
from datafusion import functions as f
from datafusion import lit
from datafusion.expr import Expr, SortExpr

from ._partitions import Partition
from ._time_range import NS_PER_MINUTE, TimeRange, to_ns

__all__ = [
    "LOG_STATS",
    "MEASURE_STATS",
    "SPAN_STATS",
    "LogStatsRewriter",
    "PreAggregate",
    "log_stats_covers",
    "minute_aligned_range",
]

_PROCESS_COLUMNS = ("exe", "username", "computer")
_EXACT_TIME = "__exact_time"
_TIME = "time"
_COUNT_NAMES = frozenset({"count(Int64(1))", "count(*)"})
_OUTER = frozenset({"Projection", "Filter", "Sort", "Limit"})
_PLAIN = frozenset({"Column", "Literal", "BinaryExpr", "InList", "Not", "IsNull", "IsNotNull", "Negative", "Cast"})
_COMPARE = {">=": ">=", ">": ">", "<": "<", "<=": "<=", "=": "=", "!=": "!=", "<>": "!="}
_FLIP = {">=": "<=", ">": "<", "<": ">", "<=": ">=", "=": "=", "!=": "!="}
_COARSE_UNITS = frozenset({"minute", "hour", "day", "week", "month", "quarter", "year"})
_FAR_FUTURE_NS = 2**62
# ISO-8601 instants to the nanosecond: Python reads the seconds and the zone as DataFusion does,
# the fraction is read here (datetime stops at microseconds).
_INSTANT = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")


@dataclass(frozen=True, slots=True)
class PreAggregate:
    """A per-minute pre-aggregate (``target``) of a view (``source``) and what it answers.

    Attributes:
        source: the view statements name (``log_entries``).
        target: the pre-aggregate view (``log_stats``), one row per minute (``time_bin``) and keys.
        keys: its key columns besides ``time_bin`` (every one also a column of ``source``).
        stats: its statistic columns; ``count`` is the number of ``source`` rows of the row.
        aggregates: aggregate expressions over ``source`` (DataFusion's name, e.g.
            ``avg(measures.value)``) and the aggregate over ``target``'s columns answering them.
        time_bounds: ``min(time)``/``max(time)`` answered too (``log_stats``'s bounded relation).
        exact_check: a query over ``target`` answering one integer ``n``; statements are
            rewritten only when it is 0 (``measure_stats``: no NaN among the values).
        time: the time column of ``source`` that ``time_bin`` bins (``start_time`` of spans).
        ranged: sessions with a query range may be rewritten (when it cuts no minute). False
            when the session's range filter reads another column too (spans overlapping the
            range by ``start_time`` and ``end_time``: not a function of the start minute).
    """

    source: str
    target: str
    keys: frozenset[str]
    stats: tuple[str, ...] = ("count",)
    aggregates: Mapping[str, Callable[[], Expr]] = field(default_factory=dict)
    time_bounds: bool = False
    exact_check: str | None = None
    time: str = _TIME
    ranged: bool = True

    @property
    def columns(self) -> frozenset[str]:
        """Columns a statement may group and filter by: the keys and the process's columns."""
        return self.keys | frozenset(_PROCESS_COLUMNS)

    @property
    def time_bound_names(self) -> dict[str, Callable[[Expr], Expr]]:
        """``min(time)``/``max(time)`` as DataFusion names them, when answered."""
        if not self.time_bounds:
            return {}
        return {f"min({self.source}.{self.time})": f.min, f"max({self.source}.{self.time})": f.max}

    def base_sql(self) -> str:
        """``target`` shaped like ``source``: ``time_bin`` as ``time``, keys and statistics."""
        columns = ", ".join([*sorted(self.keys), *self.stats])
        return f"SELECT time_bin AS {self.time}, {columns} FROM {self.target}"  # noqa: S608

    def joined_sql(self) -> str:
        """``base_sql`` with the process's columns, typed as in ``source`` (dictionary strings)."""
        columns = ", ".join(f"s.{c}" for c in [*sorted(self.keys), *self.stats])
        processes = ", ".join(f"arrow_cast(p.{c}, 'Dictionary(Int32, Utf8)') AS {c}" for c in _PROCESS_COLUMNS)
        return (
            f"SELECT s.time_bin AS {self.time}, {columns}, {processes}"  # noqa: S608
            f" FROM {self.target} AS s JOIN processes AS p ON s.process_id = p.process_id"
        )

    def processes_check_sql(self) -> str:
        """Rows: process_ids of ``target`` without a processes row, processes rows beyond one per id."""
        return (
            f"SELECT (SELECT count(*) FROM (SELECT DISTINCT process_id FROM {self.target}) AS s"  # noqa: S608
            " WHERE s.process_id NOT IN (SELECT process_id FROM processes)) AS missing,"
            " (SELECT count(*) - count(DISTINCT process_id) FROM processes) AS repeated"
        )


def _count_of(column: str) -> Callable[[], Expr]:
    return lambda: f.coalesce(f.sum(datafusion.col(column)), lit(0))


LOG_STATS = PreAggregate("log_entries", "log_stats", frozenset({"process_id", "level", "target"}), time_bounds=True)
"""Counts of ``log_entries`` rows per minute, process, level and target."""

MEASURE_STATS = PreAggregate(
    "measures",
    "measure_stats",
    frozenset({"process_id", "target", "name", "unit"}),
    stats=("count", "value_sum", "value_min", "value_max", "delta_count", "delta_sum"),
    # DataFusion's grouped min/max of floats mishandle NaN (views/_measure_stats.py).
    exact_check="SELECT count(*) AS n FROM measure_stats WHERE value_nans > 0",
    aggregates={
        # a row's value is never null: count(value) is the row count
        "count(measures.value)": _count_of("count"),
        "avg(measures.value)": lambda: f.sum(datafusion.col("value_sum")) / f.sum(datafusion.col("count")),
        "sum(measures.value)": lambda: f.sum(datafusion.col("value_sum")),
        "min(measures.value)": lambda: f.min(datafusion.col("value_min")),
        "max(measures.value)": lambda: f.max(datafusion.col("value_max")),
        "count(measures.delta)": _count_of("delta_count"),
        "sum(measures.delta)": lambda: f.sum(datafusion.col("delta_sum")),
    },
)
"""Statistics of ``measures`` per minute, process, target, name and unit."""

SPAN_STATS = PreAggregate(
    "otel_spans",
    "span_stats",
    frozenset({"process_id", "service_name", "name", "kind", "status"}),
    stats=("count", "duration_sum", "duration_min", "duration_max"),
    aggregates={
        # a span's duration is never null: count(duration) is the span count
        "count(otel_spans.duration)": _count_of("count"),
        "sum(otel_spans.duration)": lambda: f.sum(datafusion.col("duration_sum")),
        "min(otel_spans.duration)": lambda: f.min(datafusion.col("duration_min")),
        "max(otel_spans.duration)": lambda: f.max(datafusion.col("duration_max")),
    },
    time="start_time",
    ranged=False,
)
"""Span counts and durations of ``otel_spans`` per start minute, process, service, name, kind, status."""


class _NotExactError(Exception):
    """The plan is not a shape ``log_stats`` answers exactly."""


def minute_aligned_range(query_range: TimeRange | None) -> bool:
    """Whether the session's row filter ``begin <= time <= end`` keeps whole minutes only.

    >>> minute_aligned_range(TimeRange(60_000_000_000, 120_000_000_000 - 1))
    True
    >>> minute_aligned_range(TimeRange(60_000_000_000, 120_000_000_000))
    False
    """
    if query_range is None:
        return True
    begin_ok = query_range.begin_ns <= 0 or query_range.begin_ns % NS_PER_MINUTE == 0
    end_ok = query_range.end_ns >= _FAR_FUTURE_NS or (query_range.end_ns + 1) % NS_PER_MINUTE == 0
    return begin_ok and end_ok


def log_stats_covers(entries: Sequence[Partition], stats: Sequence[Partition], stored: Sequence[Partition]) -> bool:
    """Whether the ``log_stats`` partitions count exactly the ``log_entries`` rows a session reads.

    Args:
        entries: the session's ``log_entries`` partitions.
        stats: the session's ``log_stats`` partitions.
        stored: every current-schema ``log_entries`` partition whose insert range overlaps one of
            ``stats`` (the ones a ``log_stats`` partition was computed from).
    """
    ordered = sorted(stats, key=lambda p: p.begin_insert_ns)
    begins = [p.begin_insert_ns for p in ordered]
    for e in entries:  # each partition read lies inside one log_stats insert range
        i = bisect.bisect_right(begins, e.begin_insert_ns) - 1
        if i < 0 or not ordered[i].insert_range.contains(e.insert_range):
            return False
    counted = [0] * len(ordered)
    for e in stored:
        i = bisect.bisect_right(begins, e.begin_insert_ns) - 1
        if i >= 0 and ordered[i].insert_range.contains(e.insert_range):
            counted[i] += e.num_rows
            continue
        # Not inside any: it must overlap none (a partial overlap would be counted in part).
        j = bisect.bisect_left(begins, e.end_insert_ns)
        if any(ordered[k].insert_range.overlaps(e.insert_range) for k in range(max(i, 0), j)):
            return False
    return all(p.source_count == n for p, n in zip(ordered, counted, strict=True))


def _instant_ns(value: pa.Scalar) -> int:
    if pa.types.is_timestamp(value.type):
        unit = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[value.type.unit]
        return int(value.cast(pa.int64()).as_py()) * unit
    if pa.types.is_string(value.type) or pa.types.is_large_string(value.type):
        found = _INSTANT.match(str(value.as_py()).strip())
        if found is None:
            raise _NotExactError(str(value.as_py()))
        zone = found.group(3) or "+00:00"
        moment = datetime.fromisoformat(found.group(1) + ("+00:00" if zone == "Z" else zone))
        return to_ns(moment) + int((found.group(2) or "0").ljust(9, "0"))
    raise _NotExactError(str(value.type))


def _time_bound_exact(op: str, bound_ns: int) -> bool:
    # time >= a and time < b are functions of the minute when a, b are whole minutes;
    # time > a is time >= a + 1 and time <= b is time < b + 1.
    if op in (">=", "<"):
        return bound_ns % NS_PER_MINUTE == 0
    if op in (">", "<="):
        return (bound_ns + 1) % NS_PER_MINUTE == 0
    return False


def _column_name(expr: datafusion.Expr, spec: PreAggregate) -> str:
    variant = expr.to_variant()
    if variant.relation() not in (None, spec.source):
        raise _NotExactError(variant.relation())
    return variant.name()


def _check_row_expr(expr: datafusion.Expr, seen: set[str], spec: PreAggregate) -> None:
    """Raise unless ``expr`` has one value per (minute, keys…); add its columns to ``seen``."""
    kind = expr.variant_name()
    if kind == "Column":
        name = _column_name(expr, spec)
        if name not in spec.columns:
            raise _NotExactError(expr.schema_name())
        seen.add(name)
        return
    if kind == "Literal":
        return
    if kind == "BinaryExpr":
        left, right = expr.rex_call_operands()
        op = expr.rex_call_operator()
        for column, literal, oriented in ((left, right, op), (right, left, _FLIP.get(op, ""))):
            if column.variant_name() == "Column" and _column_name(column, spec) == spec.time:
                if literal.variant_name() != "Literal" or op not in _COMPARE:
                    raise _NotExactError(expr.schema_name())
                if not _time_bound_exact(_COMPARE[oriented], _instant_ns(literal.python_value())):
                    raise _NotExactError(expr.schema_name())
                return
        _check_row_expr(left, seen, spec)
        _check_row_expr(right, seen, spec)
        return
    if kind in _PLAIN:
        for operand in _operands(expr):
            _check_row_expr(operand, seen, spec)
        return
    raise _NotExactError(kind)


def _operands(expr: datafusion.Expr) -> list[datafusion.Expr]:
    kind = expr.variant_name()
    if kind == "InList":
        variant = expr.to_variant()
        return [variant.expr(), *variant.list()]
    if kind in ("Not", "IsNull", "IsNotNull", "Negative", "Cast"):
        return list(expr.rex_call_operands())
    raise _NotExactError(kind)


def _check_group_expr(expr: datafusion.Expr, seen: set[str], spec: PreAggregate) -> None:
    if expr.variant_name() != "ScalarFunction":
        _check_row_expr(expr, seen, spec)
        return
    name = expr.rex_call_operator()
    args = expr.rex_call_operands()
    if len(args) != 2 or args[1].variant_name() != "Column" or _column_name(args[1], spec) != spec.time:
        raise _NotExactError(expr.schema_name())
    if args[0].variant_name() != "Literal":
        raise _NotExactError(expr.schema_name())
    value = args[0].python_value()
    if name == "date_bin" and pa.types.is_interval(value.type):
        months, days, nanoseconds = value.as_py()
        stride = days * 86_400 * 10**9 + nanoseconds
        if months == 0 and stride > 0 and stride % NS_PER_MINUTE == 0:
            return
    if name == "date_trunc" and isinstance(value.as_py(), str) and value.as_py().lower() in _COARSE_UNITS:
        return
    raise _NotExactError(expr.schema_name())


def _is_count_star(expr: datafusion.Expr) -> bool:
    if expr.variant_name() != "AggregateFunction" or expr.schema_name() not in _COUNT_NAMES:
        return False
    variant = expr.to_variant()
    return variant.aggregate_type() == "count" and not variant.is_distinct()


def _key_aggregate(expr: datafusion.Expr, spec: PreAggregate) -> str | None:
    """``count(DISTINCT key)``, ``min(key)`` or ``max(key)``: same over the per-minute rows.

    Every pre-aggregate row stands for at least one source row with its keys, so the
    set of key values of a group is the same on both. The name is compared whole, so a FILTER
    or ORDER BY clause (which would show in it) keeps the statement as written. Returns the key,
    None for any other expression.
    """
    if expr.variant_name() != "AggregateFunction":
        return None
    name = expr.schema_name()
    for key in spec.columns:
        source = spec.source
        if name in (f"count(DISTINCT {source}.{key})", f"min({source}.{key})", f"max({source}.{key})"):
            return key
    return None


class LogStatsRewriter:
    """Decides, per statement of one session, whether to plan it over a pre-aggregate.

    Args:
        ctx: the session's context (``spec.source`` and ``spec.target`` registered).
        query_range: the session's range (None: no range).
        coverage: coroutine function answering whether ``spec.target`` covers the session's
            ``spec.source`` rows exactly (called once, on the first statement of the shape).
        spec: the pair of views (``LOG_STATS``: ``log_entries`` over ``log_stats``).
    """

    def __init__(
        self,
        ctx: datafusion.SessionContext,
        query_range: TimeRange | None,
        coverage: Callable[[], Any],
        spec: PreAggregate = LOG_STATS,
    ) -> None:
        self._spec = spec
        self._ctx = ctx
        self._query_range = query_range
        self._coverage = coverage
        self._covered: bool | None = None
        self._processes_match: bool | None = None
        self._exact_answer: bool | None = None
        self._source_plan: str | None = None
        self._registrations = 0
        self.rewrites = 0
        """Statements planned over the pre-aggregate instead of its source."""

    def source_changed(self) -> None:
        """The source view was registered: its plan is compared afresh.

        Registered a second time, it holds rows beyond its partitions (JIT rows not yet
        materialised) that the pre-aggregate did not count: no statement is rewritten any more.
        """
        self._source_plan = None
        self._registrations += 1
        if self._registrations > 1:
            self._covered = False

    async def rewrite(self, df: datafusion.DataFrame) -> datafusion.DataFrame:
        """``df`` planned over the pre-aggregate when that gives the same answer, else ``df``."""
        parts = self._shape(df)
        if parts is None or not self._range_exact() or not await self._covers() or not self._exact():
            return df
        aggregate, predicate, outer, seen = parts
        joined = not seen.isdisjoint(_PROCESS_COLUMNS)
        if joined and not self._processes_cover():
            return df
        try:
            bounds = not seen.isdisjoint(self._spec.time_bound_names)
            rewritten = self._plan(aggregate, predicate, outer, joined=joined, bounds=bounds)
            same = [(x.name, x.type) for x in rewritten.schema()] == [(x.name, x.type) for x in df.schema()]
        except Exception:  # noqa: BLE001 - any planning problem: keep the statement as written
            return df
        if not same:
            return df
        self.rewrites += 1
        return rewritten

    async def _covers(self) -> bool:
        if self._covered is None:
            self._covered = bool(await self._coverage())
        return self._covered

    def _range_exact(self) -> bool:
        """Whether the session's range filter keeps whole minutes of the pre-aggregate's rows."""
        if self._query_range is not None and not self._spec.ranged:
            return False
        return minute_aligned_range(self._query_range)

    def _exact(self) -> bool:
        """Whether the pre-aggregate's own condition holds (``spec.exact_check`` answers 0)."""
        if self._spec.exact_check is None:
            return True
        if self._exact_answer is None:
            try:
                self._exact_answer = self._ctx.sql(self._spec.exact_check).to_pylist()[0].get("n") == 0
            except Exception:  # noqa: BLE001 - the check fails: keep statements as written
                self._exact_answer = False
        return self._exact_answer

    def _processes_cover(self) -> bool:
        """Whether ``processes`` has exactly one row for each ``process_id`` of the pre-aggregate."""
        if self._processes_match is None:
            try:
                row = self._ctx.sql(self._spec.processes_check_sql()).to_pylist()[0]
            except Exception:  # noqa: BLE001 - no processes view, or it fails: keep statements as written
                row = {"missing": 1}
            self._processes_match = row.get("missing") == 0 and row.get("repeated") == 0
        return self._processes_match

    def _shape(self, df: datafusion.DataFrame) -> tuple[Any, Any | None, list[Any], set[str]] | None:
        """The Aggregate node, its input filter, the nodes above it and the columns used; None unless exact."""
        plan = df.logical_plan()
        outer: list[Any] = []
        while plan.to_variant().__class__.__name__ in _OUTER:
            outer.append(plan.to_variant())
            plan = plan.inputs()[0]
        aggregate = plan.to_variant()
        if aggregate.__class__.__name__ != "Aggregate":
            return None
        seen: set[str] = set()
        try:
            predicate = self._check_aggregate(aggregate, plan.inputs()[0], seen)
        except (_NotExactError, ValueError, TypeError, KeyError):
            return None
        return aggregate, predicate, outer, seen

    def _check_aggregate(self, aggregate: Any, node: datafusion.LogicalPlan, seen: set[str]) -> Any | None:
        """Raise unless the Aggregate node has the shape; return its input Filter's predicate."""
        spec = self._spec
        for expr in aggregate.aggregate_exprs():
            is_function = expr.variant_name() == "AggregateFunction"
            if is_function and expr.schema_name() in spec.time_bound_names:
                seen.add(expr.schema_name())
            elif is_function and expr.schema_name() in spec.aggregates:
                continue
            elif not _is_count_star(expr):
                key = _key_aggregate(expr, spec)
                if key is None:
                    raise _NotExactError("aggregates")
                seen.add(key)
        for expr in aggregate.group_by_exprs():
            _check_group_expr(expr, seen, spec)
        predicate = None
        if node.to_variant().__class__.__name__ == "Filter":
            predicate = node.to_variant().predicate()
            _check_row_expr(predicate, seen, spec)
            node = node.inputs()[0]
        alias = node.to_variant()
        if alias.__class__.__name__ != "SubqueryAlias" or alias.alias() != spec.source:
            raise _NotExactError("source")
        if node.inputs()[0].display_indent() != self._registered_source_plan():
            raise _NotExactError(f"not the registered {spec.source}")
        return predicate

    def _registered_source_plan(self) -> str:
        if self._source_plan is None:
            star = self._ctx.sql(f"SELECT * FROM {self._spec.source}").logical_plan()  # noqa: S608
            self._source_plan = star.inputs()[0].inputs()[0].display_indent()
        return self._source_plan

    def _frame(self, base: str, predicate: Any | None) -> datafusion.DataFrame:
        """``base`` as a relation named like the source, filtered by the statement's predicate."""
        frame = self._ctx.sql(f"SELECT * FROM ({base}) AS {self._spec.source}")  # noqa: S608
        return frame if predicate is None else frame.filter(Expr(predicate))

    def _time_bounds(self, base: str, aggregate: Any, predicate: Any | None) -> tuple[int, int] | None:
        """``(L, H)`` in ns for the statement's groups over ``log_stats`` (None: no group)."""
        frame = self._frame(base, predicate)
        time = datafusion.col(self._spec.time)
        groups = frame.aggregate(
            [Expr(e) for e in aggregate.group_by_exprs()], [f.min(time).alias("lo"), f.max(time).alias("hi")]
        )
        row = groups.aggregate([], [f.max(datafusion.col("lo")).alias("l"), f.min(datafusion.col("hi")).alias("h")])
        table = row.to_arrow_table()
        low, high = (table.column(name).cast(pa.int64())[0].as_py() for name in ("l", "h"))
        if low is None or high is None:
            return None
        return int(low) + NS_PER_MINUTE, int(high)

    def _bounded_base(self, base: str, aggregate: Any, predicate: Any | None, *, joined: bool) -> str:
        """``base`` with the source rows holding each group's first and last times appended."""
        time = self._spec.time
        keys = [time, *sorted(self._spec.keys), *(_PROCESS_COLUMNS if joined else ())]
        columns = ", ".join(keys)
        stats = f"SELECT {columns}, count, CASE WHEN false THEN {time} END AS {_EXACT_TIME} FROM ({base})"  # noqa: S608
        bounds = self._time_bounds(base, aggregate, predicate)
        if bounds is None:
            return stats
        low, high = (f"arrow_cast({ns}, 'Timestamp(Nanosecond, Some(\"+00:00\"))')" for ns in bounds)
        rows = (
            f"SELECT {columns}, CAST(0 AS BIGINT) AS count, {time} AS {_EXACT_TIME} FROM {self._spec.source}"  # noqa: S608
            f" WHERE {time} < {low} OR {time} >= {high}"
        )
        return f"{stats} UNION ALL {rows}"

    def _plan(
        self, aggregate: Any, predicate: Any | None, outer: list[Any], *, joined: bool, bounds: bool = False
    ) -> datafusion.DataFrame:
        # log_stats as a log_entries-shaped relation named log_entries: DataFusion's expressions
        # (qualified log_entries.level, log_entries.time …) resolve against it unchanged.
        spec = self._spec
        base = spec.joined_sql() if joined else spec.base_sql()
        if bounds:
            base = self._bounded_base(base, aggregate, predicate, joined=joined)
        frame = self._frame(base, predicate)
        # count(*) over log_entries rows is the sum of their per-minute counts (0 for no rows);
        # min/max(time) are those of the appended log_entries rows' real times (NULL elsewhere).
        # Statistics come from the pre-aggregate's columns (spec.aggregates); the other
        # aggregates (of keys) are computed as written.
        bound_names = spec.time_bound_names
        counts = [
            _count_of("count")().alias(e.schema_name())
            if _is_count_star(e)
            else bound_names[e.schema_name()](datafusion.col(_EXACT_TIME)).alias(e.schema_name())
            if e.schema_name() in bound_names
            else spec.aggregates[e.schema_name()]().alias(e.schema_name())
            if e.schema_name() in spec.aggregates
            else Expr(e).alias(e.schema_name())
            for e in aggregate.aggregate_exprs()
        ]
        frame = frame.aggregate([Expr(e) for e in aggregate.group_by_exprs()], counts)
        for node in reversed(outer):
            kind = node.__class__.__name__
            if kind == "Projection":
                frame = frame.select(*(Expr(e) for e in node.projections()))
            elif kind == "Filter":
                frame = frame.filter(Expr(node.predicate()))
            elif kind == "Sort":
                frame = frame.sort(
                    *(SortExpr(Expr(e.expr()), e.ascending(), e.nulls_first()) for e in node.sort_exprs())
                )
                fetch = node.get_fetch_val()
                if fetch is not None:
                    frame = frame.limit(int(fetch))
            else:  # Limit
                skip, fetch = node.skip(), node.fetch()
                offset = 0 if skip is None else int(skip.python_value().as_py())
                count = None if fetch is None else int(fetch.python_value().as_py())
                frame = frame.limit(count, offset) if count is not None else frame.limit(2**62, offset)
        return frame
