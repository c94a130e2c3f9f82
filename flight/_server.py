"""The FlightSQL server (``sirius flight``, part of ``sirius up``), built on ``pyarrow.flight``.

RPCs (micromegas-query.md §10, §12; environment.md §6):

* ``DoGet``: ``Any(TicketStatementQuery)`` (the ``micromegas`` client), the raw
  ``TicketStatementQuery`` bytes, and the tickets ``GetFlightInfo`` hands out (statements,
  prepared statements, metadata commands).
* ``GetFlightInfo``: ``CommandStatementQuery`` and ``CommandPreparedStatementQuery`` (one
  endpoint, no schema, no planning, as Micromegas), ``CommandGetSqlInfo``, ``CommandGetTables``,
  ``CommandGetCatalogs``, ``CommandGetDbSchemas``, ``CommandGetTableTypes``, and the key
  commands (empty results).
* ``GetSchema``: statements (planned, not run) and metadata commands.
* ``DoAction``: ``CreatePreparedStatement`` (handle = the SQL, IPC-stream schema),
  ``ClosePreparedStatement``, ``CloseSession``.
* ``DoPut``: bound parameters of a prepared statement (``CommandPreparedStatementQuery``),
  answered with the bound statement's handle (``DoPutPreparedStatementResult``); bulk
  ingestion (``CommandStatementIngest``, admin only, ``_bulk_ingest.py``) answered with
  ``DoPutUpdateResult``.
* ``Handshake``: basic auth answered with a bearer header (``_auth.py``).

Each query: headers parsed (``_headers.py``), a session from the :class:`SessionProvider`
(awaited on the application's event loop), Sirius table functions expanded, the plan
executed and streamed batch by batch through an Arrow C stream (``_c_stream.py``) with a
per-query deadline and memory pool. Errors never carry Python tracebacks; see
``_exceptions.py`` for the statuses clients get.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

import datafusion
import pyarrow as pa
from pyarrow import flight

from .. import tracing
from ..collector import ServerTls
from ..identity import Authenticator, PermissionDeniedError, as_access_policy
from ..lakehouse import (
    ParameterError,
    SqlEnvironment,
    bind_parameters,
    expand_table_functions,
    plan_sql,
    prepare_sql,
    read_only_sql,
    table_functions,
)
from . import _metadata as meta
from . import _protocol as proto
from ._auth import MIDDLEWARE_KEY, CallContext, CallContextFactory, HandshakeHandler
from ._bulk_ingest import DEFAULT_MAX_INGEST_BYTES, serve_ingest
from ._c_stream import ErrorSource, export_reader
from ._exceptions import (
    AdminOnlyError,
    FlightSqlError,
    InternalQueryError,
    InvalidQueryError,
    QueryDeniedError,
    QueryResourcesError,
    QueryTimeoutError,
    ServerBusyError,
    UnsupportedCommandError,
    classify_datafusion_error,
    internal_error,
)
from ._headers import RequestOptions, parse_request_options
from ._query_governance import AuditState, QueryGovernance
from ._results import QueryExecution, ResultTypes, empty_ipc_stream, output_schema
from ._session import Caller, SessionProvider, SessionRequest

__all__ = ["DEFAULT_FLIGHT_PORT", "FlightSqlConfig", "FlightSqlServer", "FlightSqlService"]

_LOG = logging.getLogger(__name__)
_QUERY_SPAN = tracing.span_desc("flightsql.query", target="sirius.flightsql")
T = TypeVar("T")

DEFAULT_FLIGHT_PORT = 50051
SERVER_NAME = "Sirius Flight SQL Server"
_CLOSE_SESSION_CLOSED = b"\x08\x01"  # arrow.flight.protocol.CloseSessionResult{status: CLOSED}


def _version() -> str:
    try:
        return metadata.version("sirius")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


@dataclass(frozen=True, slots=True)
class FlightSqlConfig:
    """Settings of the FlightSQL server.

    Attributes:
        host: bind address.
        port: bind port (0 picks a free one).
        query_timeout_seconds: a query (planning, execution and streaming) running longer is
            cancelled and its memory freed.
        query_memory_limit_bytes: memory pool of each query (None: unbounded).
        max_concurrent_queries: further queries get UNAVAILABLE (retry later).
        max_batch_bytes: larger result batches are sliced (Grafana's client takes ≤ 4 MiB messages).
        admin_key_names: when given, exactly the principals of these names may run admin
            functions; None (the default) lets the access policy decide (``sirius.identity``:
            ``MICROMEGAS_ADMINS``, the stored ``admins`` group, and every caller in an
            environment-keys-only deployment, Micromegas's rule).
        session_timeout_seconds: bound on the provider's ``session()`` (JIT ETL included).
        max_ingest_bytes: largest ``bulk_ingest`` upload (Arrow bytes) accepted.
        tls: serve ``grpc+tls`` with this certificate (None: plain ``grpc``).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_FLIGHT_PORT
    query_timeout_seconds: float = 600.0
    query_memory_limit_bytes: int | None = 4 * 1024**3
    max_concurrent_queries: int = 32
    max_batch_bytes: int = 2 * 1024 * 1024
    admin_key_names: frozenset[str] | None = None
    session_timeout_seconds: float = 600.0
    max_ingest_bytes: int = DEFAULT_MAX_INGEST_BYTES
    tls: ServerTls | None = None

    @property
    def scheme(self) -> str:
        """``grpc+tls`` when the server serves TLS, else ``grpc`` (the URI scheme clients use)."""
        return "grpc+tls" if self.tls is not None else "grpc"

    def __post_init__(self) -> None:
        if self.query_timeout_seconds <= 0:
            msg = "query_timeout_seconds must be positive"
            raise ValueError(msg)
        if self.query_memory_limit_bytes is not None and self.query_memory_limit_bytes <= 0:
            msg = "query_memory_limit_bytes must be positive (or None for no limit)"
            raise ValueError(msg)
        if self.max_concurrent_queries <= 0 or self.max_batch_bytes <= 0 or self.max_ingest_bytes <= 0:
            msg = "max_concurrent_queries, max_batch_bytes and max_ingest_bytes must be positive"
            raise ValueError(msg)


@dataclass
class _Query:
    """A request being served; the slot is released when the execution ends."""

    query_id: str
    caller: Caller
    options: RequestOptions
    deadline: float
    released: bool = False
    audit: AuditState | None = None
    contexts: list[datafusion.SessionContext] = field(default_factory=list)
    """The sessions built for this request (nested ranges included), handed back at release."""


class FlightSqlServer(flight.FlightServerBase):
    """The pyarrow Flight server; construct through :class:`FlightSqlService`.

    It starts listening as soon as it is constructed (pyarrow's behaviour).
    """

    def __init__(
        self,
        provider: SessionProvider,
        keys: Authenticator | None,
        config: FlightSqlConfig,
        app_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        host = f"[{config.host}]" if ":" in config.host else config.host
        tls = config.tls
        super().__init__(
            f"{config.scheme}://{host}:{config.port}",
            tls_certificates=[flight.CertKeyPair(tls.certificate_chain, tls.private_key)] if tls is not None else None,
            auth_handler=HandshakeHandler(),
            middleware={MIDDLEWARE_KEY: CallContextFactory(keys, config.admin_key_names)},
        )
        self._provider = provider
        self._config = config
        # Query audit and deny list, when the provider has a lakehouse (``_query_governance.py``).
        self._governance: QueryGovernance | None = getattr(provider, "governance", None)
        # Result streams are awaited on a private loop (so waits can time out without touching
        # the application); provider and partition coroutines run on the application's loop,
        # which owns the PostgreSQL pool (the private one stands in when there is none).
        self._pull_loop = asyncio.new_event_loop()
        self._pull_thread = threading.Thread(target=self._pull_loop.run_forever, name="flight-pull", daemon=True)
        self._pull_thread.start()
        self._app_loop = app_loop if app_loop is not None else self._pull_loop
        self._active: dict[str, _Query] = {}
        self._idle = threading.Condition()
        self._version = _version()

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def active_queries(self) -> int:
        """Number of queries running now (tests wait for 0 after a cancellation)."""
        with self._idle:
            return len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no query runs (True) or ``timeout`` seconds pass (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._active, timeout)

    def _admit(self, call: CallContext, options: RequestOptions) -> _Query:
        deadline = time.monotonic() + self._config.query_timeout_seconds
        query = _Query(call.query_id, call.caller, options, deadline)
        with self._idle:
            if len(self._active) >= self._config.max_concurrent_queries:
                msg = f"server busy: {len(self._active)} queries running; retry later"
                raise ServerBusyError(msg, query.query_id)
            self._active[query.query_id] = query
        return query

    def _release(self, query: _Query, *, clean: bool = False) -> None:
        """End ``query``: free its slot and give its sessions back to the provider.

        ``clean``: nothing of it can still run (its stream reached its end, or it executed
        nothing); otherwise the provider drops its contexts rather than reuse them.
        """
        with self._idle:
            if query.released:
                return
            query.released = True
            self._active.pop(query.query_id, None)
            self._idle.notify_all()
            contexts, query.contexts = query.contexts, []
        release = getattr(self._provider, "release", None)
        for ctx in contexts if release is not None else ():
            try:
                release(ctx, discard=not clean)
            except Exception:  # noqa: BLE001 - a provider's cleaning must never fail a query that is over
                _LOG.exception("query %s: its session was not given back", query.query_id)

    def close_loops(self) -> None:
        """Stop the private event loop (after ``shutdown``)."""
        self._pull_loop.call_soon_threadsafe(self._pull_loop.stop)
        self._pull_thread.join(5)
        if not self._pull_loop.is_running():
            self._pull_loop.close()

    # -- helpers -------------------------------------------------------------------------------

    def _call_context(self, context: flight.ServerCallContext) -> CallContext:
        middleware = context.get_middleware(MIDDLEWARE_KEY)
        if middleware is None:  # pragma: no cover - the factory is always installed
            msg = "missing call context"
            raise flight.FlightInternalError(msg)
        return middleware

    def _run_app(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run a coroutine on the application's loop from a gRPC thread."""
        future = asyncio.run_coroutine_threadsafe(coro, self._app_loop)
        try:
            return future.result(max(timeout, 0.001))
        except TimeoutError:
            future.cancel()
            raise

    def _function_context(self, caller: Caller) -> dict[str, Any]:
        return {
            "is_admin": caller.is_admin,
            "partitions": self._provider.partitions,
            "run_async": lambda coro: self._run_app(coro, self._config.session_timeout_seconds),
        }

    def _session(self, query: _Query, sql: str) -> datafusion.SessionContext:
        request = _session_request(
            query,
            sql,
            memory_limit_bytes=self._config.query_memory_limit_bytes,
            function_context=self._function_context(query.caller),
        )
        timeout = min(self._config.session_timeout_seconds, query.deadline - time.monotonic())
        try:
            ctx = self._run_app(self._provider.session(request), timeout)
            query.contexts.append(ctx)
            return ctx
        except TimeoutError:
            msg = "query cancelled: building its session took longer than its timeout"
            raise QueryTimeoutError(msg, query.query_id) from None
        except FlightSqlError:
            raise
        except Exception as exc:  # any provider failure becomes a classified query error
            raise _provider_error(exc, query.query_id) from exc

    def _prepare_views(self, query: _Query, ctx: datafusion.SessionContext, sql: str) -> None:
        """Let the provider materialise what ``sql`` needs before it is planned (JIT ETL)."""
        prepare = getattr(self._provider, "prepare", None)
        if prepare is None:
            return
        try:
            self._run_app(prepare(ctx, sql), query.deadline - time.monotonic())
        except TimeoutError:
            msg = "query cancelled: preparing its views took longer than its timeout"
            raise QueryTimeoutError(msg, query.query_id) from None
        except FlightSqlError:
            raise
        except Exception as exc:  # any provider failure becomes a classified query error
            raise _provider_error(exc, query.query_id) from exc

    def _rewrite_plan(
        self, query: _Query, ctx: datafusion.SessionContext, df: datafusion.DataFrame
    ) -> datafusion.DataFrame:
        """The provider's rewrite of a planned statement (e.g. onto a pre-aggregated view), if it has one."""
        rewrite = getattr(self._provider, "rewrite", None)
        if rewrite is None:
            return df
        try:
            return self._run_app(rewrite(ctx, df), query.deadline - time.monotonic())
        except TimeoutError:
            msg = "query cancelled: planning it took longer than its timeout"
            raise QueryTimeoutError(msg, query.query_id) from None

    def _collector(self, query: _Query) -> Callable[[datafusion.SessionContext, str], pa.Table]:
        """Nested queries of table functions, bounded by the query's deadline."""

        def collect(ctx: datafusion.SessionContext, sql: str) -> pa.Table:
            self._prepare_views(query, ctx, sql)
            df = read_only_sql(ctx, sql)
            schema = df.schema()  # DataFusion's own types: the outer query converts its results
            execution = QueryExecution(
                df,
                schema,
                self._pull_loop,
                query.deadline,
                query.query_id,
                max_batch_bytes=1 << 62,
                timeout_seconds=self._config.query_timeout_seconds,
            )
            batches = []
            while (batch := execution.next_batch()) is not None:
                batches.append(batch)
            return pa.Table.from_batches(batches, schema=schema)

        return collect

    def _plan(
        self, query: _Query, sql: str, *, schema_only: bool = False
    ) -> tuple[datafusion.SessionContext, datafusion.DataFrame]:
        """Session, table-function expansion and logical plan of ``sql``."""
        started = time.perf_counter()
        ctx = self._session(query, sql)
        planning = time.perf_counter()
        if query.audit is not None:
            query.audit.context_init_ms = (planning - started) * 1000.0
        functions = None
        if self._governance is not None:
            functions = table_functions() | self._governance.table_functions(query.audit, query.caller)
            if query.caller.is_admin:
                self._governance.register_udfs(
                    ctx, lambda coro: self._run_app(coro, self._config.session_timeout_seconds)
                )
        env = SqlEnvironment(
            is_admin=query.caller.is_admin,
            begin_ns=query.options.begin_ns,
            end_ns=query.options.end_ns,
            partitions=self._provider.partitions,
            run_async=lambda coro: self._run_app(coro, max(query.deadline - time.monotonic(), 0.001)),
            collect=self._collector(query),
            schema_only=schema_only,
            session_for=lambda begin_ns, end_ns: self._session(_with_range(query, begin_ns, end_ns), ""),
            principal=query.caller.name,
        )
        try:
            expanded = expand_table_functions(ctx, prepare_sql(sql), env, functions)
            self._prepare_views(query, ctx, expanded)
            df = plan_sql(ctx, expanded)  # hex strings compared with trace_id/span_id work
            df = self._rewrite_plan(query, ctx, df)
        except FlightSqlError:
            raise
        except PermissionDeniedError as exc:  # an admin function called by a non-admin
            raise AdminOnlyError(str(exc), query.query_id) from None
        except TimeoutError:
            msg = "query cancelled: it ran longer than its timeout"
            raise QueryTimeoutError(msg, query.query_id) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # DataFusion panics surface as PanicException (a BaseException)
            raise classify_datafusion_error(exc, query.query_id) from exc
        finally:
            if query.audit is not None:
                query.audit.planning_ms = (time.perf_counter() - planning) * 1000.0
        if query.options.limit is not None:
            df = df.limit(query.options.limit)
        return ctx, df

    def _types(self, query: _Query) -> ResultTypes:
        grafana = query.caller.client_type.lower().startswith("grafana")
        return ResultTypes(preserve_dictionary=query.options.preserve_dictionary, grafana=grafana)

    # -- DoGet ---------------------------------------------------------------------------------

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        """Execute a ticket: a statement (SQL) or a metadata command."""
        with _QUERY_SPAN:  # self-telemetry: a thread span per query (no-op unless the tracer runs)
            return self._do_get(context, ticket)

    def _do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        call = self._call_context(context)
        query: _Query | None = None
        try:
            options = parse_request_options(call.headers)
            query = self._admit(call, options)
            command = _decode_ticket(ticket.ticket)
            if isinstance(command, str):
                self._begin_audit(query, call, context, command)
                return self._statement_stream(query, command)
            table = self._metadata_result(query, command)
            self._release(query, clean=True)  # answered from the session's catalog: nothing runs
            return flight.RecordBatchStream(table)
        except FlightSqlError as exc:
            error = exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a bug or a DataFusion panic still reaches the client cleanly
            error = internal_error(f"DoGet failed unexpectedly: {type(exc).__name__}: {exc}", call.query_id, exc)
        if query is not None:
            self._release(query)
        error = error if error.query_id else error.with_query_id(call.query_id)
        _LOG.info("query failed: %s", error)
        if query is not None and query.audit is not None and self._governance is not None:
            self._governance.finish(query.audit, error=error)
        return _error_stream(error)

    def _begin_audit(self, query: _Query, call: CallContext, context: flight.ServerCallContext, sql: str) -> None:
        """Start the statement's audit record and refuse it if a deny rule matches."""
        if self._governance is None:
            return
        options = query.options
        query.audit = self._governance.begin(
            query.query_id,
            sql,
            call.headers,
            query.caller,
            context.peer(),
            begin_ns=options.begin_ns,
            end_ns=options.end_ns,
            limit=options.limit,
        )
        self._governance.check(query.audit, is_admin=query.caller.is_admin)

    def _statement_stream(self, query: _Query, sql: str) -> flight.FlightDataStream:
        _LOG.debug("query %s from %s: %s", query.query_id, query.caller.name, sql)
        if query.options.engine == "sail":
            return self._sail_stream(query, sql)
        _, df = self._plan(query, sql)
        schema = output_schema(df.schema(), self._types(query))
        started = time.perf_counter()
        # The execution ends (on_close) before the name is bound when starting it fails.
        executions: list[QueryExecution] = []
        execution = QueryExecution(
            df,
            schema,
            self._pull_loop,
            query.deadline,
            query.query_id,
            max_batch_bytes=self._config.max_batch_bytes,
            timeout_seconds=self._config.query_timeout_seconds,
            on_close=lambda: self._release(query, clean=any(e.finished for e in executions)),
        )
        executions.append(execution)
        # Pull the first batch here, so that an error or a timeout before any result is sent
        # with its exact status (DEADLINE_EXCEEDED, INTERNAL); later ones travel in the stream.
        audit = query.audit
        if audit is not None:
            audit.execution_ms = (time.perf_counter() - started) * 1000.0
            audit.df = df
            audit.rows = lambda: execution.rows
        first = execution.next_batch()
        source: Any = _PrefetchedSource(execution, first)
        if audit is not None and self._governance is not None:
            audit.setup_ms = audit.elapsed_ms()
            source = self._governance.audited(source, audit)
        return flight.RecordBatchStream(export_reader(source))

    def _sail_stream(self, query: _Query, sql: str) -> flight.FlightDataStream:
        """``x-sirius-engine: sail``: the statement (Spark SQL) runs on the provider's Sail cluster."""
        run_on_sail = getattr(self._provider, "run_on_sail", None)
        if run_on_sail is None:
            msg = "this server has no lakehouse to run statements on Sail"
            raise InvalidQueryError(msg, query.query_id)
        request = _session_request(query, sql)
        try:
            table = self._run_app(run_on_sail(request), query.deadline - time.monotonic())
        except TimeoutError:
            msg = "query cancelled: it ran longer than its timeout on the Sail cluster"
            raise QueryTimeoutError(msg, query.query_id) from None
        except FlightSqlError:
            raise
        except Exception as exc:  # a cluster or view failure becomes a classified query error
            raise _provider_error(exc, query.query_id) from exc
        finally:
            self._release(query)
        if query.options.limit is not None:
            table = table.slice(0, query.options.limit)
        if query.audit is not None and self._governance is not None:
            self._governance.finish(query.audit)
        return flight.RecordBatchStream(table)

    # -- metadata ------------------------------------------------------------------------------

    def _tables(self, query: _Query) -> list[tuple[str, pa.Schema]]:
        ctx = self._session(query, "")
        types = self._types(query)
        schema_names = ctx.catalog().schema("public")
        return [
            (name, output_schema(schema_names.table(name).schema, types))
            for name in schema_names.names()
            if not name.startswith("__sirius")
        ]

    def _metadata_result(self, query: _Query, command: Any) -> pa.Table:  # noqa: PLR0911 - one per command
        if isinstance(command, proto.CommandGetSqlInfo):
            return meta.sql_info_table(
                list(command.info),
                name=SERVER_NAME,
                version=self._version,
                arrow_version=pa.__version__,
                timeout_ms=int(self._config.query_timeout_seconds * 1000),
            )
        if isinstance(command, proto.CommandGetCatalogs):
            return meta.catalogs_table()
        if isinstance(command, proto.CommandGetDbSchemas):
            return meta.db_schemas_table(
                command.catalog if command.HasField("catalog") else None,
                command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern") else None,
            )
        if isinstance(command, proto.CommandGetTableTypes):
            return meta.table_types_table()
        if isinstance(command, proto.CommandGetTables):
            return meta.tables_table(
                self._tables(query),
                catalog=command.catalog if command.HasField("catalog") else None,
                schema_pattern=command.db_schema_filter_pattern
                if command.HasField("db_schema_filter_pattern")
                else None,
                table_pattern=command.table_name_filter_pattern
                if command.HasField("table_name_filter_pattern")
                else None,
                table_types=list(command.table_types),
                include_schema=command.include_schema,
            )
        if isinstance(command, proto.CommandGetPrimaryKeys):
            return meta.PRIMARY_KEYS_SCHEMA.empty_table()
        if isinstance(
            command, (proto.CommandGetExportedKeys, proto.CommandGetImportedKeys, proto.CommandGetCrossReference)
        ):
            return meta.KEYS_SCHEMA.empty_table()
        name = proto.type_name(command) if hasattr(command, "DESCRIPTOR") else type(command).__name__
        msg = f"{name} is not supported by this server"
        raise UnsupportedCommandError(msg, query.query_id)

    # -- GetFlightInfo / GetSchema ------------------------------------------------------------

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """One endpoint whose ticket ``DoGet`` redeems; statements are not planned here."""
        self._call_context(context)
        command = proto.unpack_any(descriptor.command) if descriptor.command else None
        schema: pa.Schema | None
        if isinstance(command, proto.CommandStatementQuery):
            ticket = proto.pack(proto.TicketStatementQuery(statement_handle=command.query.encode()))
            schema = None
        elif isinstance(command, proto.CommandPreparedStatementQuery):
            ticket = proto.pack(proto.TicketStatementQuery(statement_handle=command.prepared_statement_handle))
            schema = None
        else:
            # Metadata commands and unknown ones alike: DoGet answers (or reports the error with
            # its exact status, which this RPC could not carry without a traceback).
            ticket = descriptor.command or b""
            schema = _metadata_schema(command)
        endpoint = flight.FlightEndpoint(flight.Ticket(ticket), [])
        info = flight.FlightInfo(schema if schema is not None else pa.schema([]), descriptor, [endpoint], -1, -1)
        return _without_schema(info) if schema is None else info

    def get_schema(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        """Result schema of a statement (planned, nothing executed) or of a metadata command."""
        call = self._call_context(context)
        command = proto.unpack_any(descriptor.command) if descriptor.command else None
        if isinstance(command, (proto.CommandStatementQuery, proto.CommandPreparedStatementQuery)):
            sql = (
                command.query
                if isinstance(command, proto.CommandStatementQuery)
                else _handle_sql(command.prepared_statement_handle)
            )
            try:
                schema = self._statement_schema(call, sql)
            except FlightSqlError as exc:
                raise flight.FlightServerError(str(exc)) from None
            return flight.SchemaResult(schema)
        return flight.SchemaResult(_metadata_schema(command))

    def _statement_schema(self, call: CallContext, sql: str) -> pa.Schema:
        options = parse_request_options(call.headers)
        query = self._admit(call, options)
        clean = False
        try:
            _, df = self._plan(query, sql, schema_only=True)
            schema = output_schema(df.schema(), self._types(query))
            clean = True  # planned, never executed
            return schema
        finally:
            self._release(query, clean=clean)

    # -- actions -------------------------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        """The actions ``do_action`` serves."""
        del context
        return [
            ("CreatePreparedStatement", "plan a statement; returns its handle and result schema"),
            ("ClosePreparedStatement", "release a prepared statement (nothing is held)"),
            ("CloseSession", "end the session (nothing is held)"),
        ]

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[flight.Result]:
        """``CreatePreparedStatement``, ``ClosePreparedStatement``, ``CloseSession``."""
        call = self._call_context(context)
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == "CreatePreparedStatement":
            request = proto.unpack_any(body)
            if not isinstance(request, proto.ActionCreatePreparedStatementRequest):
                msg = "CreatePreparedStatement expects an ActionCreatePreparedStatementRequest"
                raise flight.FlightServerError(msg)
            return iter([flight.Result(proto.pack(self._prepare(call, request.query)))])
        if action.type == "ClosePreparedStatement":
            return iter([])
        if action.type == "CloseSession":
            return iter([flight.Result(_CLOSE_SESSION_CLOSED)])
        msg = f"action {action.type!r} is not supported by this server"
        raise flight.FlightServerError(msg)

    def _prepare(self, call: CallContext, sql: str) -> Any:
        """Plan ``sql`` for its schema and return the prepared-statement result.

        A statement that does not plan still gets a handle (with an empty schema): executing it
        reports the error with its exact status (INVALID_ARGUMENT), which this RPC could not
        carry without a Python traceback.
        """
        try:
            schema = self._statement_schema(call, sql)
        except FlightSqlError as exc:
            _LOG.info("prepared statement does not plan (reported on execution): %s", exc)
            schema = pa.schema([])
        return proto.ActionCreatePreparedStatementResult(
            prepared_statement_handle=sql.encode(), dataset_schema=empty_ipc_stream(schema), parameter_schema=b""
        )

    def do_put(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor, reader: Any, writer: Any
    ) -> None:
        """Bound parameters of a prepared statement (``CommandPreparedStatementQuery``).

        The parameters are written into the statement as literals and the new handle (the bound
        SQL) goes back as a raw ``DoPutPreparedStatementResult``: the client executes that
        handle (ADBC ``cursor.execute(sql, params)``). ``CommandStatementIngest`` is the
        ``micromegas`` client's ``bulk_ingest`` (``_bulk_ingest.py``). Other uploads are not served.
        """
        call = self._call_context(context)
        command = proto.unpack_any(descriptor.command or b"")
        if isinstance(command, proto.CommandStatementIngest):  # micromegas bulk_ingest (_bulk_ingest.py)
            count = serve_ingest(
                self._provider,
                is_admin=call.caller.is_admin,
                table=command.table,
                reader=reader,
                max_bytes=self._config.max_ingest_bytes,
                run=lambda coro: self._run_app(coro, self._config.query_timeout_seconds),
            )
            writer.write(pa.py_buffer(proto.DoPutUpdateResult(record_count=count).SerializeToString()))
            return
        if not isinstance(command, proto.CommandPreparedStatementQuery):
            msg = "DoPut (bulk ingestion, updates) is not supported by this server; use the ingestion service"
            raise flight.FlightServerError(msg)
        sql = _handle_sql(command.prepared_statement_handle)
        try:
            bound = bind_parameters(sql, reader.read_all())
        except ParameterError as exc:
            raise pa.ArrowInvalid(f"bound parameters: {exc}") from None
        result = proto.DoPutPreparedStatementResult(prepared_statement_handle=bound.encode())
        writer.write(pa.py_buffer(result.SerializeToString()))


class _PrefetchedSource:
    """A :class:`QueryExecution` whose first batch was already pulled."""

    def __init__(self, execution: QueryExecution, first: pa.RecordBatch | None) -> None:
        self.schema = execution.schema
        self._execution = execution
        self._first = first
        self._started = False

    def next_batch(self) -> pa.RecordBatch | None:
        """The prefetched batch first (None: the result is empty), then the execution's."""
        if not self._started:
            self._started = True
            return self._first
        return self._execution.next_batch()

    def close(self) -> None:
        """Stop the execution."""
        self._execution.close()


def _session_request(query: _Query, sql: str, **extra: Any) -> SessionRequest:
    """The provider's request for ``sql`` on behalf of ``query`` (its range, caller and id)."""
    return SessionRequest(
        sql=sql,
        begin_ns=query.options.begin_ns,
        end_ns=query.options.end_ns,
        caller=query.caller,
        query_id=query.query_id,
        **extra,
    )


def _with_range(query: _Query, begin_ns: int, end_ns: int) -> _Query:
    options = RequestOptions(begin_ns, end_ns, query.options.limit, query.options.preserve_dictionary)
    # The same list of contexts: a nested range's session is given back with the query's.
    return _Query(query.query_id, query.caller, options, query.deadline, released=True, contexts=query.contexts)


def _without_schema(info: flight.FlightInfo) -> flight.FlightInfo:
    """``info`` with no schema bytes at all, as arrow-rs's ``FlightInfo::new()`` sends.

    Clients then take the schema from the ``DoGet`` stream; an empty (zero-field) schema would
    instead be checked against it (ADBC: "endpoint 0 returned inconsistent schema").
    """
    raw = info.serialize()
    if raw[:1] == b"\x0a":  # field 1 (schema), length-delimited: skip it
        length, shift, pos = 0, 0, 1
        while True:
            byte = raw[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            shift += 7
            if byte < 0x80:
                break
        raw = raw[pos + length :]
    return flight.FlightInfo.deserialize(raw)


def _handle_sql(handle: bytes) -> str:
    try:
        return handle.decode()
    except UnicodeDecodeError:
        msg = "the statement handle is not UTF-8 SQL"
        raise InvalidQueryError(msg) from None


def _decode_ticket(data: bytes) -> str | Any:
    """SQL for statement tickets, the command message for metadata tickets."""
    message = proto.unpack_any(data)
    if isinstance(message, proto.TicketStatementQuery):
        return _handle_sql(message.statement_handle)
    if isinstance(message, proto.CommandPreparedStatementQuery):
        return _handle_sql(message.prepared_statement_handle)
    if isinstance(message, proto.CommandStatementQuery):
        return message.query
    if message is not None:
        return message
    type_name = proto.any_type_name(data)
    if type_name is not None and type_name.startswith(proto.PACKAGE):
        msg = f"{type_name} is not supported by this server"
        raise UnsupportedCommandError(msg)
    raw = proto.TicketStatementQuery()
    with contextlib.suppress(Exception):
        raw.ParseFromString(data)
        if raw.statement_handle and raw.SerializeToString() == data:
            return _handle_sql(raw.statement_handle)
    msg = "invalid ticket: expected a FlightSQL statement ticket (TicketStatementQuery) or a ticket from GetFlightInfo"
    raise InvalidQueryError(msg)


def _metadata_schema(command: Any) -> pa.Schema:
    if isinstance(command, proto.CommandGetTables):
        return meta.TABLES_SCHEMA_WITH_SCHEMA if command.include_schema else meta.TABLES_SCHEMA
    for kinds, schema in _METADATA_SCHEMAS:
        if isinstance(command, kinds):
            return schema
    return pa.schema([])


_METADATA_SCHEMAS: list[tuple[Any, pa.Schema]] = [
    (proto.CommandGetSqlInfo, meta.SQL_INFO_SCHEMA),
    (proto.CommandGetCatalogs, meta.CATALOGS_SCHEMA),
    (proto.CommandGetDbSchemas, meta.DB_SCHEMAS_SCHEMA),
    (proto.CommandGetTableTypes, meta.TABLE_TYPES_SCHEMA),
    (proto.CommandGetPrimaryKeys, meta.PRIMARY_KEYS_SCHEMA),
    ((proto.CommandGetExportedKeys, proto.CommandGetImportedKeys, proto.CommandGetCrossReference), meta.KEYS_SCHEMA),
]


def _provider_error(exc: BaseException, query_id: str) -> FlightSqlError:
    """Errors of the session provider: lakehouse view errors are the caller's, the rest internal."""
    from ..lakehouse import LakehouseError, ViewError

    if isinstance(exc, ViewError):
        return InvalidQueryError(str(exc), query_id)
    if isinstance(exc, LakehouseError):
        return internal_error(f"lakehouse: {exc}", query_id, exc)
    return classify_datafusion_error(exc, query_id)


def _error_stream(error: FlightSqlError) -> flight.FlightDataStream:
    """Report ``error`` to the client with its exact status and a clean message."""
    if isinstance(error, QueryTimeoutError):
        raise flight.FlightTimedOutError(str(error))
    if isinstance(error, ServerBusyError):
        raise flight.FlightUnavailableError(str(error))
    if isinstance(error, InternalQueryError):
        raise flight.FlightInternalError(str(error))
    if isinstance(error, AdminOnlyError):
        raise flight.FlightUnauthorizedError(str(error))
    if isinstance(error, QueryResourcesError | InvalidQueryError | UnsupportedCommandError | QueryDeniedError):
        return flight.RecordBatchStream(export_reader(ErrorSource(error)))
    raise flight.FlightInternalError(str(error))  # pragma: no cover - every kind is handled above


class FlightSqlService:
    """The FlightSQL server as a service: ``await start()`` / ``await stop()``, or ``serve()``.

    Args:
        provider: builds the query sessions (the lakehouse's session factory).
        keys: the access policy (``sirius.identity.build_authenticator`` with the analytics
            role), or bare environment keys; None = no authentication.
        config: bind address, limits.
        loop: the application's event loop, on which ``provider.session()`` and partition
            administration run (it owns the PostgreSQL pool). Default: the loop running
            ``start()``; ``serve()`` without a loop runs a private one.
    """

    def __init__(
        self,
        provider: SessionProvider,
        keys: Authenticator | None = None,
        config: FlightSqlConfig | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.provider = provider
        self.keys = as_access_policy(keys)
        self.config = config if config is not None else FlightSqlConfig()
        self._loop = loop
        self.server: FlightSqlServer | None = None
        self.port: int | None = None

    def _start_server(self, loop: asyncio.AbstractEventLoop | None) -> int:
        self.server = FlightSqlServer(self.provider, self.keys, self.config, loop)
        self.port = self.server.port
        _LOG.info("FlightSQL listening on %s:%s", self.config.host, self.port)
        return self.port

    async def start(self) -> int:
        """Bind and start serving; return the bound port."""
        loop = self._loop or asyncio.get_running_loop()
        governance = getattr(self.provider, "governance", None)
        if governance is not None:
            await governance.start()
        try:
            return await asyncio.to_thread(self._start_server, loop)
        except BaseException:
            if governance is not None:
                await governance.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting calls, let running ones finish, release threads."""
        server, self.server = self.server, None
        if server is None:
            return
        # shutdown() waits for running calls, which may need this loop: run it off the loop.
        await asyncio.to_thread(server.shutdown)
        await asyncio.to_thread(server.close_loops)
        governance = getattr(self.provider, "governance", None)
        if governance is not None:
            await governance.stop()  # writes the queued audit records

    def serve(self) -> None:
        """Blocking variant for scripts: serve until interrupted (Ctrl-C)."""
        if self.server is None:
            self._start_server(self._loop)
        assert self.server is not None  # noqa: S101 - set just above
        try:
            self.server.serve()
        finally:
            self.server.close_loops()
