"""End to end: what an app sends through the ingestion service, queried over FlightSQL.

The real stack (ingestion HTTP service, PostgreSQL, object store, lakehouse) with the
``LakehouseSessionProvider`` behind the FlightSQL server; the unmodified ``micromegas`` client
reads JIT view instances, global views after a daemon pass, spans, a Perfetto trace, and runs
the partition admin functions.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import micromegas
import micromegas.perfetto
from perfetto_reader import parse_trace

from sirius.lakehouse import MaintenanceDaemon, PassKind
from sirius.tracing import (
    Level,
    LogMetadata,
    MetricMetadata,
    SinkConfig,
    SpanMetadata,
    TelemetrySink,
    TransitWriter,
    current_process_info,
)

UTC = datetime.UTC


def _send(url: str) -> tuple[str, str, list[str]]:
    process = current_process_info({"test": "flight-e2e"})
    now = time.monotonic_ns
    log = TransitWriter(process, "log")
    metrics = TransitWriter(process, "metrics")
    cpu = TransitWriter(process, "cpu", properties={"thread-id": "3", "thread-name": "main"})
    outer, inner = SpanMetadata("handle", target="app"), SpanMetadata("query_db", target="db")
    messages = [f"message {i}" for i in range(6)]
    for i, message in enumerate(messages):
        cpu.begin_thread_span(outer, ticks=now())
        cpu.begin_thread_span(inner, ticks=now())
        log.log_string(
            LogMetadata("{}", target="app", level=Level.ERROR if i % 3 == 0 else Level.INFO), message, ticks=now()
        )
        metrics.metric_float(MetricMetadata("latency", unit="ms", target="app"), float(i), ticks=now())
        cpu.end_thread_span(inner, ticks=now())
        cpu.end_thread_span(outer, ticks=now())
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    for writer in (log, metrics, cpu):
        sink.register_stream(writer.stream_info())
    for writer in (log, metrics, cpu):
        sink.send_block(writer.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return str(process.process_id), str(cpu.stream_info().stream_id), messages


def test_ingested_data_through_the_micromegas_client(lake_flight, tmp_path: Path) -> None:
    stack, uri = lake_flight
    process_id, cpu_stream, messages = _send(stack.url)
    client = micromegas.connect(uri)
    begin = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    end = datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)

    jit = client.query(f"SELECT msg, level FROM view_instance('log_entries', '{process_id}') ORDER BY time")
    assert list(jit["msg"]) == messages
    metrics = client.query_arrow(
        f"SELECT value FROM view_instance('measures', '{process_id}') ORDER BY time", begin, end
    )
    assert metrics["value"].to_pylist() == [float(i) for i in range(6)]

    spans = client.query_spans(begin, end, 100, cpu_stream)
    assert sorted(spans["name"]) == ["handle"] * 6 + ["query_db"] * 6

    async def daemon_pass() -> None:
        lake = stack.stack.lakehouse
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    stack.call(daemon_pass())
    # process_spans and the Perfetto trace find the threads in the `streams` view (daemon-built).
    by_thread = client.query(
        f"SELECT thread_name, count(*) AS n FROM process_spans('{process_id}', 'thread') GROUP BY 1", begin, end
    )
    assert by_thread.to_dict("records") == [{"thread_name": "main", "n": 12}]
    path = tmp_path / "trace.pftrace"
    micromegas.perfetto.write_process_trace(client, process_id, begin, end, str(path), span_types="thread")
    trace = parse_trace(path.read_bytes())
    assert [t["thread_name"] for t in trace.thread_tracks.values()] == ["main"]
    assert trace.slices == 12
    assert trace.max_open_depth == 2

    logs = client.query(f"SELECT msg FROM log_entries WHERE process_id = '{process_id}' ORDER BY time")
    assert list(logs["msg"]) == messages
    errors = client.query(
        f"SELECT count(*) AS n FROM log_entries WHERE process_id = '{process_id}' AND level = 2", begin, end
    )
    assert errors["n"][0] == 2
    assert list(client.find_process(process_id)["process_id"]) == [process_id]
    streams = client.query_streams(begin, end, 10, process_id=process_id, tag_filter="cpu")
    assert list(streams["stream_id"]) == [cpu_stream]
    assert len(client.query_blocks(begin, end, 10, cpu_stream)) == 1
    service = client.query(
        f"SELECT property_get(process_properties, 'test') AS t FROM log_entries WHERE process_id = '{process_id}' LIMIT 1"
    )
    assert service["t"][0] == "flight-e2e"

    before = client.query(f"SELECT count(*) AS n FROM list_partitions() WHERE view_instance_id = '{process_id}'")["n"][
        0
    ]
    assert before > 0
    # JIT partitions cover whole hours of insert time: retire over a range containing them.
    client.retire_partitions(
        "log_entries", process_id, begin - datetime.timedelta(hours=2), end + datetime.timedelta(hours=2)
    )
    after = client.query(
        f"SELECT count(*) AS n FROM list_partitions() WHERE view_instance_id = '{process_id}' AND view_set_name = 'log_entries'"
    )["n"][0]
    assert after == 0
    assert set(client.query("SELECT view_set_name FROM list_view_sets()")["view_set_name"]) >= {
        "log_entries",
        "thread_spans",
    }


def test_lakehouse_view_errors_are_invalid_argument(lake_flight) -> None:
    import grpc
    from test_errors import do_get, statement_ticket

    _, uri = lake_flight
    port = int(uri.rsplit(":", 1)[1])
    code, message = do_get(port, statement_ticket("SELECT * FROM view_instance('no_such_view', 'x')"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "no_such_view" in message
    assert "Traceback" not in message
    code, message = do_get(port, statement_ticket("SELECT * FROM view_instance('thread_spans', 'x')"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Traceback" not in message


def test_retire_incompatible_partitions_with_data(lake_flight) -> None:
    """Partitions written under an old schema hash are retired by the 0.32 client; current ones stay."""
    import micromegas.admin

    stack, uri = lake_flight
    process_id, _, _ = _send(stack.url)
    client = micromegas.connect(uri)
    assert len(client.query(f"SELECT msg FROM view_instance('log_entries', '{process_id}')")) == 6
    assert len(client.query(f"SELECT value FROM view_instance('measures', '{process_id}')")) == 6
    lake = stack.stack.lakehouse

    async def age_log_partitions() -> int:
        # Partitions a previous release wrote: same rows, an older schema version.
        async with lake.pool.acquire() as conn:
            status = await conn.execute(
                "UPDATE lakehouse_partitions SET file_schema_hash = '\\x00'::bytea"
                " WHERE view_set_name = 'log_entries' AND view_instance_id = $1",
                process_id,
            )
        return int(status.split()[-1])

    aged = stack.call(age_log_partitions())
    assert aged > 0
    listed = micromegas.admin.list_incompatible_partitions(client, "log_entries")
    assert len(listed) == aged
    assert {bytes(h) for h in listed["incompatible_schema_hash"]} == {b"\x00"}

    result = micromegas.admin.retire_incompatible_partitions(client, "log_entries")
    assert result[["view_set_name", "view_instance_id", "partitions_retired", "partitions_failed"]].to_dict(
        "records"
    ) == [
        {
            "view_set_name": "log_entries",
            "view_instance_id": process_id,
            "partitions_retired": aged,
            "partitions_failed": 0,
        }
    ]
    assert all(m.startswith("SUCCESS:") for m in result["retirement_messages"][0])
    assert micromegas.admin.list_incompatible_partitions(client, "log_entries").empty
    left = client.query(
        f"SELECT view_set_name, count(*) AS n FROM list_partitions() WHERE view_instance_id = '{process_id}' GROUP BY 1"
    )
    assert "log_entries" not in set(left["view_set_name"])
    assert "measures" in set(left["view_set_name"])  # current schema: kept
    # Nothing else to retire: the client answers an empty frame.
    assert micromegas.admin.retire_incompatible_partitions(client, "log_entries").empty
