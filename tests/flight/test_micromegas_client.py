"""The unmodified PyPI ``micromegas`` client against the Sirius FlightSQL server."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import micromegas
import micromegas.admin
import micromegas.perfetto
import pandas as pd
import pyarrow as pa
import pytest
from _sample_lake import BEGIN_NS, END_NS, NS
from _support import API_KEY
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from perfetto_reader import parse_trace

UTC = datetime.UTC
BEGIN = datetime.datetime.fromtimestamp(BEGIN_NS / NS, UTC)
END = datetime.datetime.fromtimestamp(END_NS / NS, UTC)
HALF = BEGIN + (END - BEGIN) / 2


@pytest.fixture(scope="module")
def client(flight_server):
    return micromegas.connect(flight_server.uri)


def test_query_returns_pandas_with_ns_utc_timestamps(client) -> None:
    df = client.query("SELECT time, level, msg, target FROM log_entries ORDER BY time LIMIT 5")
    assert list(df.columns) == ["time", "level", "msg", "target"]
    assert str(df["time"].dtype) in ("datetime64[ns, UTC]", "datetime64[ns, +00:00]")
    assert len(df) == 5


def test_query_with_and_without_range(client, sample) -> None:
    total = client.query("SELECT count(*) AS n FROM log_entries")["n"][0]
    assert total == sample[0].tables["log_entries"].num_rows
    half = client.query("SELECT count(*) AS n FROM log_entries", HALF, END)["n"][0]
    assert 0 < half < total
    # offsets and fractional seconds are accepted (pandas Timestamp sends 9 digits)
    same = client.query("SELECT count(*) AS n FROM log_entries", pd.Timestamp(HALF), pd.Timestamp(END))["n"][0]
    assert same == half


def test_query_stream_yields_batches_without_dictionaries(client) -> None:
    batches = list(client.query_stream("SELECT process_id, exe, properties FROM log_entries", BEGIN, END))
    assert batches
    assert sum(b.num_rows for b in batches) > 0
    schema = batches[0].schema
    assert schema.field("process_id").type == pa.utf8()
    assert schema.field("properties").type == pa.binary()


def test_query_arrow_and_preserve_dictionary(flight_server) -> None:
    table = micromegas.connect(flight_server.uri).query_arrow("SELECT process_id, level FROM log_entries")
    assert table.schema.field("process_id").type == pa.utf8()
    kept = micromegas.connect(flight_server.uri, preserve_dictionary=True).query_arrow(
        "SELECT process_id, level FROM log_entries", BEGIN, END
    )
    assert pa.types.is_dictionary(kept.schema.field("process_id").type)
    assert kept.num_rows == table.num_rows


def test_prepare_statement_returns_the_schema(client) -> None:
    stmt = client.prepare_statement("SELECT time, level, msg FROM log_entries")
    assert stmt.query == "SELECT time, level, msg FROM log_entries"
    assert stmt.dataset_schema.names == ["time", "level", "msg"]
    assert stmt.dataset_schema.field("time").type == pa.timestamp("ns", tz="+00:00")
    rows = sum(b.num_rows for b in client.prepared_statement_stream(stmt))
    assert rows == client.query("SELECT count(*) AS n FROM log_entries")["n"][0]


def test_find_process_query_streams_blocks_spans(client, sample) -> None:
    procs = sample[1]
    proc = procs[0]
    found = client.find_process(proc.process_id)
    assert list(found["exe"]) == [proc.exe]
    streams = client.query_streams(BEGIN, END, 100, process_id=proc.process_id, tag_filter="cpu")
    assert sorted(streams["stream_id"]) == sorted(proc.thread_streams)
    blocks = client.query_blocks(BEGIN, END, 2, proc.log_stream)
    assert len(blocks) == 2
    assert set(blocks["stream_id"]) == {proc.log_stream}
    spans = client.query_spans(BEGIN, END, 10, proc.thread_streams[0])
    assert len(spans) == 10
    assert {"id", "parent", "depth", "begin", "end", "duration", "name"} <= set(spans.columns)


def test_process_spans(client, sample) -> None:
    proc = sample[1][0]
    df = client.query(
        f"SELECT stream_id, thread_name, count(*) AS n FROM process_spans('{proc.process_id}', 'both') "
        "GROUP BY 1, 2 ORDER BY 2",
        BEGIN,
        END,
    )
    assert list(df["thread_name"]) == ["async", "worker-0", "worker-1"]
    assert df.set_index("thread_name").loc["async", "stream_id"] == ""


def test_admin_partitions(client) -> None:
    client.materialize_partitions("log_entries", BEGIN, END, 600)
    parts = client.query("SELECT * FROM list_partitions() WHERE view_set_name = 'log_entries'")
    assert len(parts) == 6
    client.retire_partitions("log_entries", "global", BEGIN, HALF)
    left = client.query("SELECT begin_insert_time FROM list_partitions() WHERE view_set_name = 'log_entries'")
    assert len(left) == 3
    assert micromegas.admin.list_incompatible_partitions(client, "log_entries").empty
    retired = client.query(
        "SELECT retire_partition_by_metadata('log_entries', 'global', "
        f"CAST('{HALF.isoformat()}' AS TIMESTAMP), CAST('{(HALF + datetime.timedelta(minutes=10)).isoformat()}' AS TIMESTAMP), "
        "decode('01', 'hex')) AS message"
    )
    assert retired["message"][0].startswith("SUCCESS:")
    four_args = client.query(
        "SELECT retire_partition_by_metadata('log_entries', 'global', "
        f"CAST('{BEGIN.isoformat()}' AS TIMESTAMP), CAST('{HALF.isoformat()}' AS TIMESTAMP)) AS message"
    )
    assert four_args["message"][0].startswith("ERROR:")


def test_perfetto_write_process_trace(client, sample, tmp_path: Path) -> None:
    proc = sample[1][0]
    path = tmp_path / "trace.pftrace"
    micromegas.perfetto.write_process_trace(client, proc.process_id, BEGIN, END, str(path))
    trace = parse_trace(path.read_bytes())
    names = {t["thread_name"] for t in trace.thread_tracks.values()}
    assert names == {"worker-0", "worker-1"}
    assert trace.process_name == proc.exe
    assert trace.async_tracks
    # every track's slices are balanced and in time order; every span has a begin and an end
    lake = sample[0]
    expected = sum(lake.instances[("thread_spans", s)].num_rows for s in proc.thread_streams)
    expected += lake.instances[("async_events", proc.process_id)].num_rows // 2
    assert trace.slices == expected
    assert trace.max_open_depth >= 2


def test_static_token_auth(keyed_server) -> None:
    client = FlightSQLClient(keyed_server.uri, auth_provider=StaticTokenAuthProvider(API_KEY))
    assert client.query("SELECT 1 AS x")["x"][0] == 1
    anonymous = micromegas.connect(keyed_server.uri)
    with pytest.raises(Exception, match="invalid token"):
        anonymous.query("SELECT 1 AS x")


def test_micromegas_query_cli(flight_server, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("micromegas-query")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MICROMEGAS_ANALYTICS_URI": flight_server.uri,
    }
    proc = subprocess.run(
        [
            str(exe),
            "SELECT level, count(*) AS n FROM log_entries GROUP BY level ORDER BY level",
            "--all",
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "level,n"
    assert len(lines) == 7
    proc = subprocess.run(
        [
            str(exe),
            "SELECT count(*) AS n FROM log_entries",
            "--begin",
            "2024-05-01T11:30:00Z",
            "--end",
            "2024-05-01T12:00:00Z",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "n" in proc.stdout


def test_information_schema(client) -> None:
    columns = client.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'measures' ORDER BY ordinal_position"
    )
    assert list(columns["column_name"])[:3] == ["process_id", "stream_id", "block_id"]
    tables = client.query("SHOW TABLES")
    assert {"log_entries", "measures", "processes", "streams", "blocks", "log_stats"} <= set(tables["table_name"])


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "SELECT * FROM perfetto_trace_chunks('any-process-id', 'invalid-span-type', "
            "TIMESTAMP '2024-01-01T00:00:00Z', TIMESTAMP '2024-01-01T01:00:00Z')",
            "span_types must be 'thread', 'async', or 'both', given: invalid-span-type",
        ),
        (
            "SELECT * FROM perfetto_trace_chunks('process-id', 'both')",
            "Third argument to perfetto_trace_chunks must be a timestamp (start time), given none",
        ),
        (
            "SELECT * FROM perfetto_trace_chunks('p', 'both', TIMESTAMP '2024-01-01T00:00:00Z', 'soon')",
            "Fourth argument to perfetto_trace_chunks must be a timestamp (end time), given 'soon'",
        ),
        (
            "SELECT * FROM perfetto_trace_chunks(7, 'both', TIMESTAMP '2024-01-01T00:00:00Z', "
            "TIMESTAMP '2024-01-01T01:00:00Z')",
            "First argument to perfetto_trace_chunks must be a string (the process ID), given 7",
        ),
        (
            "SELECT * FROM perfetto_trace_chunks('non-existent-process-id', 'both', "
            "TIMESTAMP '2024-01-01T00:00:00Z', TIMESTAMP '2024-01-01T01:00:00Z')",
            "Process non-existent-process-id not found",
        ),
        (
            "SELECT * FROM process_spans('p', 'threads')",
            "span_types must be 'thread', 'async', or 'both', given: threads",
        ),
        (
            "SELECT * FROM process_spans('p')",
            "Second argument to process_spans must be a string ('thread', 'async', or 'both'), given none",
        ),
    ],
)
def test_span_table_function_errors_use_micromegas_texts(client, sql: str, message: str) -> None:
    with pytest.raises(pa.lib.ArrowInvalid) as raised:
        client.query(sql)
    assert message in str(raised.value)
