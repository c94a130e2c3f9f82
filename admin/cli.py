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
DEFAULT_HOST = "127.0.0.1"


def _add_lake_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sql-connection-string",
        help="PostgreSQL URI (default: $MICROMEGAS_SQL_CONNECTION_STRING)",
    )
    parser.add_argument(
        "--object-store-uri",
        help="file:///path or s3://bucket/prefix (default: $MICROMEGAS_OBJECT_STORE_URI)",
    )


def _add_auth_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--disable-auth",
        action="store_true",
        help="allow serving a non-loopback address without MICROMEGAS_API_KEYS",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every ``sirius`` subcommand (also used by tests and compose checks)."""
    parser = argparse.ArgumentParser(prog="sirius", description="Sirius observability lakehouse")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run every service in one process (embedded PostgreSQL by default)")
    up.add_argument("--data-dir", default="sirius-data", help="where the embedded database and objects live")
    up.add_argument("--host", default=DEFAULT_HOST, help="address the services bind (default 127.0.0.1)")
    up.add_argument("--ingestion-port", type=int, default=DEFAULT_INGESTION_PORT, help="0 = pick a free port")
    up.add_argument(
        "--smoke",
        action="store_true",
        help="start, ingest a sample process through the HTTP service, read it back, and stop",
    )
    _add_auth_flag(up)

    migrate = sub.add_parser("migrate", help="create or upgrade the PostgreSQL schema, then exit")
    migrate.add_argument("--sql-connection-string", help="PostgreSQL URI (default: $MICROMEGAS_SQL_CONNECTION_STRING)")

    ingest = sub.add_parser("ingest", help="run the ingestion HTTP service (/ingestion/insert_*)")
    ingest.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    ingest.add_argument("--port", type=int, default=DEFAULT_INGESTION_PORT)
    _add_lake_flags(ingest)
    _add_auth_flag(ingest)
    daemon = sub.add_parser("daemon", help="run the maintenance daemon (live ETL passes and retention)")
    _add_lake_flags(daemon)
    return parser


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
