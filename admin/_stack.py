"""The all-in-one stack behind ``sirius up``: embedded PostgreSQL, migrations, services.

One asyncio loop runs every service of the process. ``Stack.start`` brings them up in
dependency order and ``Stack.stop`` takes them down in reverse: listeners close first and
in-flight requests finish, then the pool closes, then the embedded PostgreSQL stops with a fast
shutdown, so what was acknowledged is on disk and the store is consistent.

Before anything starts, the stack takes the data directory's lock (``_data_dir_lock``): a second
``sirius up`` (or ``sirius demo``) on a directory in use is refused with the PID that holds it.
Holding the lock also proves that what a previous run left in the directory is orphaned: a
PostgreSQL server still running there (``kill -9`` of ``sirius up``) is stopped cleanly and
restarted, and the local store's temporary files older than this start are removed. Fixed ports
are checked next, so a taken port is reported before the database starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..collector import (
    ApiKeys,
    HttpServer,
    IngestionService,
    OtlpService,
    ServerTls,
    check_bind_is_safe,
    warn_plaintext_bind,
)
from ..flight import FlightSqlConfig, FlightSqlService, GatewayService, LakehouseSessionProvider
from ..identity import (
    AccessPolicy,
    EnvKeys,
    IdentityConfig,
    KeyStore,
    ServiceRole,
    build_authenticator,
    generate_secret,
    start_key_store,
    stop_key_store,
)
from ..lakehouse import (
    MICROMEGAS_OBJECT_STORE_URI,
    MICROMEGAS_SQL_CONNECTION_STRING,
    DaemonConfig,
    DataLake,
    Lakehouse,
    LakehouseConfig,
    LocalObjectStore,
    MaintenanceDaemon,
    ObjectStore,
    create_pool,
    migrate,
    open_object_store,
    publisher_from_env,
)
from ._data_dir_lock import DataDirLock
from ._embedded_postgres import EmbeddedPostgres, live_embedded_postmaster
from ._exceptions import DataDirInUseError
from ._ports import PortClaim, check_ports_free, start_claimed
from ._self_telemetry import SelfTelemetry

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
_SELF_TELEMETRY_PRINCIPAL = "sirius-self-telemetry"
# Sirius's own telemetry holds every caller's queries (the audit lines) and new processes' names:
# stamped with its own audience, it is the admins' (or whom MICROMEGAS_AUDIENCE_GRANTS grants it).
_SELF_TELEMETRY_AUDIENCE = "sirius"


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What ``sirius up`` runs and where.

    Attributes:
        data_dir: embedded database and default object store location.
        host: bind address of every service.
        ingestion_port: Micromegas ingestion HTTP (0 picks a free port).
        otlp_grpc_port: OTLP/gRPC receiver (0 picks a free port).
        otlp_http_port: OTLP/HTTP receiver (0 picks a free port).
        flight_port: FlightSQL gRPC (0 picks a free port).
        gateway_port: HTTP query gateway (0 picks a free port).
        disable_auth: allow a non-loopback bind without API keys.
        sql_connection_string: external PostgreSQL; None = embedded (or the env var).
        object_store_uri: external store; None = ``file://{data_dir}/objects`` (or the env var).
        daemon: run the maintenance daemon (live ETL and retention) in this process.
        durable: the embedded PostgreSQL runs with fsync and synchronous commits (False:
            ``--fast-unsafe``, faster, but a machine crash can lose acknowledged data).
        self_telemetry: the services trace themselves into this lake as the process ``sirius``
            (``_self_telemetry``).
        tls: every listener serves TLS with this certificate (None: plain text, warned about
            once on a non-loopback ``host``).
        tls_ca_file: CA bundle the stack's own clients (the gateway's FlightSQL connection,
            self-telemetry) trust when ``tls`` is set (None: ``SIRIUS_TLS_CA_FILE``, else the
            system's trust store). They connect to ``host`` (127.0.0.1 for a wildcard bind),
            which the certificate must name.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    ingestion_port: int = 9000
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    flight_port: int = 50051
    gateway_port: int = 3000
    disable_auth: bool = False
    sql_connection_string: str | None = None
    object_store_uri: str | None = None
    daemon: bool = True
    durable: bool = True
    self_telemetry: bool = False
    tls: ServerTls | None = None
    tls_ca_file: str | None = None

    def port_claims(self) -> list[PortClaim]:
        """Each service's port with the ``sirius up`` flag that changes it."""
        return [
            PortClaim("ingestion", self.ingestion_port, "--ingestion-port"),
            PortClaim("otlp-grpc", self.otlp_grpc_port, "--otlp-grpc-port"),
            PortClaim("otlp-http", self.otlp_http_port, "--otlp-http-port"),
            PortClaim("flightsql", self.flight_port, "--flight-port"),
            PortClaim("gateway", self.gateway_port, "--gateway-port"),
        ]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A listening service, as printed by ``sirius up``."""

    name: str
    url: str


@dataclass(slots=True)
class _Resources:
    lock: DataDirLock | None = None
    embedded: EmbeddedPostgres | None = None
    pool: object | None = None
    store: object | None = None
    servers: list[HttpServer] = field(default_factory=list)
    daemon: MaintenanceDaemon | None = None
    flight: FlightSqlService | None = None
    otlp: OtlpService | None = None
    gateway: GatewayService | None = None
    self_telemetry: SelfTelemetry | None = None
    key_store: KeyStore | None = None


class Stack:
    """Every Sirius service in this process, over one lakehouse."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.endpoints: list[Endpoint] = []
        self.config: LakehouseConfig | None = None
        self.lake: DataLake | None = None
        self.lakehouse: Lakehouse | None = None
        self._res = _Resources()

    async def start(self) -> list[Endpoint]:
        """Start everything; on failure, stop what was started and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self.endpoints

    async def _start(self) -> None:
        opts = self.options
        # Read first: a malformed list is refused before anything starts. The bind's safety is
        # checked once the database keys are read too (they may be what protects it).
        ApiKeys.from_env()
        warn_plaintext_bind("up", opts.host, opts.tls)
        claims = {claim.service: claim for claim in opts.port_claims()}
        store, pool = await self._open_storage(list(claims.values()))
        self.lake = DataLake(pool)
        self.lakehouse = Lakehouse(pool, store)
        keys, analytics_keys, self_key = await self._access_policies()
        ingestion = IngestionService(self.lake, store, keys)
        app = ingestion.make_app()
        self_telemetry = SelfTelemetry() if opts.self_telemetry else None
        if self_telemetry is not None:
            self_telemetry.install(app)
        server = HttpServer(app, opts.host, opts.ingestion_port, tls=opts.tls)
        port = await self._bind([claims["ingestion"]], server.start)
        self._res.servers.append(server)
        scheme = server.scheme
        ingestion_url = f"{scheme}://{_url_host(opts.host)}:{port}"
        self.endpoints.append(Endpoint("ingestion", ingestion_url))
        key = self_key
        if self_telemetry is not None and self_telemetry.start(ingestion_url, key, tls_ca_file=opts.tls_ca_file):
            self._res.self_telemetry = self_telemetry

        otlp = OtlpService(
            self.lake,
            store,
            keys,
            host=opts.host,
            grpc_port=opts.otlp_grpc_port,
            http_port=opts.otlp_http_port,
            tls=opts.tls,
        )
        if self._res.self_telemetry is not None:
            otlp.writer.export_wrapper = self._res.self_telemetry.wrap_export
        otlp_ports = await self._bind([claims["otlp-grpc"], claims["otlp-http"]], otlp.start)
        self._res.otlp = otlp
        self.endpoints.append(Endpoint("otlp-grpc", f"{scheme}://{_url_host(opts.host)}:{otlp_ports.grpc}"))
        self.endpoints.append(Endpoint("otlp-http", f"{scheme}://{_url_host(opts.host)}:{otlp_ports.http}"))

        flight = FlightSqlService(
            LakehouseSessionProvider(self.lakehouse),
            analytics_keys,
            FlightSqlConfig(host=opts.host, port=opts.flight_port, tls=opts.tls),
            loop=asyncio.get_running_loop(),
        )
        flight_port = await self._bind([claims["flightsql"]], flight.start)
        self._res.flight = flight
        flight_uri = f"{flight.config.scheme}://{_url_host(opts.host)}:{flight_port}"
        self.endpoints.append(Endpoint("flightsql", flight_uri))

        gateway = GatewayService(flight_uri, analytics_keys, tls_ca_file=opts.tls_ca_file)
        self._res.gateway = gateway
        gateway_server = HttpServer(gateway.make_app(), opts.host, opts.gateway_port, tls=opts.tls)
        gateway_port = await self._bind([claims["gateway"]], gateway_server.start)
        self._res.servers.append(gateway_server)
        self.endpoints.append(Endpoint("gateway", f"{scheme}://{_url_host(opts.host)}:{gateway_port}/gateway"))
        if opts.daemon:
            # All in one process: ingestion and daemon share one clock and commits are immediate,
            # so the guarded second is [S-1 s, S) rather than the reference's [S-2 s, S-1 s),
            # which guards multi-host skew; provisional slices every 250 ms make data queryable
            # ~0.4 s after insertion (bench/etl.py).
            daemon_config = DaemonConfig(
                retention_days=self.config.retention_days,
                retention_days_by_view=self.config.retention_days_by_view,
                retention_exact=self.config.retention_exact,
                second_pass_delay_ns=0,
                second_pass_period_ns=250_000_000,
                provisional_slices=True,
            )
            wrapper = self._res.self_telemetry.wrap_pass if self._res.self_telemetry is not None else None
            # Iceberg tables of the views, on unless SIRIUS_ICEBERG=0 (docs/iceberg.md).
            publisher = publisher_from_env(self.config.sql_connection_string, self.lakehouse.store.uri)
            daemon = MaintenanceDaemon(self.lakehouse, daemon_config, pass_wrapper=wrapper, publisher=publisher)
            await daemon.start()
            self._res.daemon = daemon

    async def _access_policies(self) -> tuple[AccessPolicy, AccessPolicy, str]:
        """The ingestion and analytics policies over one key store, and the self-telemetry key.

        One policy per role: every listener of a role checks credentials alike. The stack's own
        self-telemetry gets a key of its own, valid in this process only, so it keeps reaching
        ingestion once database keys turn authentication on.

        Raises:
            AuthConfigurationError: a public bind that no credential protects.
        """
        identity = IdentityConfig.resolve(self.config.sql_connection_string if self.config else None)
        self._res.key_store = await asyncio.to_thread(start_key_store, identity)
        self_key = generate_secret()
        internal = EnvKeys(
            ((_SELF_TELEMETRY_PRINCIPAL, self_key),), ((_SELF_TELEMETRY_PRINCIPAL, _SELF_TELEMETRY_AUDIENCE),)
        )
        keys = build_authenticator(identity, ServiceRole.INGESTION, self._res.key_store, internal=[internal])
        analytics_keys = build_authenticator(identity, ServiceRole.ANALYTICS, self._res.key_store)
        check_bind_is_safe(self.options.host, keys, disable_auth=self.options.disable_auth)
        return keys, analytics_keys, self_key

    async def _open_storage(self, claims: list[PortClaim]) -> tuple[ObjectStore, Any]:
        """Lock the data directory if used, check ports, start PostgreSQL, migrate, open the store."""
        opts = self.options
        started_at = time.time()  # temporary files older than this start are orphans
        dsn = opts.sql_connection_string or os.environ.get(MICROMEGAS_SQL_CONNECTION_STRING)
        uri = opts.object_store_uri or os.environ.get(MICROMEGAS_OBJECT_STORE_URI)
        uses_data_dir = not dsn or not uri
        if uses_data_dir and opts.data_dir.exists():
            self._lock_data_dir()  # first: "in use by PID n" says more than the port it holds
        check_ports_free(opts.host, claims)
        if uses_data_dir:
            self._lock_data_dir()  # a refused start leaves no new directory behind
        if not dsn:
            # Holding the lock, a server still running on the cluster is an orphan of a dead run.
            embedded = EmbeddedPostgres(opts.data_dir / "postgres", durable=opts.durable, stop_orphan=True)
            self._res.embedded = embedded
            dsn = await asyncio.to_thread(embedded.start)
        local_store: Path | None = None
        if not uri:
            local_store = (opts.data_dir / "objects").resolve()
            local_store.mkdir(parents=True, exist_ok=True)
            uri = local_store.as_uri()
        self.config = LakehouseConfig.resolve(dsn, uri)
        pool = await create_pool(dsn)
        self._res.pool = pool
        await migrate(pool)
        store = open_object_store(uri)
        self._res.store = store
        if local_store is not None and isinstance(store, LocalObjectStore):
            # Under our lock no other sirius process writes there: older temp files are orphans.
            removed = await store.remove_stale_temp_files(started_at)
            if removed:
                _LOG.info("removed %d temporary files an interrupted run left in %s", removed, local_store)
        return store, pool

    def _lock_data_dir(self) -> None:
        if self._res.lock is not None:
            return
        lock = DataDirLock(self.options.data_dir)
        try:
            lock.acquire()
        except DataDirInUseError as exc:
            info = live_embedded_postmaster(lock.data_dir / "postgres")
            postmaster = f", its PostgreSQL is PID {info.pid}" if info is not None else ""
            msg = f"{exc}{postmaster}; stop it first or pick another --data-dir"
            raise DataDirInUseError(msg, exc.pid) from None
        self._res.lock = lock

    async def _bind(self, claims: list[PortClaim], start: Callable[[], Awaitable[_T]]) -> _T:
        """Start a service; a failure because its port was taken meanwhile is a PortInUseError."""
        return await start_claimed(self.options.host, claims, start)

    @property
    def store(self) -> ObjectStore:
        """The object store the services write to (after ``start``)."""
        if self._res.store is None:
            msg = "the stack is not started"
            raise RuntimeError(msg)
        return self._res.store  # type: ignore[return-value]

    @property
    def self_telemetry_running(self) -> bool:
        """Whether this stack traces itself (``StackOptions.self_telemetry`` and the tracer was free)."""
        return self._res.self_telemetry is not None and self._res.self_telemetry.running

    async def stop(self) -> None:
        """Stop services (draining requests), close the pool and the store, stop PostgreSQL."""
        res, self._res = self._res, _Resources()
        if res.daemon is not None:
            await res.daemon.stop()
        if res.self_telemetry is not None:
            # Off the loop: delivery goes through this process's own ingestion service.
            await asyncio.to_thread(res.self_telemetry.stop)
        for server in reversed(res.servers):
            try:
                await server.stop()
            except Exception:  # noqa: BLE001 - one failing server must not keep the others running
                _LOG.exception("stopping a server failed")
        if res.otlp is not None:
            await res.otlp.stop()
        if res.gateway is not None:
            res.gateway.close()
        if res.flight is not None:
            await res.flight.stop()
        if res.store is not None:
            await res.store.close()  # type: ignore[attr-defined]
        if res.pool is not None:
            pool = res.pool
            try:
                # A connection broken mid-query can keep a graceful close waiting: bound it.
                await asyncio.wait_for(pool.close(), 10)  # type: ignore[attr-defined]
            except TimeoutError:
                _LOG.warning("closing the PostgreSQL pool timed out; terminating its connections")
                pool.terminate()  # type: ignore[attr-defined]
        await asyncio.to_thread(stop_key_store, res.key_store)  # None when it was never started
        if res.embedded is not None:
            await asyncio.to_thread(res.embedded.stop)
        if res.lock is not None:
            res.lock.release()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
