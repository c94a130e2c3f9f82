"""The HTTP gateway: ``POST /gateway/query`` forwarded to FlightSQL, ``GET /gateway/health``."""

from __future__ import annotations

import http.client
import json

import pytest
from _sample_lake import END_NS
from _support import API_KEY, KEYS_JSON

from sirius.collector import ApiKeys, HttpServer
from sirius.flight import GatewayService


@pytest.fixture(scope="module")
def gateway(keyed_server):
    service = GatewayService(keyed_server.uri, ApiKeys.parse(KEYS_JSON))
    server = HttpServer(service.make_app(), "127.0.0.1", 0)
    port = keyed_server.call(server.start())
    yield port
    keyed_server.call(server.stop())


def _post(port: int, body: object, *, key: str | None = API_KEY, raw: bytes | None = None) -> tuple[int, dict, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", "/gateway/query", body=raw if raw is not None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), json.loads(data)


def test_health(gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=10)
    conn.request("GET", "/gateway/health")
    assert conn.getresponse().status == 200


def test_query_returns_rows(gateway) -> None:
    status, _, rows = _post(
        gateway, {"sql": "SELECT level, count(*) AS n FROM log_entries GROUP BY level ORDER BY level"}
    )
    assert status == 200
    assert [row["level"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(row["n"], int) for row in rows)


def test_query_with_range_and_typed_values(gateway) -> None:
    body = {
        "sql": "SELECT time, exe, properties, level FROM log_entries ORDER BY time LIMIT 3",
        "time_range_begin": "2024-05-01T11:30:00Z",
        "time_range_end": "2024-05-01T12:00:00Z",
    }
    status, _, rows = _post(gateway, body)
    assert status == 200
    assert len(rows) == 3
    assert rows[0]["time"] >= "2024-05-01T11:30:00.000000000Z"
    assert rows[0]["time"].endswith("Z")
    assert rows[0]["exe"].startswith("/usr/bin/")
    assert isinstance(rows[0]["properties"], dict)  # JSONB as JSON, not hex


def test_jsonb_columns_as_json_and_binary_ids_as_hex(gateway) -> None:
    status, _, rows = _post(
        gateway,
        {"sql": "SELECT jsonb_parse('{\"a\": [1, \"x\"]}') AS jsonb_doc, X'01ff' AS raw, 1 AS n"},
    )
    assert status == 200
    assert rows == [{"jsonb_doc": {"a": [1, "x"]}, "raw": "01ff", "n": 1}]


def test_empty_result_is_an_empty_array(gateway) -> None:
    assert _post(gateway, {"sql": "SELECT * FROM log_entries WHERE level > 100"})[2] == []


@pytest.mark.parametrize(
    ("body", "raw", "status", "message"),
    [
        ({"sql": "SELEC 1"}, None, 400, "SQL error"),
        ({"sql": ""}, None, 400, "non-empty 'sql'"),
        (None, b"{not json", 400, "JSON object"),
        (
            {"sql": "SELECT 1", "time_range_begin": "yesterday", "time_range_end": "2024-01-01T00:00:00Z"},
            None,
            400,
            "RFC 3339",
        ),
        ({"sql": "SELECT 1", "time_range_end": "2024-01-01T00:00:00Z"}, None, 400, "needs time_range_begin"),
        ({"sql": "SELECT 1", "time_range_begin": "1h", "time_range_end": "2h"}, None, 400, "is after"),
        ({"sql": "SELECT 1", "time_range_begin": 3600}, None, 400, "must be a string"),
    ],
)
def test_bad_requests(gateway, body, raw, status, message) -> None:
    got_status, _, payload = _post(gateway, body, raw=raw)
    assert got_status == status
    assert message in payload["error"]
    assert "Traceback" not in payload["error"]


def test_auth(gateway) -> None:
    missing = _post(gateway, {"sql": "SELECT 1"}, key=None)
    assert missing[0] == 401
    assert "needs an API key" in missing[2]["error"]
    wrong = _post(gateway, {"sql": "SELECT 1"}, key="wrong")
    assert wrong[0] == 401
    assert wrong[2]["error"] == "invalid token"
    assert _post(gateway, {"sql": "SELECT 1"})[0] == 200


@pytest.fixture(scope="module")
def gateway_at_end(keyed_server):
    """A gateway whose "now" is the end of the sample lake, for relative ranges."""
    service = GatewayService(keyed_server.uri, ApiKeys.parse(KEYS_JSON), clock=lambda: END_NS)
    server = HttpServer(service.make_app(), "127.0.0.1", 0)
    port = keyed_server.call(server.start())
    yield port
    keyed_server.call(server.stop())


def test_relative_ranges_as_the_cli_takes_them(gateway_at_end) -> None:
    sql = "SELECT count(*) AS n FROM log_entries"
    everything = _post(gateway_at_end, {"sql": sql})[2][0]["n"]
    absolute = {"sql": sql, "time_range_begin": "2024-05-01T11:30:00Z", "time_range_end": "2024-05-01T12:00:00Z"}
    status, _, rows = _post(gateway_at_end, absolute)
    assert status == 200
    recent = rows[0]["n"]
    assert 0 < recent < everything
    # "30m" alone: the last half hour up to now (the sample's end), as `sirius query --begin 30m`.
    assert _post(gateway_at_end, {"sql": sql, "time_range_begin": "30m"})[2][0]["n"] == recent
    relative_both = {"sql": sql, "time_range_begin": "1h", "time_range_end": "30m"}
    mixed = {"sql": sql, "time_range_begin": "2024-05-01T11:00:00Z", "time_range_end": "30m"}
    assert _post(gateway_at_end, relative_both)[2] == _post(gateway_at_end, mixed)[2]


def test_sql_errors_are_400_without_internal(gateway) -> None:
    for sql in ("SELECT sum(msg) FROM log_entries", "SELECT * FROM log_entries WHERE properties = 1"):
        status, _, body = _post(gateway, {"sql": sql})
        assert status == 400
        assert "Error during planning" in body["error"]
        assert "Internal" not in body["error"]
        assert "caused by" not in body["error"]
