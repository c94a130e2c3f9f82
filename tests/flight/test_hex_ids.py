"""Hex strings against the binary id columns, through real FlightSQL clients (micromegas, ADBC).

The server holds an ``otel_spans`` table read from a Parquet file sorted by ``trace_id`` with
small row groups (as the lakehouse writes the global view), so the tests also check that a hex
lookup still prunes by the row groups' statistics.
"""

from __future__ import annotations

import re
from pathlib import Path

import datafusion
import grpc
import micromegas
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from adbc_driver_flightsql import dbapi
from test_errors import assert_clean, do_get, statement_ticket

from sirius.flight import InMemorySessionProvider, SessionRequest

ROWS = 4096
ROW_GROUP = 256


def _spans() -> pa.Table:
    rng = np.random.default_rng(7)
    trace_ids = sorted(rng.bytes(16) for _ in range(ROWS // 2))
    traces = [t for t in trace_ids for _ in range(2)]  # two spans per trace
    spans = [rng.bytes(8) for _ in range(ROWS)]
    parents = [None if i % 2 == 0 else spans[i - 1] for i in range(ROWS)]
    return pa.table(
        {
            "trace_id": pa.array(traces, pa.binary(16)),
            "span_id": pa.array(spans, pa.binary(8)),
            "parent_span_id": pa.array(parents, pa.binary(8)),
            "name": pa.array([f"span {i}" for i in range(ROWS)]),
        }
    )


class _SpansProvider(InMemorySessionProvider):
    """The sample lake plus an ``otel_spans`` table read from Parquet (statistics prune)."""

    def __init__(self, lake, path: Path) -> None:
        super().__init__(lake)
        self.path = path

    async def session(self, request: SessionRequest) -> datafusion.SessionContext:
        ctx = await super().session(request)
        ctx.register_parquet("otel_spans", str(self.path))
        return ctx


@pytest.fixture(scope="module")
def spans() -> pa.Table:
    return _spans()


@pytest.fixture
def server(sample, flight_factory, spans, tmp_path):
    path = tmp_path / "otel_spans.parquet"
    pq.write_table(spans, path, row_group_size=ROW_GROUP, write_statistics=True)
    return flight_factory(provider=_SpansProvider(sample[0], path))


def test_micromegas_client_looks_up_by_hex(server, spans) -> None:
    client = micromegas.connect(server.uri)
    trace = spans["trace_id"][100].as_py()
    found = client.query(f"SELECT name, span_id FROM otel_spans WHERE trace_id = '{trace.hex()}' ORDER BY name")
    assert list(found["name"]) == ["span 100", "span 101"]
    upper = client.query(f"SELECT count(*) AS n FROM otel_spans WHERE '{trace.hex().upper()}' = otel_spans.trace_id")
    assert upper["n"][0] == 2
    span = spans["span_id"][7].as_py().hex()
    other = spans["span_id"][9].as_py().hex()
    both = client.query(f"SELECT name FROM otel_spans WHERE span_id IN ('{span}', '{other}') ORDER BY name")
    assert list(both["name"]) == ["span 7", "span 9"]
    children = client.query(
        f"SELECT count(*) AS n FROM otel_spans WHERE parent_span_id = '{spans['span_id'][6].as_py().hex()}'"
    )
    assert children["n"][0] == 1
    rest = client.query(f"SELECT count(*) AS n FROM otel_spans WHERE trace_id <> '{trace.hex()}'")
    assert rest["n"][0] == ROWS - 2


def test_adbc_looks_up_by_hex(server, spans) -> None:
    trace = spans["trace_id"][2000].as_py().hex()
    with dbapi.connect(server.uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT name FROM otel_spans WHERE trace_id IN ('{trace}') ORDER BY name")
        assert cur.fetch_arrow_table()["name"].to_pylist() == ["span 2000", "span 2001"]


def test_hex_lookup_prunes_row_groups(server, spans) -> None:
    trace = spans["trace_id"][1234].as_py().hex()
    client = micromegas.connect(server.uri)
    plan = "\n".join(client.query(f"EXPLAIN ANALYZE SELECT * FROM otel_spans WHERE trace_id = '{trace}'")["plan"])
    pruned = re.search(r"row_groups_pruned_statistics=(\d+) total → (\d+) matched", plan)
    assert pruned is not None, plan
    assert (int(pruned.group(1)), int(pruned.group(2))) == (ROWS // ROW_GROUP, 1)


def test_string_column_named_trace_id_keeps_its_meaning(server, spans) -> None:
    trace = spans["trace_id"][10].as_py().hex()
    client = micromegas.connect(server.uri)
    found = client.query(
        "SELECT count(*) AS n FROM (SELECT encode(trace_id, 'hex') AS trace_id FROM otel_spans) "
        f"WHERE trace_id = '{trace}'"
    )
    assert found["n"][0] == 2


@pytest.mark.parametrize(
    ("literal", "expected"),
    [("abc", "trace_id holds 16 bytes: compare it with a string of 32 hex digits"), ("z" * 32, "got 'zzzz")],
)
def test_a_literal_that_is_not_a_hex_id_is_invalid_argument(server, literal: str, expected: str) -> None:
    code, message = do_get(server.port, statement_ticket(f"SELECT * FROM otel_spans WHERE trace_id = '{literal}'"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in message
    assert "Internal" not in message
    assert_clean(message)
