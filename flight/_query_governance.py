"""Query audit and deny list of the FlightSQL server (and so of the gateway, its client).

For every statement ``DoGet`` runs, the server asks :class:`QueryGovernance` to:

1. :meth:`~QueryGovernance.begin`: resolve the attribution from the call's headers
   (``x-client-type``/``-agent``/``-entrypoint``/``-session``/``-notebook``/``-cell``,
   ``x-user-id``/``-email``/``-name`` percent-decoded, ``x-org-id``), the client IP (last
   ``x-forwarded-for`` hop, ``x-real-ip``, the gateway's ``x-client-ip``, else the gRPC peer) and
   the statement's fingerprint (``sql_hash``);
2. :meth:`~QueryGovernance.check`: refuse it when a deny rule matches (PERMISSION_DENIED naming
   the rule, its reason and how to lift it). An admin's statement calling the deny-list
   functions themselves is never refused, so a rule cannot lock out its own removal;
3. :meth:`~QueryGovernance.finish`: queue one ``flightsql_query_audit`` record with the timings,
   rows sent, bytes scanned and spills (DataFusion's plan metrics), and status/error.

Auditing never fails or slows a query: records are queued in memory and written in batches by a
task on the application's loop (see ``sirius.lakehouse.QueryAuditLog``).

``peak_memory_bytes`` is what DataFusion's operators report as memory gauges; the Python binding
does not expose the per-query memory pool's own high-water mark, so it is NULL when no operator
reports one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import asyncpg
import datafusion
import pyarrow as pa

from .. import tracing
from ..lakehouse import (
    DenyList,
    QueryAuditLog,
    QueryAuditRecord,
    deny_list_table_functions,
    deny_list_udfs,
    sql_fingerprint,
)
from ._exceptions import (
    FlightSqlError,
    InvalidQueryError,
    QueryDeniedError,
    QueryResourcesError,
    UnsupportedCommandError,
)
from ._session import Caller

__all__ = ["Attribution", "AuditState", "QueryGovernance", "attribution"]

_LOG = logging.getLogger(__name__)
_UNKNOWN = "unknown"
_AUDIT_TARGET = "flightsql_query_audit"
_DENY_FUNCTION_CALL = re.compile(r"\b(?:deny_queries|remove_query_denial|list_query_denials)\s*\(", re.IGNORECASE)
_PEER = re.compile(r"^(?:ipv4:|ipv6:)?\[?(?P<host>[^\]]*?)\]?(?::\d+)?$")
_MEMORY_GAUGES = ("peak_mem_used", "mem_used", "build_mem_used")


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who sent a query, as far as the server can tell (see the module docstring)."""

    client_ip: str
    client: str
    agent: str
    entrypoint: str
    session: str | None
    notebook: str | None
    cell: str | None
    user_id: str
    email: str
    user_name: str | None
    service_account: bool
    service_account_name: str | None
    delegating: bool
    org_id: str | None

    @property
    def principal(self) -> str:
        """The identity stored as ``created_by`` of the deny rules this caller adds."""
        return self.email if self.email != _UNKNOWN else self.user_id


def _peer_host(peer: str | None) -> str:
    if not peer:
        return _UNKNOWN
    match = _PEER.match(peer)
    return match.group("host") if match and match.group("host") else peer


def attribution(headers: Mapping[str, str], caller: Caller, peer: str | None) -> Attribution:
    """Resolve the attribution of a call from its (lower-case) headers, its caller and gRPC peer."""

    def header(name: str) -> str | None:
        value = (headers.get(name) or "").strip()
        return value or None

    def user_header(name: str) -> str | None:
        value = header(name)
        return unquote(value) if value is not None else None

    forwarded = header("x-forwarded-for")
    client_ip = (
        (forwarded.split(",")[-1].strip() if forwarded else None)
        or header("x-real-ip")
        or header("x-client-ip")
        or _peer_host(peer)
    )
    user_id, email, user_name = user_header("x-user-id"), user_header("x-user-email"), user_header("x-user-name")
    keyed = caller.name != "anonymous"
    delegating = keyed and (user_id is not None or email is not None)
    if keyed and not delegating:
        user_id = caller.name
    return Attribution(
        client_ip=client_ip,
        client=header("x-client-type") or _UNKNOWN,
        agent=header("x-client-agent") or _UNKNOWN,
        entrypoint=header("x-client-entrypoint") or _UNKNOWN,
        session=header("x-client-session"),
        notebook=user_header("x-client-notebook"),
        cell=user_header("x-client-cell"),
        user_id=user_id or _UNKNOWN,
        email=email or _UNKNOWN,
        user_name=user_name,
        service_account=keyed,
        service_account_name=caller.name if keyed else None,
        delegating=delegating,
        org_id=header("x-org-id"),
    )


@dataclass
class AuditState:
    """One statement being served: what its audit record needs, filled in as it runs."""

    query_id: str
    sql: str
    sql_hash: str
    who: Attribution
    started_at: datetime
    started: float
    begin_ns: int | None = None
    end_ns: int | None = None
    limit: int | None = None
    context_init_ms: float = 0.0
    planning_ms: float = 0.0
    execution_ms: float = 0.0
    setup_ms: float = 0.0
    df: datafusion.DataFrame | None = None
    rows: Callable[[], int] | None = None
    deny_rule_id: str | None = None
    _finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def elapsed_ms(self) -> float:
        """Milliseconds since the query arrived."""
        return (time.perf_counter() - self.started) * 1000.0

    def match_context(self) -> dict[str, str | None]:
        """The columns deny rules are evaluated over."""
        who = self.who
        return {
            "user_id": who.user_id,
            "email": who.email,
            "service_account": who.service_account_name if who.delegating else None,
            "client": who.client,
            "agent": who.agent,
            "entrypoint": who.entrypoint,
            "session": who.session,
            "notebook": who.notebook,
            "cell": who.cell,
            "client_ip": who.client_ip,
            "sql": self.sql,
            "sql_hash": self.sql_hash,
        }

    def claim_finish(self) -> bool:
        """True the first time only: a query is audited once, whichever path ends it."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            return True


def _error_class(error: FlightSqlError) -> str:
    if isinstance(error, QueryDeniedError):
        return "denied"
    if isinstance(error, (InvalidQueryError, UnsupportedCommandError)):
        return "user"
    if isinstance(error, QueryResourcesError):
        return "resource"
    return "internal"


def _metric(metrics: Any, name: str) -> int:
    value = getattr(metrics, name, None)
    value = value() if callable(value) else value
    return int(value or 0)


def _plan_costs(df: datafusion.DataFrame | None) -> tuple[int, int | None, int, int]:
    """``(bytes_scanned, peak_memory_bytes, spilled_bytes, spill_count)`` of an executed plan."""
    if df is None:
        return 0, None, 0, 0
    scanned, spilled, spills, peak = 0, 0, 0, None
    try:
        for _, metrics in df.execution_plan().collect_metrics():
            scanned += int(metrics.sum_by_name("bytes_scanned") or 0)
            spilled += _metric(metrics, "spilled_bytes")
            spills += _metric(metrics, "spill_count")
            for metric in metrics.metrics():
                if metric.name in _MEMORY_GAUGES and isinstance(metric.value, int):
                    peak = (peak or 0) + metric.value
    except Exception as exc:  # noqa: BLE001 - costs are best effort; the record is still written
        _LOG.debug("query audit: plan metrics unavailable: %s", exc)
    return scanned, peak, spilled, spills


def _to_datetime(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)


class _AuditedSource:
    """A batch source whose end (last batch, error or client going away) finishes the audit."""

    def __init__(self, source: Any, state: AuditState, governance: QueryGovernance) -> None:
        self.schema = source.schema
        self._source = source
        self._state = state
        self._governance = governance

    def next_batch(self) -> pa.RecordBatch | None:
        try:
            batch = self._source.next_batch()
        except FlightSqlError as exc:
            self._governance.finish(self._state, error=exc)
            raise
        if batch is None:
            self._governance.finish(self._state)
        return batch

    def close(self) -> None:
        self._source.close()
        self._governance.finish(self._state, status="incomplete")


class QueryGovernance:
    """Audit log and deny list of one query service (see the module docstring).

    Args:
        deny_list: the service's deny rules.
        audit_log: where audit records go.
    """

    def __init__(self, deny_list: DenyList, audit_log: QueryAuditLog) -> None:
        self.deny_list = deny_list
        self.audit_log = audit_log
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def for_pool(cls, pool: asyncpg.Pool) -> QueryGovernance:
        """Governance over the lakehouse's PostgreSQL (settings from the environment)."""
        return cls(DenyList.from_env(pool), QueryAuditLog(pool))

    async def start(self) -> None:
        """Load the deny rules (a failure leaves none, logged) and start the refresh and audit tasks."""
        if self._tasks:
            return
        try:
            await self.deny_list.refresh()
        except Exception as exc:  # noqa: BLE001 - fail open: the service starts without rules
            self.deny_list.refresh_errors += 1
            _LOG.warning("query deny list not loaded (retried every refresh): %s", exc)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.audit_log.run()), loop.create_task(self._refresh_later())]

    async def _refresh_later(self) -> None:
        await asyncio.sleep(self.deny_list.refresh_seconds)
        await self.deny_list.run_refresh()

    async def stop(self) -> None:
        """Stop the tasks; queued audit records are written first."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def begin(
        self,
        query_id: str,
        sql: str,
        headers: Mapping[str, str],
        caller: Caller,
        peer: str | None,
        *,
        begin_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> AuditState:
        """Start auditing a statement."""
        return AuditState(
            query_id=query_id,
            sql=sql,
            sql_hash=sql_fingerprint(sql),
            who=attribution(headers, caller, peer),
            started_at=datetime.now(UTC),
            started=time.perf_counter(),
            begin_ns=begin_ns,
            end_ns=end_ns,
            limit=limit,
        )

    def check(self, state: AuditState, *, is_admin: bool) -> None:
        """Refuse the statement when a deny rule matches it.

        Raises:
            QueryDeniedError: naming the rule, its reason and how to lift it.
        """
        if not self.deny_list.rules:
            return
        if is_admin and _DENY_FUNCTION_CALL.search(state.sql):
            return  # an admin managing the list is never locked out by it
        rule = self.deny_list.check(state.match_context())
        if rule is None:
            return
        state.deny_rule_id = rule.rule_id
        msg = (
            f"query denied by rule {rule.rule_id} (reason: {rule.reason}); "
            f"ask an admin to lift it with remove_query_denial('{rule.rule_id}')"
        )
        who = state.who
        # Micromegas's denial line, word for word (operators grep for it), through the ``sirius``
        # logger (self-telemetry writes it to log_entries), and the ``query_denied`` measure.
        _LOG.warning(
            "query denied rule_id=%s reason=%s sql_hash=%s user=%s email=%s client=%s entrypoint=%s "
            "client_ip=%s query_id=%s",
            rule.rule_id,
            json.dumps(rule.reason),
            state.sql_hash,
            who.user_id,
            who.email,
            who.client,
            who.entrypoint,
            who.client_ip,
            state.query_id,
        )
        tracing.metric("query_denied", 1, unit="count", target=_AUDIT_TARGET, properties={"rule_id": rule.rule_id})
        raise QueryDeniedError(msg, state.query_id)

    def audited(self, source: Any, state: AuditState) -> _AuditedSource:
        """Wrap a result source so that its end finishes the audit of ``state``."""
        return _AuditedSource(source, state, self)

    def finish(self, state: AuditState, *, error: FlightSqlError | None = None, status: str | None = None) -> None:
        """Queue the audit record of ``state`` (once; never raises)."""
        if not state.claim_finish():
            return
        try:
            total_ms = state.elapsed_ms()
            scanned, peak, spilled, spills = _plan_costs(state.df)
            rows = state.rows() if state.rows is not None else None
            who = state.who
            record = QueryAuditRecord(
                query_id=state.query_id,
                time=state.started_at,
                client_ip=who.client_ip,
                client=who.client,
                agent=who.agent,
                entrypoint=who.entrypoint,
                session=who.session,
                notebook=who.notebook,
                cell=who.cell,
                user_id=who.user_id,
                email=who.email,
                user_name=who.user_name,
                service_account=who.service_account,
                service_account_name=who.service_account_name,
                org_id=who.org_id,
                sql=state.sql,
                sql_hash=state.sql_hash,
                range_begin=_to_datetime(state.begin_ns),
                range_end=_to_datetime(state.end_ns),
                row_limit=state.limit,
                context_init_ms=state.context_init_ms,
                planning_ms=state.planning_ms,
                execution_ms=state.execution_ms,
                setup_ms=state.setup_ms or total_ms,
                total_ms=total_ms,
                status="error" if error is not None else status or "ok",
                error=error.message if error is not None else None,
                error_class=_error_class(error) if error is not None else None,
                output_rows=rows,
                bytes_scanned=scanned,
                peak_memory_bytes=peak,
                spilled_bytes=spilled,
                spill_count=spills,
                deny_rule_id=state.deny_rule_id,
            )
            self.audit_log.submit(record)
            # Self-telemetry (``sirius up --self-telemetry``): the record as one JSON log line under
            # the ``flightsql_query_audit`` target, as Micromegas emits it (ignored unless the
            # tracer runs in this process).
            tracing.info(json.dumps(record.log_fields(), separators=(",", ":")), target=_AUDIT_TARGET)
        except Exception:  # noqa: BLE001 - auditing must never fail a query
            _LOG.exception("query audit: record of %s not queued", state.query_id)

    def table_functions(self, state: AuditState | None, caller: Caller) -> dict[str, Any]:
        """``list_query_denials`` and ``deny_queries`` for this caller (expanded for admins only)."""
        principal = state.who.principal if state is not None else caller.name
        return deny_list_table_functions(self.deny_list, principal)

    def register_udfs(
        self, ctx: datafusion.SessionContext, run_async: Callable[[Coroutine[Any, Any, Any]], Any]
    ) -> None:
        """Register ``remove_query_denial`` on an admin caller's session."""
        for function in deny_list_udfs(self.deny_list, run_async):
            ctx.register_udf(function)
