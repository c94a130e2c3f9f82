"""Failures reach clients with the right gRPC status and a clean message; the server keeps serving.

Statuses are read with a raw gRPC client (grpcio), so they are what any client (Go, Rust,
Python) sees on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Sequence

import adbc_driver_manager
import grpc
import micromegas
import pytest
from _support import API_KEY, KEYS_JSON
from adbc_driver_flightsql import dbapi
from google.protobuf import any_pb2
from micromegas.flightsql import FlightSql_pb2
from pyarrow import flight

from sirius.collector import ApiKeys
from sirius.flight import InMemorySessionProvider, InternalQueryError, InvalidQueryError, SessionRequest
from sirius.flight._exceptions import classify_datafusion_error
from sirius.lakehouse import MetadataStoreError

DO_GET = "/arrow.flight.protocol.FlightService/DoGet"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _flight_ticket(payload: bytes) -> bytes:
    return b"\x0a" + _varint(len(payload)) + payload


def statement_ticket(sql: str) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(FlightSql_pb2.TicketStatementQuery(statement_handle=sql.encode()))
    return wrapper.SerializeToString()


def do_get(port: int, ticket: bytes, metadata: Sequence[tuple[str, str]] = ()) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_stream(DO_GET, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            list(call(_flight_ticket(ticket), metadata=list(metadata), timeout=60))
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def assert_serving(port: int, metadata: Sequence[tuple[str, str]] = ()) -> None:
    assert do_get(port, statement_ticket("SELECT 1"), metadata) == (grpc.StatusCode.OK, "")


def assert_clean(message: str) -> None:
    assert "Traceback" not in message
    assert "Python exception" not in message
    assert "query_id=" in message
    assert "Internal error" not in message
    assert "bug in DataFusion" not in message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELEC 1", "SQL error"),
        ("SELECT * FROM nope", "table 'datafusion.public.nope' not found"),
        ("SELECT nope FROM log_entries", "No field named nope"),
        ("SELECT * FROM view_instance('no_such_view', 'x')", "unknown view set 'no_such_view'"),
        ("SELECT * FROM view_instance('thread_spans', 'x')", "thread_spans needs a query range"),
        ("SELECT jsonb_path_query(jsonb_parse('{}'), '$[?(@.a)]')", "jsonb_path_query: invalid JSONPath '$[?(@.a)]'"),
        ("SELECT property_get(1, 'a')", "property_get: unsupported argument type Int64"),
        ("SELECT color_scale('nope', 0.5, 1.0)", "color_scale(): unknown colormap 'nope'"),
        ("SELECT * FROM process_spans('x')", "process_spans takes 2 or 4 argument(s), got 1"),
        ("SELECT 1/0", "Divide by zero"),
        # read-only: no statement reads a server file as a table, writes one or changes settings
        ("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/hostname'", "DDL not supported"),
        ("COPY (SELECT 1 AS a) TO '/tmp/sirius-copy-refused.csv'", "DML not supported: COPY"),
        ("CREATE TABLE t AS SELECT 1", "DDL not supported"),
        ("SET datafusion.execution.target_partitions = 1", "Statement not supported"),
        ("EXPLAIN COPY (SELECT 1 AS a) TO '/tmp/sirius-copy-refused.csv'", "DML not supported"),
    ],
)
def test_query_errors_are_invalid_argument(flight_server, sql: str, expected: str) -> None:
    code, message = do_get(flight_server.port, statement_ticket(sql))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in message
    assert_clean(message)
    assert_serving(flight_server.port)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            [("query_range_begin", "yesterday"), ("query_range_end", "2024-01-01T00:00:00Z")],
            "invalid query_range_begin",
        ),
        (
            [("query_range_begin", "2024-01-01T00:00:00Z"), ("query_range_end", "2024-13-01T00:00:00Z")],
            "invalid query_range_end",
        ),
        ([("query_range_begin", "2024-01-02T00:00:00Z"), ("query_range_end", "2024-01-01T00:00:00Z")], "is after"),
        ([("limit", "ten")], "invalid limit header"),
    ],
)
def test_bad_headers_are_invalid_argument(flight_server, headers, expected: str) -> None:
    code, message = do_get(flight_server.port, statement_ticket("SELECT 1"), headers)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in message
    assert_clean(message)
    assert_serving(flight_server.port)


def test_range_headers_accept_offsets_and_any_fraction(flight_server) -> None:
    for begin, end in [
        ("2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"),
        ("2024-05-01T13:00:00.5+02:00", "2024-05-01T12:00:00.123456789Z"),
        ("2024-05-01T11:00:00.123456+00:00", "2024-05-01T07:00:00-05:00"),
    ]:
        headers = [("query_range_begin", begin), ("query_range_end", end)]
        assert do_get(flight_server.port, statement_ticket("SELECT 1"), headers) == (grpc.StatusCode.OK, "")


def test_wrong_ticket_is_invalid_argument(flight_server) -> None:
    code, message = do_get(flight_server.port, b"\xff\x00 not a ticket")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid ticket" in message
    assert_clean(message)
    unsupported = any_pb2.Any()
    unsupported.Pack(FlightSql_pb2.CommandStatementUpdate(query="DELETE FROM x"))
    code, message = do_get(flight_server.port, unsupported.SerializeToString())
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "CommandStatementUpdate is not supported" in message
    assert_serving(flight_server.port)


def test_missing_or_wrong_key_is_unauthenticated(keyed_server) -> None:
    for metadata in ([], [("authorization", "Bearer wrong")], [("authorization", "Basic abc")]):
        code, message = do_get(keyed_server.port, statement_ticket("SELECT 1"), metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert message.startswith("invalid token")
    assert_serving(keyed_server.port, [("authorization", f"Bearer {API_KEY}")])


def test_query_over_the_timeout_is_cancelled_and_released(flight_factory) -> None:
    running = flight_factory(query_timeout_seconds=0.5)
    slow = "SELECT count(*), sum(value) FROM generate_series(1, 100000000000)"
    code, message = do_get(running.port, statement_ticket(slow))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "ran longer than its 0.5 s timeout" in message
    assert_clean(message)
    # the execution was dropped: no query holds a slot (or its memory pool) any more
    assert running.server.wait_idle(timeout=30)
    assert_serving(running.port)


def test_memory_limit_stops_the_query(flight_factory) -> None:
    running = flight_factory(query_memory_limit_bytes=8 * 1024 * 1024)
    code, message = do_get(running.port, statement_ticket("SELECT array_agg(value) FROM generate_series(1, 20000000)"))
    # Arrow C++'s gRPC transport cannot emit RESOURCE_EXHAUSTED (see sirius.flight._exceptions).
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("Resources exhausted")
    assert_clean(message)
    assert running.server.wait_idle(timeout=30)
    assert_serving(running.port)


def test_admin_functions_are_refused_to_non_admin_callers(sample, flight_factory) -> None:
    running = flight_factory(keys=ApiKeys.parse(KEYS_JSON), admin_key_names=frozenset({"someone-else"}))
    auth = [("authorization", f"Bearer {API_KEY}")]
    code, message = do_get(
        running.port,
        statement_ticket(
            "SELECT * FROM retire_partitions('log_entries', 'global', '2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z')"
        ),
        auth,
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert message.startswith("permission denied: retire_partitions is reserved to lakehouse administrators")
    for call in ("retire_partition_by_file('x')", "retire_partition_by_metadata('a', 'b', now(), now())"):
        code, message = do_get(running.port, statement_ticket(f"SELECT {call}"), auth)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        name = call.split("(", 1)[0]
        assert message.startswith(f"permission denied: {name} is reserved to lakehouse administrators")
    # non-admin table functions still work
    assert do_get(running.port, statement_ticket("SELECT * FROM list_view_sets()"), auth) == (grpc.StatusCode.OK, "")


class _GatedProvider(InMemorySessionProvider):
    """Holds every session until the test opens the gate (to have a query in flight)."""

    def __init__(self, lake) -> None:
        super().__init__(lake)
        self.entered = threading.Event()
        self.gate: asyncio.Event | None = None

    async def session(self, request: SessionRequest):
        self.gate = self.gate or asyncio.Event()
        self.entered.set()
        await self.gate.wait()
        return await super().session(request)


def test_too_many_queries_is_unavailable(sample, flight_factory) -> None:
    provider = _GatedProvider(sample[0])
    running = flight_factory(provider=provider, max_concurrent_queries=1)
    results: list[tuple[grpc.StatusCode, str]] = []
    first = threading.Thread(target=lambda: results.append(do_get(running.port, statement_ticket("SELECT 1"))))
    first.start()
    assert provider.entered.wait(30)
    code, message = do_get(running.port, statement_ticket("SELECT 2"))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "server busy" in message
    running.loop.call_soon_threadsafe(provider.gate.set)
    first.join(30)
    assert results == [(grpc.StatusCode.OK, "")]


def test_limit_header(flight_server) -> None:
    client = flight.connect(flight_server.uri)
    options = flight.FlightCallOptions(headers=[(b"limit", b"7")])
    table = client.do_get(flight.Ticket(statement_ticket("SELECT * FROM log_entries")), options).read_all()
    assert table.num_rows == 7


def test_query_id_response_header(flight_server) -> None:
    seen: list[dict] = []

    class Middleware(flight.ClientMiddleware):
        def received_headers(self, headers):
            seen.append(headers)

    class Factory(flight.ClientMiddlewareFactory):
        def start_call(self, info):
            return Middleware()

    client = flight.connect(flight_server.uri, middleware=[Factory()])
    client.do_get(flight.Ticket(statement_ticket("SELECT 1"))).read_all()
    assert any("x-query-id" in h for h in seen)


def test_micromegas_client_sees_arrow_invalid(flight_server) -> None:
    client = micromegas.connect(flight_server.uri)
    with pytest.raises(Exception, match=r"table 'datafusion\.public\.nope' not found"):
        client.query("SELECT * FROM nope")


# SQL that DataFusion rejects from an analyser rule ("type_coercion caused by …") or with an
# "Internal error … likely caused by a bug in DataFusion's code" nested in a planning error.
USER_ERRORS_DATAFUSION_CALLS_INTERNAL = [
    ("SELECT * FROM log_entries WHERE properties = 1", "Cannot infer common argument type for comparison"),
    ("SELECT sum(msg) FROM log_entries", "No function matches the given name and argument types 'sum(Utf8)'"),
    ("SELECT generate_series(1, 'a')", "No function matches the given name and argument types 'generate_series"),
    ("SELECT grouping(level) FROM log_entries", "Argument log_entries.level to grouping function"),
    ("SELECT no_such_function(1)", "Invalid function 'no_such_function'"),
    ("SELECT CAST('x' AS INT)", "Cannot cast string 'x'"),
    ("SELECT * FROM log_entries LIMIT -1", "LIMIT must be >= 0"),
]


@pytest.mark.parametrize(("sql", "expected"), USER_ERRORS_DATAFUSION_CALLS_INTERNAL)
def test_user_sql_errors_never_say_internal(flight_server, sql: str, expected: str) -> None:
    code, message = do_get(flight_server.port, statement_ticket(sql))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert expected in message
    assert "Internal" not in message
    assert "caused by" not in message
    assert_clean(message)


def _adbc_fetch(cur, sql: str) -> object:
    cur.execute(sql)
    return cur.fetch_arrow_table()


def test_user_sql_errors_reach_micromegas_and_adbc_clients_without_internal(flight_server) -> None:
    client = micromegas.connect(flight_server.uri)
    with pytest.raises(Exception, match="sum\\(Utf8\\)") as info:
        client.query("SELECT sum(msg) FROM log_entries")
    assert "Internal" not in str(info.value)
    with (
        dbapi.connect(flight_server.uri, autocommit=True) as conn,
        conn.cursor() as cur,
        pytest.raises(adbc_driver_manager.ProgrammingError, match="INVALID_ARGUMENT") as adbc_info,
    ):
        _adbc_fetch(cur, "SELECT * FROM log_entries WHERE properties = 1")
    assert "Cannot infer common argument type" in str(adbc_info.value)
    assert "Internal" not in str(adbc_info.value)


class _BrokenProvider(InMemorySessionProvider):
    """A provider whose metadata store is down: a real internal failure."""

    async def session(self, request: SessionRequest):
        msg = "connection to PostgreSQL at 10.0.0.7:5432 refused (secret detail)"
        raise MetadataStoreError(msg)


def test_internal_failures_are_internal_with_a_generic_message(sample, flight_factory, caplog) -> None:
    running = flight_factory(provider=_BrokenProvider(sample[0]))
    with caplog.at_level(logging.ERROR, logger="sirius.flight"):
        code, message = do_get(running.port, statement_ticket("SELECT 1"))
    assert code == grpc.StatusCode.INTERNAL
    assert "the server failed to run this query" in message
    assert "secret detail" not in message
    query_id = re.search(r"query_id=([0-9a-f-]+)", message).group(1)
    logged = [r.getMessage() for r in caplog.records if "secret detail" in r.getMessage()]
    assert len(logged) == 1
    assert query_id in logged[0]


PLEA = (
    "This issue was likely caused by a bug in DataFusion's code. Please help us to resolve this by filing a bug "
    "report in our issue tracker: https://github.com/apache/datafusion/issues"
)


@pytest.mark.parametrize(
    ("raised", "kind", "message"),
    [
        (
            ValueError(
                f"Error during planning: Internal error: f failed to match, errors: x.\n{PLEA}. No match 'f(Utf8)'"
            ),
            InvalidQueryError,
            "Error during planning: No match 'f(Utf8)' (query_id=q)",
        ),
        (
            Exception(f"DataFusion error: Error during planning: Internal error: only detail.\n{PLEA}"),
            InvalidQueryError,
            "Error during planning: only detail. (query_id=q)",
        ),
        (
            Exception("DataFusion error: type_coercion\ncaused by\nError during planning: Cannot infer x = y"),
            InvalidQueryError,
            "Error during planning: Cannot infer x = y (query_id=q)",
        ),
        (
            Exception(f"DataFusion error: Internal error: a real bug.\n{PLEA}"),
            InternalQueryError,
            "the server failed to run this query; its log has the details (query_id=q)",
        ),
        (
            RuntimeError("something unexpected"),
            InternalQueryError,
            "the server failed to run this query; its log has the details (query_id=q)",
        ),
    ],
)
def test_classification_of_datafusion_messages(raised: BaseException, kind: type, message: str, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="sirius.flight"):
        error = classify_datafusion_error(raised, "q")
    assert type(error) is kind
    assert str(error) == message
    if kind is InternalQueryError:
        assert len(caplog.records) == 1
        assert "query q failed inside the server" in caplog.records[0].getMessage()
