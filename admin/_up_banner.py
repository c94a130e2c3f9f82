"""What ``sirius up`` prints once it listens: one line per service, then ready-to-paste exports.

The service lines are ``<name> <url>``, one per listening service (scripts read them). The lines
after them tell a person how to point producers and clients at this stack, with its real ports:
the OTel SDK's standard variables for OTLP/HTTP, Micromegas's ``MICROMEGAS_TELEMETRY_URL`` for
producers of the native routes, and ``MICROMEGAS_ANALYTICS_URI`` for ``sirius query`` and the
``micromegas`` client's ``connect_with_profile()``. A last line gives the address of Explore,
the web UI the gateway serves at its root.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._stack import Endpoint

__all__ = ["client_exports", "explore_line", "service_lines"]


def service_lines(endpoints: Sequence[Endpoint]) -> list[str]:
    """``<name> <url>`` of each listening service, names padded to one column."""
    return [f"{endpoint.name:<12} {endpoint.url}" for endpoint in endpoints]


def client_exports(endpoints: Sequence[Endpoint]) -> list[str]:
    """Shell ``export`` lines that point producers and query clients at these endpoints."""
    urls = {endpoint.name: endpoint.url for endpoint in endpoints}
    lines = []
    if "otlp-http" in urls:
        # The Python SDK's OTLP exporter defaults to gRPC: name the protocol with the HTTP port.
        lines.append(
            f"export OTEL_EXPORTER_OTLP_ENDPOINT={urls['otlp-http']} OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        )
    if "ingestion" in urls:
        lines.append(f"export MICROMEGAS_TELEMETRY_URL={urls['ingestion']}")
    if "flightsql" in urls:
        lines.append(f"export MICROMEGAS_ANALYTICS_URI={urls['flightsql']}")
    return lines


def explore_line(endpoints: Sequence[Endpoint]) -> str | None:
    """``open Explore in a browser: <gateway root>``, or None without a gateway."""
    urls = {endpoint.name: endpoint.url for endpoint in endpoints}
    if "gateway" not in urls:
        return None
    return f"open Explore in a browser: {urls['gateway'].removesuffix('/gateway')}/"
