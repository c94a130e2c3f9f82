"""Implementations of the ``sirius`` subcommands (the CLI module only parses arguments)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from ..collector import (
    AuthConfigurationError,
    HttpServer,
    IngestionService,
    ServerTls,
    TlsConfigurationError,
    warn_plaintext_bind,
)
from ..identity import IdentityError, ServiceRole
from ..lakehouse import (
    DaemonConfig,
    DataLake,
    Lakehouse,
    LakehouseConfig,
    LakehouseError,
    LocalObjectStore,
    MaintenanceDaemon,
    ObjectStore,
    create_pool,
    migrate,
    open_object_store,
    publisher_from_env,
)
from ._event_loop import run_service_loop, service_loop_factory
from ._exceptions import AdminError
from ._iceberg_command import iceberg_command
from ._keys_command import keys_command
from ._ports import PortClaim, check_ports_free, start_claimed
from ._self_telemetry import SelfTelemetry, self_telemetry_default
from ._service_access import close_service_access, first_env_key, optional_dsn, service_access
from ._stack import Stack, StackOptions
from ._up_banner import client_exports, explore_line, service_lines

_LOG = logging.getLogger("sirius")
# A stand-alone writer may share a local store with replicas, so it cannot tell a crashed
# writer's temporary file from one being written unless it is old: a write takes milliseconds.
_ORPHANED_TEMP_FILE_AGE_S = 600.0


def run(args: argparse.Namespace) -> int:
    """Dispatch a parsed command line; returns the process exit code."""
    if args.command == "query":
        from ..flight import run_query

        return run_query(
            args.sql,
            uri=args.uri,
            begin=args.begin,
            end=args.end,
            output_format=args.format,
            api_key=args.api_key,
            ca_file=args.tls_ca,
            engine=args.engine,
            cluster=args.cluster,
        )
    if args.command in _EXPLORE_COMMANDS:
        return _explore_command(args)
    if args.command in ("spool", "sail"):
        return _blocking_command(args)
    handlers = {"up": _up, "migrate": _migrate, "ingest": _ingest, "daemon": _daemon, "flight": _flight}
    handlers["gateway"] = _gateway
    handlers["otlp"] = _otlp
    handlers["demo"] = _demo
    handlers["keys"] = keys_command
    handlers["iceberg"] = iceberg_command
    try:
        if args.command in _SERVICES or args.command == "demo":  # demo runs a stack's services here
            _check_service_loop()  # before anything starts
            main = _serve(handlers[args.command], args) if args.command in _SERVICES else handlers["demo"](args)
            return run_service_loop(main)  # uvloop when installed
        return asyncio.run(handlers[args.command](args))
    except (AdminError, LakehouseError, AuthConfigurationError, IdentityError, TlsConfigurationError) as exc:
        print(f"sirius {args.command}: {exc}", file=sys.stderr)
        return 2


def _check_service_loop() -> None:
    """Refuse a bad ``SIRIUS_EVENT_LOOP`` (or ``uvloop`` asked for and missing) as a usage error."""
    try:
        service_loop_factory()
    except (ValueError, ImportError) as exc:
        raise AdminError(str(exc)) from exc


_EXPLORE_COMMANDS = frozenset({"trace", "tail", "services", "perfetto"})


def _blocking_command(args: argparse.Namespace) -> int:
    """``sirius spool`` and ``sirius sail``: commands that run without an event loop."""
    if args.command == "sail":
        from ..distributed import run_sail_command

        return run_sail_command(args.workers, args.host, args.port)
    from ._spool_command import run_spool

    return run_spool(args)


def _explore_command(args: argparse.Namespace) -> int:
    """``sirius trace|tail|services|perfetto``: Explore's terminal companions."""
    from ..flight.explore import TailOptions, run_perfetto, run_services, run_tail, run_trace

    client = {"uri": args.uri, "api_key": args.api_key, "ca_file": args.tls_ca}
    if args.command == "trace":
        return run_trace(args.trace_id, begin=args.begin, end=args.end, **client)
    if args.command == "services":
        return run_services(begin=args.begin, end=args.end, **client)
    if args.command == "perfetto":
        return run_perfetto(args.process_id, args.output, begin=args.begin, end=args.end, **client)
    options = TailOptions(
        service=args.service,
        level=args.level,
        target=args.target,
        text=args.text,
        begin=args.begin,
        initial=args.lines,
        follow=args.follow,
        max_polls=args.max_polls,
        interval=args.interval,
    )
    return run_tail(options, **client)


# Ctrl-C, ``kill`` / container stop, and a closed terminal (SIGHUP, whose default action would
# kill the process without stopping what it started, e.g. the embedded PostgreSQL).
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Long-running commands catch those signals from their first moment: one arriving while they
# start (before they print that they listen) then stops them cleanly instead of killing them.
_SERVICES = frozenset({"up", "ingest", "otlp", "daemon", "flight", "gateway"})
_STOP: contextvars.ContextVar[asyncio.Event] = contextvars.ContextVar("sirius_stop_requested")


@contextlib.contextmanager
def _stop_requested() -> Iterator[asyncio.Event]:
    """An event set by SIGINT, SIGTERM or SIGHUP while the block runs (handlers removed after).

    Nested uses share the outermost event and its handlers.
    """
    outer = _STOP.get(None)
    if outer is not None:
        yield outer
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    token = _STOP.set(stop)
    try:
        yield stop
    finally:
        _STOP.reset(token)
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _serve(handler: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run a long-running command with the stop signals caught for its whole life."""
    with _stop_requested():
        try:
            return await handler(args)
        finally:
            await close_service_access()


async def _wait_for_stop_signal() -> None:
    """Return on SIGINT, SIGTERM or SIGHUP (Ctrl-C, ``kill``, container stop, closed terminal)."""
    with _stop_requested() as stop:
        await stop.wait()


def _server_tls(args: argparse.Namespace, service: str) -> ServerTls | None:
    """The command's certificate and key (flags, else environment), checked; warns once if a public bind has none."""
    tls = ServerTls.resolve(args.tls_cert, args.tls_key)
    warn_plaintext_bind(service, args.host, tls)
    return tls


def _local_host(host: str) -> str:
    """The address this process reaches its own listener bound on ``host`` at."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


async def _up(args: argparse.Namespace) -> int:
    options = StackOptions(
        data_dir=Path(args.data_dir),
        host=args.host,
        ingestion_port=args.ingestion_port,
        otlp_grpc_port=args.otlp_grpc_port,
        otlp_http_port=args.otlp_http_port,
        flight_port=args.flight_port,
        gateway_port=args.gateway_port,
        disable_auth=args.disable_auth,
        durable=not args.fast_unsafe,
        self_telemetry=args.self_telemetry if args.self_telemetry is not None else self_telemetry_default(True),
        tls=ServerTls.resolve(args.tls_cert, args.tls_key),
        tls_ca_file=args.tls_ca,
    )
    if args.fast_unsafe:
        print("sirius up: --fast-unsafe: durability is off (no fsync); a machine crash can lose data", file=sys.stderr)
    stack = Stack(options)
    # Signals are caught from here on: one arriving while the stack starts (the database is
    # being started in a worker thread) stops it once started instead of orphaning it.
    with _stop_requested() as stop:
        endpoints = await stack.start()
        try:
            for line in service_lines(endpoints):
                print(line, flush=True)
            if args.smoke:
                from ._smoke import run_smoke

                return await run_smoke(stack)
            print("\npoint producers and clients at it:", *client_exports(endpoints), sep="\n  ", flush=True)
            explore = explore_line(endpoints)
            if explore:
                print(f"\n{explore}", flush=True)
            print("sirius is up; Ctrl-C to stop", flush=True)
            await stop.wait()
            return 0
        finally:
            await stack.stop()
            with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
                print("sirius stopped", flush=True)


async def _remove_orphaned_temp_files(store: ObjectStore) -> None:
    """Remove the local store's temporary files a crashed writer left (``sirius up`` does more)."""
    if isinstance(store, LocalObjectStore):
        removed = await store.remove_stale_temp_files(time.time() - _ORPHANED_TEMP_FILE_AGE_S)
        if removed:
            _LOG.info("removed %d temporary files a crashed writer left in %s", removed, store.root)


async def _migrate(args: argparse.Namespace) -> int:
    pool = await create_pool(LakehouseConfig.resolve_dsn(args.sql_connection_string))
    try:
        await migrate(pool)
    finally:
        await pool.close()
    print("schema is up to date", flush=True)
    return 0


async def _ingest(args: argparse.Namespace) -> int:
    dsn = LakehouseConfig.resolve_dsn(args.sql_connection_string)
    keys = await service_access(ServiceRole.INGESTION, dsn, args.host, disable_auth=args.disable_auth)
    tls = _server_tls(args, "ingest")
    claims = [PortClaim("ingestion", args.port, "--port")]
    check_ports_free(args.host, claims)  # before connecting anywhere
    config = LakehouseConfig.resolve(args.sql_connection_string, args.object_store_uri)
    pool = await create_pool(config.sql_connection_string)
    store = open_object_store(config.object_store_uri)
    server: HttpServer | None = None
    telemetry = SelfTelemetry() if self_telemetry_default(False) else None
    try:
        # Micromegas services migrate on start; several replicas doing so at once is safe (advisory lock).
        await migrate(pool)
        await _remove_orphaned_temp_files(store)
        service = IngestionService(DataLake(pool), store, keys)
        app = service.make_app()
        if telemetry is not None:
            telemetry.install(app)
        server = HttpServer(app, args.host, args.port, tls=tls)
        port = await start_claimed(args.host, claims, server.start)
        print(f"ingestion    {server.scheme}://{args.host}:{port}", flush=True)
        if telemetry is not None:
            url = f"{server.scheme}://{_local_host(args.host)}:{port}"
            telemetry.start(url, first_env_key(), service="ingest")
        await _wait_for_stop_signal()
    finally:
        if telemetry is not None:
            await asyncio.to_thread(telemetry.stop)
        if server is not None:
            await server.stop()
        await store.close()
        await pool.close()
    return 0


def _start_single_service_telemetry(service: str) -> SelfTelemetry | None:
    """Trace this single service when ``SIRIUS_SELF_TELEMETRY`` is on (off by default).

    It sends to ``MICROMEGAS_TELEMETRY_URL``, as the process ``sirius`` with ``sirius_service``.
    """
    if not self_telemetry_default(False):
        return None
    telemetry = SelfTelemetry()
    return telemetry if telemetry.start(None, None, service=service) else None


async def _daemon(args: argparse.Namespace) -> int:
    config = LakehouseConfig.resolve(args.sql_connection_string, args.object_store_uri)
    lake = await Lakehouse.open(config)  # migrates, like every Micromegas service on start
    telemetry = _start_single_service_telemetry("daemon")
    wrapper = telemetry.wrap_pass if telemetry is not None else None
    publisher = publisher_from_env(config.sql_connection_string, config.object_store_uri)
    daemon = MaintenanceDaemon(
        lake,
        # The reference's guarded second [S-2 s, S-1 s) (producers' clocks may be skewed), with
        # provisional slices up to the present every 500 ms: rows queryable well under 1.5 s.
        DaemonConfig(
            retention_days=config.retention_days,
            retention_days_by_view=config.retention_days_by_view,
            retention_exact=config.retention_exact,
            second_pass_period_ns=500_000_000,
            provisional_slices=True,
        ),
        pass_wrapper=wrapper,
        publisher=publisher,
    )
    try:
        await daemon.start()
        print("maintenance daemon running (live ETL and retention); Ctrl-C to stop", flush=True)
        await _wait_for_stop_signal()
    finally:
        await daemon.stop()
        if telemetry is not None:
            await asyncio.to_thread(telemetry.stop)
        await lake.close()
    return 0


async def _flight(args: argparse.Namespace) -> int:
    from ..flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider

    dsn = LakehouseConfig.resolve_dsn(args.sql_connection_string)
    keys = await service_access(ServiceRole.ANALYTICS, dsn, args.host, disable_auth=args.disable_auth)
    tls = _server_tls(args, "flight")
    claims = [PortClaim("flightsql", args.port, "--port")]
    check_ports_free(args.host, claims)  # gRPC may share a port (SO_REUSEPORT): probe first
    config = LakehouseConfig.resolve(args.sql_connection_string, args.object_store_uri)
    lake = await Lakehouse.open(config)
    service = FlightSqlService(
        LakehouseSessionProvider(lake),
        keys,
        FlightSqlConfig(
            host=args.host,
            port=args.port,
            query_timeout_seconds=args.query_timeout,
            query_memory_limit_bytes=args.query_memory_limit,
            tls=tls,
        ),
        loop=asyncio.get_running_loop(),
    )
    telemetry = _start_single_service_telemetry("flight")
    try:
        port = await start_claimed(args.host, claims, service.start)
        print(f"flightsql    {service.config.scheme}://{args.host}:{port}", flush=True)
        await _wait_for_stop_signal()
    finally:
        await service.stop()
        if telemetry is not None:
            await asyncio.to_thread(telemetry.stop)
        await lake.close()
    return 0


async def _gateway(args: argparse.Namespace) -> int:
    from ..flight import GatewayService

    # The gateway reads the analytics keys when it can reach the database; FlightSQL checks
    # every forwarded credential again in any case.
    keys = await service_access(ServiceRole.ANALYTICS, optional_dsn(), args.host, disable_auth=args.disable_auth)
    tls = _server_tls(args, "gateway")
    claims = [PortClaim("gateway", args.port, "--port")]
    check_ports_free(args.host, claims)
    gateway = GatewayService(args.flight_uri, keys, tls_ca_file=args.tls_ca)
    server = HttpServer(gateway.make_app(), args.host, args.port, tls=tls)
    try:
        port = await start_claimed(args.host, claims, server.start)
        print(f"gateway      {server.scheme}://{args.host}:{port}/gateway", flush=True)
        await _wait_for_stop_signal()
    finally:
        await server.stop()
        gateway.close()
    return 0


async def _otlp(args: argparse.Namespace) -> int:
    from ..collector import OtlpService

    dsn = LakehouseConfig.resolve_dsn(args.sql_connection_string)
    keys = await service_access(ServiceRole.INGESTION, dsn, args.host, disable_auth=args.disable_auth)
    tls = _server_tls(args, "otlp")
    claims = [
        PortClaim("otlp-grpc", args.grpc_port, "--grpc-port"),
        PortClaim("otlp-http", args.http_port, "--http-port"),
    ]
    check_ports_free(args.host, claims)  # before connecting anywhere
    config = LakehouseConfig.resolve(args.sql_connection_string, args.object_store_uri)
    pool = await create_pool(config.sql_connection_string)
    store = open_object_store(config.object_store_uri)
    service: OtlpService | None = None
    try:
        await migrate(pool)
        await _remove_orphaned_temp_files(store)
        service = OtlpService(
            DataLake(pool), store, keys, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port, tls=tls
        )
        ports = await start_claimed(args.host, claims, service.start)
        scheme = "https" if tls is not None else "http"
        print(f"otlp-grpc    {scheme}://{args.host}:{ports.grpc}", flush=True)
        print(f"otlp-http    {scheme}://{args.host}:{ports.http}", flush=True)
        await _wait_for_stop_signal()
    finally:
        if service is not None:
            await service.stop()
        await store.close()
        await pool.close()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return await run_demo(Path(args.data_dir), requests=args.requests, seed=args.seed)
