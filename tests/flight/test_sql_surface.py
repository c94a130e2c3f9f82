"""The 0.32 SQL surface through the real FlightSQL server and the unmodified ``micromegas`` client.

JSONPath, the property conversions, ``property_get`` over every properties shape, the colour and
math helpers, ``jsonb_parse`` of invalid JSON, and (over a real lakehouse) ``parse_block`` and
``get_payload``: fixed inputs, exact outputs; bad input is INVALID_ARGUMENT and the server
keeps serving.
"""

from __future__ import annotations

import datetime
import time
import uuid

import adbc_driver_manager
import grpc
import micromegas
import pyarrow as pa
import pytest
from adbc_driver_flightsql import dbapi
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_errors import assert_serving, do_get, statement_ticket

from sirius.tracing import Level, LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info

UTC = datetime.UTC
DOC = '{"items": [{"type": "active", "id": 1}, {"type": "inactive", "id": 2}], "a": {"b": [10, 20, 30]}}'


@pytest.fixture(scope="module")
def client(flight_server):
    return micromegas.connect(flight_server.uri)


def _row(client, sql: str) -> dict:
    table = client.query_arrow(sql)
    assert table.num_rows == 1, table
    return table.to_pylist()[0]


def test_jsonb_path_query_and_first(client) -> None:
    row = _row(
        client,
        f"WITH d AS (SELECT jsonb_parse('{DOC}') AS j) SELECT "
        "jsonb_format_json(jsonb_path_query(j, '$.items[*] ? (@.type == \"active\")')) AS active, "
        "jsonb_format_json(jsonb_path_query(j, '$.items[*].id')) AS ids, "
        "jsonb_format_json(jsonb_path_query(j, '$.items[*] ? (@.id > 1 && @.type starts with \"in\").type')) AS f, "
        "jsonb_format_json(jsonb_path_query(j, '$.missing')) AS none, "
        "jsonb_as_i64(jsonb_path_query_first(j, '$.a.b[last]')) AS last, "
        "jsonb_format_json(jsonb_path_query(j, '$.a.b[0 to 1]')) AS slice, "
        "jsonb_path_query_first(j, '$.a.b[7]') IS NULL AS absent, "
        "jsonb_as_string(jsonb_path_query_first(arrow_cast(j, 'Binary'), '$.items[0].type')) AS from_binary "
        "FROM d",
    )
    assert row == {
        "active": '[{"id":1,"type":"active"}]',
        "ids": "[1,2]",
        "f": '["inactive"]',
        "none": "[]",
        "last": 30,
        "slice": "[10,20]",
        "absent": True,
        "from_binary": "active",
    }


def test_properties_in_every_shape(client) -> None:
    lists = "make_array(named_struct('key', 'host', 'value', 'a1'), named_struct('key', 'az', 'value', 'eu'))"
    row = _row(
        client,
        f"SELECT property_get({lists}, 'host') AS from_list, "
        f"property_get(properties_to_dict({lists}), 'az') AS from_dict_list, "
        "property_get(arrow_cast(jsonb_parse('{\"host\": \"b2\"}'), 'Binary'), 'host') AS from_binary, "
        "property_get(jsonb_parse('{\"host\": \"c3\"}'), 'host') AS from_jsonb, "
        f"jsonb_format_json(properties_to_jsonb({lists})) AS as_jsonb, "
        f"properties_to_array(properties_to_dict({lists})) AS round_trip, "
        f"properties_length({lists}) AS n",
    )
    assert row == {
        "from_list": "a1",
        "from_dict_list": "eu",
        "from_binary": "b2",
        "from_jsonb": "c3",
        "as_jsonb": '{"az":"eu","host":"a1"}',
        "round_trip": [{"key": "host", "value": "a1"}, {"key": "az", "value": "eu"}],
        "n": 2,
    }


def test_property_get_on_view_columns_in_filters(client) -> None:
    # the views' own Dictionary(Int32, Binary) columns: planned as before, in WHERE and ORDER BY too
    counts = client.query_arrow(
        "SELECT count(*) AS n FROM log_entries WHERE property_get(process_properties, 'nope') IS NULL"
    )
    total = client.query_arrow("SELECT count(*) AS n FROM log_entries")
    assert counts["n"].to_pylist() == total["n"].to_pylist()


def test_colour_and_math_helpers(client) -> None:
    row = _row(
        client,
        "SELECT rgba(1, 0, 0, 1) AS red, rgba(0.5, 0.5, 0.5, 1) AS grey, rgba(2, -1, 0, 0.5) AS clamped, "
        "lerp_color(rgba(1, 0, 0, 1), rgba(0, 0, 1, 1), 0.5) AS mid, "
        "lerp_color(CAST(4278190080 AS INT UNSIGNED), CAST(16711680 AS INT UNSIGNED), 0.5) AS cast_mid, "
        "color_scale('viridis', 0.0, 1.0) AS v0, color_scale('VIRIDIS', 0.5, 1.0) AS v5, "
        "color_scale('viridis', 1.5, 0.5) AS v1, color_scale('magma', 0.5, 1.0) AS m5, "
        "color_scale('plasma', 1.0, 1.0) AS p1, color_scale('inferno', 0.5, 1.0) AS i5, "
        "color_scale('cividis', 0.5, 1.0) AS c5, color_scale('turbo', 0.5, 1.0) AS t5, "
        "color_scale('turbo', 0.0, 0.0) AS t0, "
        "bin_center(3, 10) AS b1, bin_center(5, 10) AS b2, bin_center(-5, 10) AS b3, bin_center(-5.1, 10) AS b4, "
        "lerp(0.5, 1.0, 0.5) AS l, lerp(0, 10, 1.5) AS lx, unlerp(0, 10, 2.5) AS u, "
        "lerp(10, 20, unlerp(0, 1, 0.25)) AS remap, unlerp(1, 1, 2) AS inf",
    )
    assert {k: hex(v) if isinstance(v, int) else v for k, v in row.items()} == {
        "red": "0xff0000ff",
        "grey": "0x808080ff",
        "clamped": "0xff000080",
        "mid": "0x800080ff",
        "cast_mid": "0x80800000",
        "v0": "0x440154ff",
        "v5": "0x20908cff",
        "v1": "0xfde72580",
        "m5": "0xb53679ff",
        "p1": "0xf0f921ff",
        "i5": "0xbb3654ff",
        "c5": "0x7f7b74ff",
        "t5": "0x94fa50ff",
        "t0": "0x22171b00",
        "b1": 0.0,
        "b2": 10.0,
        "b3": 0.0,
        "b4": -10.0,
        "l": 0.75,
        "lx": 15.0,
        "u": 0.25,
        "remap": 12.5,
        "inf": float("inf"),
    }
    nulls = _row(client, "SELECT rgba(NULL, 0, 0, 1) AS c, lerp(1, NULL, 0.5) AS l, color_scale(NULL, 0.5, 1) AS s")
    assert nulls == {"c": None, "l": None, "s": None}


def test_invalid_json_is_null(client) -> None:
    row = _row(
        client,
        "SELECT jsonb_parse('{not json') IS NULL AS parsed, "
        "jsonb_format_json(arrow_cast(X'0102', 'Dictionary(Int32, Binary)')) IS NULL AS formatted, "
        "jsonb_format_json(jsonb_parse('[1, \"x\"]')) AS ok",
    )
    assert row == {"parsed": True, "formatted": True, "ok": '[1,"x"]'}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT jsonb_path_query(jsonb_parse('{}'), '$.items[?(@.a)]')", "invalid JSONPath '$.items[?(@.a)]'"),
        ("SELECT jsonb_path_query_first(jsonb_parse('{}'), 'a.b')", "a JSONPath starts with '$'"),
        ("SELECT jsonb_path_query(jsonb_parse('{}'), '$ ? (@.a ==)')", "expected a path or a literal"),
        ("SELECT property_get('text', 'a')", "property_get: unsupported argument type Utf8"),
        ("SELECT properties_to_jsonb(42)", "properties_to_jsonb: unsupported argument type Int64"),
        ("SELECT color_scale('rainbow', 0.5, 1.0)", "Recognized: viridis, magma, plasma, inferno, cividis, turbo"),
        ("SELECT * FROM parse_block()", "parse_block takes 1 argument(s), got 0"),
    ],
)
def test_bad_input_is_invalid_argument(flight_server, sql: str, expected: str) -> None:
    code, message = do_get(flight_server.port, statement_ticket(sql))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert expected in message
    assert "Traceback" not in message
    assert_serving(flight_server.port)


# ---------------------------------------------------------------------------------------------
# parse_block and get_payload over a real lakehouse


def _send_log_block(url: str) -> tuple[str, str]:
    process = current_process_info({"test": "parse-block"})
    log = TransitWriter(process, "log")
    for i in range(3):
        log.log_string(LogMetadata("{}", target="app", level=Level.WARN), f"event {i}", ticks=time.monotonic_ns())
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    sink.send_block(log.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return str(process.process_id), str(log.stream_info().stream_id)


def test_parse_block_and_get_payload(lake_flight) -> None:
    stack, uri = lake_flight
    process_id, stream_id = _send_log_block(stack.url)
    client = micromegas.connect(uri)

    async def block_ids() -> list:
        rows = await stack.stack.lakehouse.pool.fetch(
            "SELECT block_id, object_offset FROM blocks WHERE stream_id = $1", uuid.UUID(stream_id)
        )
        return [(str(r["block_id"]), r["object_offset"]) for r in rows]

    [(block_id, offset)] = stack.call(block_ids())
    rows = client.query_arrow(
        "SELECT object_index, type_name, jsonb_as_string(jsonb_get(value, 'msg')) AS msg, "
        "jsonb_as_string(jsonb_get(value, '__type')) AS t, "
        "jsonb_as_i64(jsonb_get(jsonb_get(value, 'desc'), 'level')) AS level, "
        f"jsonb_as_string(jsonb_get(jsonb_get(value, 'desc'), 'target')) AS target, "
        "jsonb_as_string(jsonb_path_query_first(value, '$.desc.__type')) AS desc_type, "
        "jsonb_object_keys(value) AS members "
        f"FROM parse_block('{block_id}') "
        "ORDER BY object_index"
    ).to_pylist()
    assert [r["msg"] for r in rows] == ["event 0", "event 1", "event 2"]
    assert [r["object_index"] for r in rows] == [offset, offset + 1, offset + 2]
    assert {r["type_name"] for r in rows} == {r["t"] for r in rows}
    assert len({r["type_name"] for r in rows}) == 1
    assert [r["level"] for r in rows] == [int(Level.WARN)] * 3
    assert [r["target"] for r in rows] == ["app"] * 3
    assert [r["desc_type"] for r in rows] == ["LogMetadataRecord"] * 3  # the UDT name on the wire
    assert rows[0]["members"] == ["__type", "desc", "msg", "time"]

    key = f"blobs/{process_id}/{stream_id}/{block_id}"
    stored = stack.call(stack.stack.lakehouse.store.get(key))
    payload = client.query_arrow(f"SELECT get_payload('{process_id}', '{stream_id}', '{block_id}') AS p")
    assert payload["p"].to_pylist() == [stored]

    port = int(uri.rsplit(":", 1)[1])
    for sql, expected in (
        (f"SELECT * FROM parse_block('{uuid.UUID(int=7)}')", f"parse_block: block '{uuid.UUID(int=7)}' not found"),
        ("SELECT * FROM parse_block('not-a-uuid')", "parse_block: 'not-a-uuid' is not a valid block id"),
        (
            f"SELECT get_payload('{process_id}', '{stream_id}', '{uuid.UUID(int=7)}')",
            f"get_payload: no payload for block {uuid.UUID(int=7)}",
        ),
        ("SELECT get_payload('x', 'y', 'z')", "get_payload: 'x' is not a valid process id"),
    ):
        code, message = do_get(port, statement_ticket(sql))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message
        assert expected in message
        assert message.count("query_id=") == 1, message
    assert_serving(port)


def test_parse_block_of_otlp_spans(lake_flight) -> None:
    stack, uri = lake_flight
    urls = {e.name: e.url for e in stack.endpoints}
    provider = TracerProvider(resource=Resource.create({"service.name": "parse-block"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{urls['otlp-http']}/v1/traces")))
    with provider.get_tracer("scope-a").start_as_current_span("checkout", attributes={"cart.items": 3}):
        pass
    provider.shutdown()

    async def trace_blocks() -> list:
        rows = await stack.stack.lakehouse.pool.fetch(
            "SELECT b.block_id FROM blocks b JOIN streams s ON s.stream_id = b.stream_id"
            " WHERE s.format = 'otlp/v1/traces'"
        )
        return [str(r["block_id"]) for r in rows]

    [block_id] = stack.call(trace_blocks())
    rows = (
        micromegas.connect(uri)
        .query_arrow(
            "SELECT object_index, type_name, jsonb_as_string(jsonb_get(value, 'name')) AS name, "
            "jsonb_format_json(jsonb_get(value, '__attributes')) AS attributes, "
            "jsonb_as_string(jsonb_path_query_first(value, '$.__scope.\"otel.scope.name\"')) AS scope, "
            "jsonb_format_json(jsonb_get(value, '__resource')) AS resource "
            f"FROM parse_block('{block_id}')"
        )
        .to_pylist()
    )
    assert len(rows) == 1
    [row] = rows
    assert row["type_name"] == "otlp.Span"
    assert row["name"] == "checkout"
    assert row["attributes"] == '{"cart.items":3}'
    assert row["scope"] == "scope-a"
    assert '"service.name":"parse-block"' in row["resource"]


def test_prepared_statements_get_the_schemas(client) -> None:
    stmt = client.prepare_statement(
        "SELECT property_get(arrow_cast(jsonb_parse('{\"a\": \"1\"}'), 'Binary'), 'a') AS a, "
        "color_scale('turbo', 0.5, 1.0) AS c, jsonb_path_query(jsonb_parse('[1]'), '$[*]') AS j"
    )
    assert stmt.dataset_schema.names == ["a", "c", "j"]
    assert stmt.dataset_schema.field("c").type == pa.uint32()
    blocks = client.prepare_statement(f"SELECT * FROM parse_block('{uuid.UUID(int=1)}')")
    assert blocks.dataset_schema.names == ["object_index", "type_name", "value"]
    assert [f.type for f in blocks.dataset_schema] == [pa.int64(), pa.utf8(), pa.binary()]


def test_bound_parameters_through_adbc(flight_server) -> None:
    with dbapi.connect(flight_server.uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT $1 AS s, $2 AS i, $3 AS f, $4 AS b, $5 IS NULL AS n, property_get(jsonb_parse($6), 'k') AS p",
            ("it's", 42, 2.5, True, None, '{"k": "v"}'),
        )
        assert cur.fetch_arrow_table().to_pylist() == [{"s": "it's", "i": 42, "f": 2.5, "b": True, "n": True, "p": "v"}]
        cur.execute("SELECT count(*) AS n FROM log_entries WHERE level <= ?", (6,))
        assert (
            cur.fetch_arrow_table()["n"].to_pylist()
            == micromegas.connect(flight_server.uri)
            .query_arrow("SELECT count(*) AS n FROM log_entries")["n"]
            .to_pylist()
        )
        with pytest.raises(
            adbc_driver_manager.Error,
            match=r"INVALID_ARGUMENT: \[FlightSQL\] bound parameters: 1 parameter\(s\) given but the statement uses 0",
        ):
            cur.execute("SELECT 1 AS one", (1,))
        cur.execute("SELECT '?' AS q")  # a ? inside a string is not a placeholder
        assert cur.fetch_arrow_table()["q"].to_pylist() == ["?"]
