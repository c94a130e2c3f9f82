"""``sirius query`` (``run_query``): formats, relative times, errors, progress."""

from __future__ import annotations

import csv
import io
import json

import pytest
from _sample_lake import END_NS
from _support import API_KEY

from sirius.admin.cli import main
from sirius.flight import QueryClientError, parse_time, run_query
from sirius.flight._environment_variables import MICROMEGAS_ANALYTICS_URI, MICROMEGAS_API_KEY

SQL = "SELECT level, count(*) AS n FROM log_entries GROUP BY level ORDER BY level"


def _run(uri: str, sql: str = SQL, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_query(sql, uri=uri, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_table_format(flight_server) -> None:
    code, out, err = _run(flight_server.uri)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["level", "n"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[-1] == "(6 rows)"


def test_csv_and_json_formats(flight_server) -> None:
    code, out, _ = _run(flight_server.uri, output_format="csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["level"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    code, out, _ = _run(
        flight_server.uri, "SELECT time, msg FROM log_entries ORDER BY time LIMIT 2", output_format="json"
    )
    assert code == 0
    parsed = json.loads(out)
    assert len(parsed) == 2
    assert parsed[0]["time"].endswith("Z")


def test_relative_and_absolute_ranges(flight_server) -> None:
    sql = "SELECT count(*) AS n FROM log_entries"
    _, everything, _ = _run(flight_server.uri, sql, output_format="json")
    _, last_half_hour, _ = _run(flight_server.uri, sql, begin="30m", output_format="json", now_ns=END_NS)
    _, absolute, _ = _run(
        flight_server.uri, sql, begin="2024-05-01T11:30:00Z", end="2024-05-01T12:00:00Z", output_format="json"
    )
    total, recent = json.loads(everything)[0]["n"], json.loads(last_half_hour)[0]["n"]
    assert 0 < recent < total
    assert json.loads(absolute)[0]["n"] == recent


def test_parse_time() -> None:
    assert parse_time("7d", 10 * 86_400 * 10**9) == 3 * 86_400 * 10**9
    assert parse_time("90s", 100 * 10**9) == 10 * 10**9
    with pytest.raises(QueryClientError, match="invalid time"):
        parse_time("last tuesday", 0)


def test_errors_are_reported_with_exit_code_2(flight_server, keyed_server) -> None:
    code, out, err = _run(flight_server.uri, "SELECT * FROM nope")
    assert code == 2
    assert out == ""
    assert "table 'datafusion.public.nope' not found" in err
    assert "Traceback" not in err
    code, _, err = _run(keyed_server.uri, "SELECT 1")
    assert code == 2
    assert "invalid token" in err
    assert _run(keyed_server.uri, "SELECT 1", api_key=API_KEY)[0] == 0
    code, _, err = _run(flight_server.uri, begin="yesterday")
    assert code == 2
    assert "invalid time" in err
    code, _, err = _run("grpc://127.0.0.1:1", "SELECT 1")
    assert code == 2
    assert "cannot reach" in err or "unavailable" in err.lower()


def test_progress_goes_to_stderr(flight_server) -> None:
    code, out, err = _run(flight_server.uri, progress=True)
    assert code == 0
    assert "(6 rows)" in out
    assert "\x1b[K" in err  # the progress line is cleared at the end


def test_uri_and_key_come_from_the_environment(keyed_server, flight_server, monkeypatch, capsys) -> None:
    monkeypatch.setenv(MICROMEGAS_ANALYTICS_URI, keyed_server.uri)
    monkeypatch.setenv(MICROMEGAS_API_KEY, API_KEY)
    assert main(["query", "SELECT 41 + 1 AS answer", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"answer": 42}]

    # Flags win over the environment.
    assert main(["query", "SELECT 1", "--api-key", "wrong"]) == 2
    assert "invalid token" in capsys.readouterr().err
    monkeypatch.setenv(MICROMEGAS_ANALYTICS_URI, "grpc://127.0.0.1:1")
    assert main(["query", "SELECT 1", "--uri", flight_server.uri]) == 0
    capsys.readouterr()

    # Without a key the keyed server refuses: the key really came from the environment.
    monkeypatch.setenv(MICROMEGAS_ANALYTICS_URI, keyed_server.uri)
    monkeypatch.delenv(MICROMEGAS_API_KEY)
    assert main(["query", "SELECT 1"]) == 2
    assert "invalid token" in capsys.readouterr().err


JSONB_SQL = "SELECT msg, properties, process_properties FROM log_entries ORDER BY time LIMIT 3"


def test_jsonb_columns_print_as_json(flight_server, sample) -> None:
    code, out, err = _run(flight_server.uri, JSONB_SQL)
    assert code == 0, err
    header, _, *rows = out.splitlines()
    assert header.split() == ["msg", "properties", "process_properties"]
    assert all('{"request":"' in row for row in rows[:3])
    code, out, _ = _run(flight_server.uri, JSONB_SQL, output_format="csv")
    assert code == 0
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert all(set(json.loads(row["properties"])) == {"request"} for row in parsed)
    code, out, _ = _run(flight_server.uri, JSONB_SQL, output_format="json")
    assert code == 0
    rows = json.loads(out)
    assert all(set(row["properties"]) == {"request"} for row in rows)
    assert all(isinstance(row["process_properties"], dict) for row in rows)


def test_binary_columns_that_are_not_jsonb_stay_hex(flight_server) -> None:
    sql = "SELECT X'0102' AS properties, X'00ff' AS trace_id, jsonb_parse('[1, \"a\"]') AS jsonb_value"
    code, out, _ = _run(flight_server.uri, sql, output_format="json")
    assert code == 0
    assert json.loads(out) == [{"properties": "0102", "trace_id": "00ff", "jsonb_value": [1, "a"]}]
