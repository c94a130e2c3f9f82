"""Grafana: the provisioned datasource and dashboard, and the RPCs Grafana's FlightSQL plugin makes.

The plugin's backend (Go) issues ``GetFlightInfo(CommandStatementQuery)`` then ``DoGet`` of the
single endpoint's ticket, with the datasource's bearer token and metadata headers, after
expanding macros (``$__timeFilter``, ``$__dateBin``) and Grafana's variables. This test does the
same with the dashboard's own queries and checks the frames Grafana would build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from _sample_lake import BEGIN_NS, END_NS
from _support import API_KEY
from pyarrow import flight

from sirius.flight import _protocol as proto
from sirius.tracing.transit._rfc3339 import format_rfc3339_ns

GRAFANA = Path(__file__).resolve().parents[2] / "compose" / "grafana"
FROM = format_rfc3339_ns(BEGIN_NS).replace(".000000000", "")
TO = format_rfc3339_ns(END_NS).replace(".000000000", "")
INTERVAL_SECONDS = 60
# Types Grafana's backend copies values of (micromegas-query.md §12.6).
GRAFANA_SAFE = (
    pa.types.is_string,
    pa.types.is_floating,
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_timestamp,
    pa.types.is_duration,
)


def _datasource() -> dict:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "sirius.yaml").read_text())
    [datasource] = config["datasources"]
    return datasource


def _dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "sirius-overview.json").read_text())


def _expand(sql: str, process_id: str) -> str:
    """What the plugin (sqlutil macros + its $__dateBin) and Grafana's variables make of a query."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m[1]} >= '{FROM}' AND {m[1]} <= '{TO}'", sql)
    sql = re.sub(
        r"\$__dateBin\((\w+)\)",
        lambda m: f"date_bin(interval '{INTERVAL_SECONDS} second', {m[1]}, timestamp '1970-01-01T00:00:00Z')",
        sql,
    )
    sql = sql.replace("${__from:date:iso}", FROM.replace("Z", ".000Z")).replace(
        "${__to:date:iso}", TO.replace("Z", ".000Z")
    )
    sql = sql.replace("${process}", process_id).replace("$process", process_id)
    assert "$" not in sql, sql
    return sql


class _Grafana:
    """The plugin's query path: GetFlightInfo(CommandStatementQuery) → DoGet(endpoint[0].ticket)."""

    def __init__(self, uri: str, datasource: dict) -> None:
        self.client = flight.connect(uri)
        headers = [(b"authorization", f"Bearer {API_KEY}".encode())]
        for item in datasource["jsonData"]["metadata"]:
            headers += [(k.encode(), v.encode()) for k, v in item.items()]
        self.options = flight.FlightCallOptions(headers=headers)

    def query(self, sql: str) -> pa.Table:
        descriptor = flight.FlightDescriptor.for_command(proto.pack(proto.CommandStatementQuery(query=sql)))
        info = self.client.get_flight_info(descriptor, self.options)
        assert len(info.endpoints) == 1, "the plugin refuses other endpoint counts"
        return self.client.do_get(info.endpoints[0].ticket, self.options).read_all()

    def command(self, message) -> pa.Table:
        descriptor = flight.FlightDescriptor.for_command(proto.pack(message))
        info = self.client.get_flight_info(descriptor, self.options)
        return self.client.do_get(info.endpoints[0].ticket, self.options).read_all()


@pytest.fixture
def grafana(keyed_server) -> _Grafana:
    return _Grafana(keyed_server.uri, _datasource())


def test_datasource_provisioning() -> None:
    datasource = _datasource()
    assert datasource["type"] == "influxdata-flightsql-datasource"
    assert datasource["jsonData"]["host"] == "flight:50051"
    assert datasource["jsonData"]["secure"] is False
    assert {"x-client-type": "grafana"} in datasource["jsonData"]["metadata"]
    assert datasource["secureJsonData"]["token"] == "$__env{SIRIUS_API_KEY}"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "sirius.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards/sirius"


def test_health_check_query(grafana) -> None:
    assert grafana.query("select 1").num_rows == 1


def test_dashboard_queries_run_and_return_grafana_safe_frames(grafana, sample) -> None:
    dashboard = _dashboard()
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Log volume by level", "Metrics over time", "Top slow spans (process $process)"} <= titles
    [variable] = dashboard["templating"]["list"]
    processes = grafana.query(variable["query"]["queryText"])
    assert set(processes["process_id"].to_pylist()) == {p.process_id for p in sample[1]}
    process_id = sample[1][0].process_id
    for panel in dashboard["panels"]:
        [target] = panel["targets"]
        table = grafana.query(_expand(target["queryText"], process_id))
        assert table.num_rows > 0, panel["title"]
        for field in table.schema:
            assert any(check(field.type) for check in GRAFANA_SAFE), (panel["title"], field)
        if target["format"] == "time_series":
            times = table["time"]
            assert times.type == pa.timestamp("ns", tz="+00:00"), panel["title"]
            values = times.cast(pa.int64()).to_pylist()
            assert values == sorted(values)
            assert all(v % (INTERVAL_SECONDS * 10**9) == 0 for v in values)
    levels = grafana.query(_expand(dashboard["panels"][0]["targets"][0]["queryText"], process_id))
    assert set(levels["level"].to_pylist()) == {"fatal", "error", "warn", "info", "debug", "trace"}
    spans = grafana.query(_expand(dashboard["panels"][2]["targets"][0]["queryText"], process_id))
    assert spans["name"].to_pylist()[0] == "handle_request"


def test_grafana_gets_hex_ids_and_json_for_nested_values(grafana) -> None:
    table = grafana.query("SELECT properties, tags FROM streams LIMIT 1")
    assert table.schema.field("properties").type == pa.utf8()
    assert table.schema.field("tags").type == pa.utf8()
    json.loads(table["tags"][0].as_py())


def test_sql_info_lists_at_the_positions_grafana_reads(grafana) -> None:
    table = grafana.command(proto.CommandGetSqlInfo())
    ids = table["info_name"].to_pylist()
    assert ids[17:22] == [508, 509, 510, 511, 512]
    values = table["value"].to_pylist()
    assert values[0] == "Sirius Flight SQL Server"
    assert "SELECT" in values[17]
    assert "property_get" in values[20]
    assert "date_bin" in values[21]
    only = grafana.command(proto.CommandGetSqlInfo(info=[0, 508]))
    assert only["info_name"].to_pylist() == [0, 508]


def test_tables_with_type_filter_and_schema(grafana) -> None:
    tables = grafana.command(proto.CommandGetTables(table_types=["BASE TABLE", "table"]))
    assert tables["table_name"].to_pylist() == [
        "blocks",
        "log_entries",
        "log_stats",
        "measures",
        "processes",
        "streams",
    ]
    assert set(tables["table_type"].to_pylist()) == {"table"}
    assert grafana.command(proto.CommandGetTables(table_types=["VIEW"])).num_rows == 0
    columns = grafana.command(proto.CommandGetTables(table_name_filter_pattern="log\\_entries", include_schema=True))
    assert columns["table_name"].to_pylist() == ["log_entries"]
    schema = pa.ipc.read_schema(pa.py_buffer(columns["table_schema"][0].as_py()))
    assert schema.names[:4] == ["process_id", "stream_id", "block_id", "insert_time"]
    assert schema.field("process_id").type == pa.utf8()
    like = grafana.command(proto.CommandGetTables(table_name_filter_pattern="%s"))
    assert like["table_name"].to_pylist() == ["blocks", "log_entries", "log_stats", "measures", "processes", "streams"]
    assert grafana.command(proto.CommandGetTableTypes())["table_type"].to_pylist() == ["table"]
    assert grafana.command(proto.CommandGetCatalogs())["catalog_name"].to_pylist() == [""]
    assert grafana.command(proto.CommandGetDbSchemas())["db_schema_name"].to_pylist() == [""]
