"""Sirius flight: the FlightSQL server, the HTTP query gateway and query client helpers."""

from __future__ import annotations

from ._exceptions import (
    FlightSqlError,
    InternalQueryError,
    InvalidQueryError,
    QueryResourcesError,
    QueryTimeoutError,
    ServerBusyError,
    UnsupportedCommandError,
)
from ._gateway import GatewayService, register_ui
from ._lakehouse_provider import LakehouseSessionProvider
from ._memory_provider import GLOBAL_VIEWS, VIEW_SCHEMAS, InMemoryLake, InMemorySessionProvider
from ._query_client import DEFAULT_QUERY_URI, QueryClientError, format_table, parse_time, query_table, run_query
from ._server import DEFAULT_FLIGHT_PORT, FlightSqlConfig, FlightSqlServer, FlightSqlService
from ._session import ANONYMOUS, Caller, SessionProvider, SessionRequest
from .explore import mount_explore

__all__ = [
    "ANONYMOUS",
    "DEFAULT_FLIGHT_PORT",
    "DEFAULT_QUERY_URI",
    "GLOBAL_VIEWS",
    "VIEW_SCHEMAS",
    "Caller",
    "FlightSqlConfig",
    "FlightSqlError",
    "FlightSqlServer",
    "FlightSqlService",
    "GatewayService",
    "InMemoryLake",
    "InMemorySessionProvider",
    "InternalQueryError",
    "InvalidQueryError",
    "LakehouseSessionProvider",
    "QueryClientError",
    "QueryResourcesError",
    "QueryTimeoutError",
    "ServerBusyError",
    "SessionProvider",
    "SessionRequest",
    "UnsupportedCommandError",
    "format_table",
    "parse_time",
    "query_table",
    "run_query",
]

# The gateway serves Explore: registered here, above both, because Explore builds on the gateway.
register_ui(mount_explore)
