"""The query audit log: one row per FlightSQL query in ``flightsql_query_audit``, written in batches.

Micromegas emits one JSON record per query under the log target ``flightsql_query_audit``
(``QueryAuditRecord``); Sirius stores the same fields as columns of a PostgreSQL table of that
name (lakehouse schema, see ``_migrations.py``), ``user`` spelled ``user_id`` and ``limit``
spelled ``row_limit`` (both reserved words in PostgreSQL), with the query's start ``time``.

:class:`QueryAuditLog` never slows or fails a query: :meth:`QueryAuditLog.submit` only appends
to an in-memory queue (from any thread); :meth:`QueryAuditLog.run`, a task on the event loop
that owns the pool, copies the queue to PostgreSQL every ``flush_seconds`` or as soon as
``batch_size`` records wait. A failed insert is logged and its records counted in
:attr:`QueryAuditLog.failed_records`; records beyond ``max_pending`` (PostgreSQL unreachable for
long) are dropped and counted in :attr:`QueryAuditLog.dropped_records`. Rows older than the
retention are deleted by the retention pass (:func:`delete_audit_before`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from dataclasses import astuple, dataclass, fields
from datetime import datetime

import asyncpg

from ._pool import pg_errors

__all__ = ["AUDIT_TABLE", "QueryAuditLog", "QueryAuditRecord", "delete_audit_before"]

_LOG = logging.getLogger(__name__)

AUDIT_TABLE = "flightsql_query_audit"


@dataclass(frozen=True, slots=True)
class QueryAuditRecord:
    """One query as audited (field order = column order of ``flightsql_query_audit``).

    Timings are milliseconds: ``context_init_ms`` builds the session, ``planning_ms`` expands
    table functions and plans, ``execution_ms`` starts the execution, ``setup_ms`` is everything
    before the first batch is pulled, ``total_ms`` ends when the last batch is sent (or the query
    fails or is abandoned). ``status`` is ``ok``, ``error`` or ``incomplete`` (the client went
    away mid-stream); ``error_class`` is ``user``, ``resource``, ``internal`` or ``denied``.
    """

    query_id: str
    time: datetime
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
    org_id: str | None
    sql: str
    sql_hash: str
    range_begin: datetime | None
    range_end: datetime | None
    row_limit: int | None
    context_init_ms: float
    planning_ms: float
    execution_ms: float
    setup_ms: float
    total_ms: float
    status: str
    error: str | None
    error_class: str | None
    output_rows: int | None
    bytes_scanned: int
    peak_memory_bytes: int | None
    spilled_bytes: int
    spill_count: int
    deny_rule_id: str | None

    def log_fields(self) -> dict[str, object]:
        """The record as Micromegas's JSON audit line spells it (its field names and order).

        Optional fields are left out when unset, as Micromegas's serializer skips them;
        ``peak_memory_bytes`` is 0 when no operator reported one.
        """
        optional = {
            "session": self.session,
            "notebook": self.notebook,
            "cell": self.cell,
        }
        out: dict[str, object] = {
            "query_id": self.query_id,
            "client_ip": self.client_ip,
            "client": self.client,
            "agent": self.agent,
            "entrypoint": self.entrypoint,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update({"user": self.user_id, "email": self.email})
        if self.user_name is not None:
            out["name"] = self.user_name
        out["service_account"] = self.service_account
        if self.service_account_name is not None:
            out["service_account_name"] = self.service_account_name
        out["sql"] = self.sql
        if self.range_begin is not None:
            out["range_begin"] = self.range_begin.isoformat()
        if self.range_end is not None:
            out["range_end"] = self.range_end.isoformat()
        if self.row_limit is not None:
            out["limit"] = self.row_limit
        out.update(
            {
                "context_init_ms": self.context_init_ms,
                "planning_ms": self.planning_ms,
                "execution_ms": self.execution_ms,
                "setup_ms": self.setup_ms,
                "total_ms": self.total_ms,
                "status": self.status,
            }
        )
        if self.error is not None:
            out["error"] = self.error
        if self.error_class is not None:
            out["error_class"] = self.error_class
        if self.output_rows is not None:
            out["output_rows"] = self.output_rows
        out.update(
            {
                "bytes_scanned": self.bytes_scanned,
                "peak_memory_bytes": self.peak_memory_bytes or 0,
                "spilled_bytes": self.spilled_bytes,
                "spill_count": self.spill_count,
                "sql_hash": self.sql_hash,
            }
        )
        return out


AUDIT_COLUMNS = tuple(f.name for f in fields(QueryAuditRecord))


class QueryAuditLog:
    """Batched, asynchronous writer of audit records (see the module docstring).

    Args:
        pool: PostgreSQL pool of the lakehouse.
        batch_size: records per insert; a full batch is written without waiting.
        flush_seconds: longest time a record waits in memory.
        max_pending: records kept while PostgreSQL is failing; older ones are dropped.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, batch_size: int = 500, flush_seconds: float = 1.0, max_pending: int = 10_000
    ) -> None:
        self._pool = pool
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pending: collections.deque[QueryAuditRecord] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.written_records = 0
        self.failed_records = 0
        self.dropped_records = 0

    def submit(self, record: QueryAuditRecord) -> None:
        """Queue ``record`` (any thread; never blocks on I/O, never raises)."""
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped_records += 1
            self._pending.append(record)
            full = len(self._pending) >= self.batch_size
        if full and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def flush(self) -> None:
        """Write every queued record now (failures are logged and counted, not raised)."""
        while True:
            with self._lock:
                batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
            if not batch:
                return
            try:
                async with self._pool.acquire() as conn:
                    with pg_errors("writing the query audit log"):
                        await conn.copy_records_to_table(
                            AUDIT_TABLE, records=[astuple(r) for r in batch], columns=AUDIT_COLUMNS
                        )
                self.written_records += len(batch)
            except Exception as exc:  # noqa: BLE001 - auditing must never fail the service
                self.failed_records += len(batch)
                _LOG.warning("query audit: %d records not written: %s", len(batch), exc)

    async def run(self) -> None:
        """Flush every ``flush_seconds`` or when a batch is full, until cancelled (then flush once more)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
                self._wake.clear()
                await self.flush()
        finally:
            self._loop = None
            await asyncio.shield(self.flush())


async def delete_audit_before(pool: asyncpg.Pool, cutoff: datetime, *, batch_size: int = 1000) -> int:
    """Delete audit rows of queries started before ``cutoff``, ``batch_size`` rows per transaction.

    Returns:
        The number of rows deleted.

    Raises:
        MetadataStoreError: PostgreSQL failed (what was committed stays deleted).
    """
    deleted = 0
    while True:
        async with pool.acquire() as conn:
            with pg_errors("deleting old query audit rows"):
                status = await conn.execute(
                    "DELETE FROM flightsql_query_audit WHERE ctid = ANY(ARRAY("
                    "SELECT ctid FROM flightsql_query_audit WHERE time < $1 LIMIT $2))",
                    cutoff,
                    batch_size,
                )
        count = int(status.rsplit(" ", 1)[-1])
        deleted += count
        if count < batch_size:
            return deleted
