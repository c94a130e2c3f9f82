"""ADBC's FlightSQL driver (the Go client Grafana's datasource is built on) against the server."""

from __future__ import annotations

import adbc_driver_manager
import pyarrow as pa
import pytest
from _support import API_KEY
from adbc_driver_flightsql import dbapi

RANGE = {
    "adbc.flight.sql.rpc.call_header.query_range_begin": "2024-05-01T11:30:00Z",
    "adbc.flight.sql.rpc.call_header.query_range_end": "2024-05-01T12:00:00.000000000+00:00",
}


@pytest.fixture
def connect():
    opened = []

    def make(uri: str, **db_kwargs: str):
        conn = dbapi.connect(uri, db_kwargs=db_kwargs, autocommit=True)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()


def _fetch(conn, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def test_get_info(flight_server, connect) -> None:
    info = connect(flight_server.uri).adbc_get_info()
    assert info["vendor_name"] == "Sirius Flight SQL Server"
    assert info["vendor_arrow_version"] == pa.__version__


def test_get_objects_and_table_schema(flight_server, connect) -> None:
    conn = connect(flight_server.uri)
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == [""]
    tables = {t["table_name"]: t for s in objects[0]["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert set(tables) == {"blocks", "log_entries", "log_stats", "measures", "processes", "streams"}
    assert [c["column_name"] for c in tables["log_entries"]["table_columns"]][:3] == [
        "process_id",
        "stream_id",
        "block_id",
    ]
    schema = conn.adbc_get_table_schema("measures")
    assert schema.names[-3:] == ["value", "properties", "process_properties"]
    assert schema.field("time").type == pa.timestamp("ns", tz="+00:00")
    assert conn.adbc_get_table_types() == ["table"]


def test_execute_with_range_headers(flight_server, connect, sample) -> None:
    full = _fetch(connect(flight_server.uri), "SELECT count(*) AS n FROM log_entries")["n"][0].as_py()
    ranged = _fetch(connect(flight_server.uri, **RANGE), "SELECT count(*) AS n FROM log_entries")["n"][0].as_py()
    assert full == sample[0].tables["log_entries"].num_rows
    assert 0 < ranged < full


def test_grafana_macro_query_returns_ns_timestamps(flight_server, connect) -> None:
    table = _fetch(
        connect(flight_server.uri, **RANGE),
        "SELECT date_bin(interval '60 second', time, timestamp '1970-01-01T00:00:00Z') AS time, count(*) AS entries "
        "FROM log_entries GROUP BY 1 ORDER BY 1",
    )
    assert table.schema.field("time").type == pa.timestamp("ns", tz="+00:00")
    times = table["time"].cast(pa.int64()).to_pylist()
    assert all(t % 60_000_000_000 == 0 for t in times)
    assert len(times) == 30


def test_bearer_auth(keyed_server, connect) -> None:
    ok = connect(keyed_server.uri, **{"adbc.flight.sql.authorization_header": f"Bearer {API_KEY}"})
    assert _fetch(ok, "SELECT 1 AS x")["x"][0].as_py() == 1
    with pytest.raises(adbc_driver_manager.Error, match="invalid token"):
        _fetch(connect(keyed_server.uri, **{"adbc.flight.sql.authorization_header": "Bearer wrong"}), "SELECT 1")


def test_basic_auth_handshake(keyed_server, connect) -> None:
    conn = connect(keyed_server.uri, username="tester", password=API_KEY)
    assert _fetch(conn, "SELECT 2 AS x")["x"][0].as_py() == 2
    with pytest.raises(adbc_driver_manager.Error, match="invalid username or password"):
        connect(keyed_server.uri, username="tester", password="nope")


def test_bad_sql_is_invalid_argument(flight_server, connect) -> None:
    with pytest.raises(adbc_driver_manager.ProgrammingError, match="INVALID_ARGUMENT") as info:
        _fetch(connect(flight_server.uri), "SELEC 1")
    assert "Traceback" not in str(info.value)
    assert "query_id=" in str(info.value)


def test_execute_schema_plans_without_running(flight_server, connect) -> None:
    with connect(flight_server.uri).cursor() as cur:
        schema = cur.adbc_execute_schema("SELECT time, level FROM log_entries")
    assert schema.names == ["time", "level"]
    assert schema.field("time").type == pa.timestamp("ns", tz="+00:00")
