"""The ``sirius`` command line: a thin argparse layer over library code.

Each subcommand parses its flags and calls one function of ``sirius.admin`` (or the service
package it runs); nothing here holds logic worth testing apart from the argument shapes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

DEFAULT_INGESTION_PORT = 9000
DEFAULT_OTLP_GRPC_PORT = 4317
DEFAULT_OTLP_HTTP_PORT = 4318
DEFAULT_FLIGHT_PORT = 50051
DEFAULT_GATEWAY_PORT = 3000
DEFAULT_HOST = "127.0.0.1"


def _add_lake_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sql-connection-string",
        help="PostgreSQL URI (default: $MICROMEGAS_SQL_CONNECTION_STRING)",
    )
    parser.add_argument(
        "--object-store-uri",
        help="file:///path, s3://, gs:// or az://bucket/prefix (default: $MICROMEGAS_OBJECT_STORE_URI)",
    )


def _add_auth_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--disable-auth",
        action="store_true",
        help="allow serving a non-loopback address without MICROMEGAS_API_KEYS",
    )


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve TLS with this certificate chain (default: $SIRIUS_TLS_CERT_FILE; needs --tls-key)",
    )
    parser.add_argument(
        "--tls-key", metavar="PEM", help="private key of --tls-cert, unencrypted (default: $SIRIUS_TLS_KEY_FILE)"
    )


def _add_tls_ca_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--tls-ca",
        metavar="PEM",
        help=f"CA bundle trusted for {what} over TLS (default: $SIRIUS_TLS_CA_FILE, else the system's trust store)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sirius")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every ``sirius`` subcommand (also used by tests and compose checks)."""
    parser = argparse.ArgumentParser(prog="sirius", description="Sirius observability lakehouse")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"sirius {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_all_in_one(sub)
    _add_services(sub)
    _add_query(sub)
    sail = sub.add_parser("sail", help="run a Sail local-cluster on loopback for --engine sail (Ctrl-C stops it)")
    sail.add_argument("--workers", type=int, help="workers (default: $SIRIUS_SAIL_WORKERS, else 2; 0: local mode)")
    sail.add_argument("--host", default="127.0.0.1", help="address the server, driver and workers bind")
    sail.add_argument("--port", type=int, default=0, help="Spark Connect port (0: a free one, printed)")
    _add_spool(sub)
    _add_explore_commands(sub)
    _add_keys(sub)
    return parser


def _add_all_in_one(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run every service in one process (embedded PostgreSQL by default)")
    up.add_argument("--data-dir", default="sirius-data", help="where the embedded database and objects live")
    up.add_argument("--host", default=DEFAULT_HOST, help="address the services bind (default 127.0.0.1)")
    up.add_argument("--ingestion-port", type=int, default=DEFAULT_INGESTION_PORT, help="0 = pick a free port")
    up.add_argument("--otlp-grpc-port", type=int, default=DEFAULT_OTLP_GRPC_PORT, help="OTLP/gRPC; 0 = pick")
    up.add_argument("--otlp-http-port", type=int, default=DEFAULT_OTLP_HTTP_PORT, help="OTLP/HTTP; 0 = pick")
    up.add_argument("--flight-port", type=int, default=DEFAULT_FLIGHT_PORT, help="FlightSQL; 0 = pick a free port")
    up.add_argument("--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT, help="HTTP gateway; 0 = pick")
    up.add_argument(
        "--fast-unsafe",
        action="store_true",
        help="embedded PostgreSQL without fsync: faster, but a machine crash can lose acknowledged data",
    )
    up.add_argument(
        "--self-telemetry",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="trace Sirius's own services into its lake as the process 'sirius' (default on; "
        "SIRIUS_SELF_TELEMETRY=0 turns the default off)",
    )
    up.add_argument(
        "--smoke",
        action="store_true",
        help="start, ingest a sample process through the HTTP service, read it back, and stop",
    )
    _add_auth_flag(up)
    _add_tls_flags(up)
    _add_tls_ca_flag(up, "its own services (the gateway and self-telemetry connect to them)")

    demo = sub.add_parser("demo", help="start the embedded stack, run an instrumented sample app, query it, stop")
    demo.add_argument("--data-dir", default="sirius-data", help="where the embedded database and objects live")
    demo.add_argument("--requests", type=int, default=60, help="requests the sample shop serves")
    demo.add_argument("--seed", type=int, default=7, help="seed of the sample's random latencies and errors")


def _add_services(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = sub.add_parser("migrate", help="create or upgrade the PostgreSQL schema, then exit")
    migrate.add_argument("--sql-connection-string", help="PostgreSQL URI (default: $MICROMEGAS_SQL_CONNECTION_STRING)")

    ingest = sub.add_parser("ingest", help="run the ingestion HTTP service (/ingestion/insert_*)")
    ingest.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    ingest.add_argument("--port", type=int, default=DEFAULT_INGESTION_PORT)
    _add_lake_flags(ingest)
    _add_auth_flag(ingest)
    _add_tls_flags(ingest)
    otlp = sub.add_parser("otlp", help="run the OTLP receivers (gRPC :4317, HTTP :4318)")
    otlp.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    otlp.add_argument("--grpc-port", type=int, default=DEFAULT_OTLP_GRPC_PORT)
    otlp.add_argument("--http-port", type=int, default=DEFAULT_OTLP_HTTP_PORT)
    _add_lake_flags(otlp)
    _add_auth_flag(otlp)
    _add_tls_flags(otlp)

    daemon = sub.add_parser("daemon", help="run the maintenance daemon (live ETL passes and retention)")
    _add_lake_flags(daemon)
    iceberg = sub.add_parser("iceberg", help="print the Iceberg catalog of the views and its tables")
    _add_lake_flags(iceberg)
    flight = sub.add_parser("flight", help="run the FlightSQL server (micromegas client, Grafana, ADBC)")
    flight.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    flight.add_argument("--port", type=int, default=DEFAULT_FLIGHT_PORT)
    flight.add_argument("--query-timeout", type=float, default=600.0, help="seconds before a query is cancelled")
    flight.add_argument("--query-memory-limit", type=int, default=4 * 1024**3, help="bytes of memory one query may use")
    _add_lake_flags(flight)
    _add_auth_flag(flight)
    _add_tls_flags(flight)

    gateway = sub.add_parser("gateway", help="run the HTTP query gateway (POST /gateway/query)")
    gateway.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    gateway.add_argument("--port", type=int, default=DEFAULT_GATEWAY_PORT)
    gateway.add_argument(
        "--flight-uri", default=f"grpc://127.0.0.1:{DEFAULT_FLIGHT_PORT}", help="FlightSQL server (grpc+tls:// for TLS)"
    )
    _add_auth_flag(gateway)
    _add_tls_flags(gateway)
    _add_tls_ca_flag(gateway, "the FlightSQL server")


def _add_query(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    query = sub.add_parser("query", help="run SQL over FlightSQL and print the result")
    query.add_argument("sql", help="the SQL statement")
    query.add_argument("--begin", help="range start: RFC 3339 or relative (30m, 1h, 7d)")
    query.add_argument("--end", help="range end: RFC 3339 or relative")
    query.add_argument(
        "--uri",
        help=f"FlightSQL server (default: $MICROMEGAS_ANALYTICS_URI, else grpc://127.0.0.1:{DEFAULT_FLIGHT_PORT})",
    )
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.add_argument("--api-key", help="Bearer key for the FlightSQL server (default: $MICROMEGAS_API_KEY)")
    query.add_argument(
        "--engine",
        choices=("datafusion", "sail"),
        default="datafusion",
        help="sail: Spark SQL on a Sail cluster (the server's SIRIUS_SAIL_CLUSTER, or --cluster)",
    )
    query.add_argument(
        "--cluster",
        help="with --engine sail: run on this Sail cluster (sc://host:port) from here, reading the lakehouse "
        "of $MICROMEGAS_SQL_CONNECTION_STRING and $MICROMEGAS_OBJECT_STORE_URI",
    )
    _add_tls_ca_flag(query, "a grpc+tls:// FlightSQL server")


def _add_flight_client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri",
        help=f"FlightSQL server (default: $MICROMEGAS_ANALYTICS_URI, else grpc://127.0.0.1:{DEFAULT_FLIGHT_PORT})",
    )
    parser.add_argument("--api-key", help="Bearer key for the FlightSQL server (default: $MICROMEGAS_API_KEY)")
    _add_tls_ca_flag(parser, "a grpc+tls:// FlightSQL server")


def _add_explore_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Explore's terminal companions: ``trace``, ``tail``, ``services``, ``perfetto``."""
    trace = sub.add_parser("trace", help="print one trace as an indented waterfall")
    trace.add_argument("trace_id", help="the trace id (32 hex characters)")
    trace.add_argument("--begin", help="search from: RFC 3339 or relative (default 30d)")
    trace.add_argument("--end", help="search to: RFC 3339 or relative (default now)")
    _add_flight_client_flags(trace)

    tail = sub.add_parser("tail", help="print the newest log entries, then new ones as they arrive")
    tail.add_argument("--service", help="only this service")
    tail.add_argument("--level", help="most verbose level shown: 1..6 or fatal, error, warn, info, debug, trace")
    tail.add_argument("--target", help="only this target")
    tail.add_argument("--grep", dest="text", help="only messages containing this text")
    tail.add_argument("--begin", default="1h", help="how far back the first rows go (default 1h)")
    tail.add_argument("-n", "--lines", type=int, default=50, help="rows printed first (default 50)")
    follow = tail.add_mutually_exclusive_group()
    follow.add_argument(
        "-f", "--follow", dest="follow", action="store_true", default=True, help="keep polling (default)"
    )
    follow.add_argument("--once", dest="follow", action="store_false", help="print the newest rows and exit")
    tail.add_argument("--max-polls", type=int, help="stop after this many polls (default: until Ctrl-C)")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    _add_flight_client_flags(tail)

    services = sub.add_parser("services", help="print rate, errors and latency (RED) of every service")
    services.add_argument("--begin", default="1h", help="range start: RFC 3339 or relative (default 1h)")
    services.add_argument("--end", help="range end: RFC 3339 or relative (default now)")
    _add_flight_client_flags(services)

    perfetto = sub.add_parser("perfetto", help="write a process's Perfetto trace (thread and OTel spans)")
    perfetto.add_argument("process_id", help="the process id (UUID)")
    perfetto.add_argument("-o", "--output", required=True, help="file to write")
    perfetto.add_argument("--begin", help="range start (default: the process's start, seen in the last 30 days)")
    perfetto.add_argument("--end", help="range end (default: its last data)")
    _add_flight_client_flags(perfetto)


def _add_spool(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._spool_command import add_spool_parser

    add_spool_parser(sub)


def _add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._keys_command import add_keys_parser

    add_keys_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sirius`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from . import _commands

    try:
        return _commands.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
