"""``sirius spool flush``: deliver what telemetry sinks spooled to disk while ingestion was unreachable."""

from __future__ import annotations

import argparse
import sys

from ..tracing import SpoolConfig, flush_spool


def add_spool_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sirius spool flush``."""
    spool = sub.add_parser("spool", help="the telemetry spool (blocks kept on disk when ingestion was unreachable)")
    actions = spool.add_subparsers(dest="spool_command", required=True, metavar="ACTION")
    flush = actions.add_parser("flush", help="deliver every spooled block no running process holds")
    flush.add_argument("--spool-dir", help="the spool (default: $SIRIUS_SPOOL_DIR, else ~/.cache/sirius/spool)")
    flush.add_argument("--url", help="ingestion service (default: $MICROMEGAS_TELEMETRY_URL, else :9000)")
    flush.add_argument("--api-key", help="Bearer key (default: $MICROMEGAS_INGESTION_API_KEY)")
    flush.add_argument(
        "--tls-ca", help="CA bundle (PEM) trusted for an https:// service (default: $SIRIUS_TLS_CA_FILE, else system's)"
    )
    flush.add_argument("--timeout", type=float, default=60.0, help="seconds to retry an unreachable service")


def run_spool(args: argparse.Namespace) -> int:
    """Run ``sirius spool flush``; exit code 0 when nothing deliverable is left, 1 otherwise."""
    spool = SpoolConfig.resolve(args.spool_dir)
    if spool is None:
        print("sirius spool flush: spooling is disabled (SIRIUS_SPOOL_DIR=off)")
        return 0
    try:
        result = flush_spool(
            spool.directory, url=args.url, api_key=args.api_key, timeout=args.timeout, ca_file=args.tls_ca
        )
    except ValueError as exc:  # a bad URL or CA bundle: nothing was sent
        print(f"sirius spool flush: {exc}", file=sys.stderr)
        return 2
    rows = [
        ("spool", str(spool.directory)),
        ("delivered items", result.delivered_items),
        ("delivered blocks", result.delivered_blocks),
        ("delivered events", result.delivered_events),
        ("rejected items (HTTP 4xx)", result.rejected_items),
        ("corrupt entries skipped", result.corrupt_entries),
        ("entries left in the spool", result.remaining_entries),
        ("directories held by running processes", result.busy_directories),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    return 1 if result.remaining_entries else 0
