"""FlightSQL over pooled session contexts: queries after queries on reused contexts answer alike.

The real stack (ingestion service, PostgreSQL, object store, daemon pass) with the
``LakehouseSessionProvider`` behind the FlightSQL server and the unmodified ``micromegas``
client. The server gives each query's context back when its stream ends; a failed query's is
dropped. What one query leaves in its context (a table function's result table, the
id-lookup pushdown setting, an admin's functions) is never seen by the next.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import micromegas
import pyarrow as pa
import pytest

from sirius.flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider
from sirius.lakehouse import MaintenanceDaemon, PassKind
from sirius.tracing import LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info

UTC = datetime.UTC
PUSHDOWN = (
    "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.parquet.pushdown_filters'"
)


@pytest.fixture
def pooled_flight(stack_factory: Any) -> Iterator[tuple[Any, LakehouseSessionProvider, str]]:
    stack = stack_factory(daemon=False)
    provider = LakehouseSessionProvider(stack.stack.lakehouse)
    service = FlightSqlService(provider, config=FlightSqlConfig(port=0), loop=stack.loop)
    port = stack.call(service.start())
    yield stack, provider, f"grpc://127.0.0.1:{port}"
    stack.call(service.stop())


def _send(url: str) -> str:
    process = current_process_info({"test": "pool"})
    log = TransitWriter(process, "log")
    for i in range(5):
        # Ticks after the process start (monotonic ns): events now, inside the queries' ranges
        # (ticks near 0 would date them at the machine's boot, outside the range once it is 1 h up).
        log.log_string(LogMetadata("{}", target="app"), f"message {i}", ticks=process.start_ticks + 1_000 + i)
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    sink.send_block(log.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return str(process.process_id)


def test_queries_on_reused_contexts_see_nothing_of_earlier_queries(pooled_flight: Any) -> None:
    stack, provider, uri = pooled_flight
    process_id = _send(stack.url)

    async def daemon_pass() -> None:
        lake = stack.stack.lakehouse
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    stack.call(daemon_pass())
    client = micromegas.connect(uri)
    begin = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    end = datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)
    count_sql = f"SELECT count(*) AS n FROM log_entries WHERE process_id = '{process_id}'"
    first = client.query(count_sql)["n"][0]
    assert first == 5

    for _ in range(3):
        # A table function's result is registered as a table of the query's context.
        partitions = client.query("SELECT count(*) AS n FROM list_partitions()")["n"][0]
        assert partitions > 0
        tables = set(client.query("SELECT table_name FROM information_schema.tables")["table_name"])
        assert not any(t.startswith("__sirius") for t in tables), tables
        # A lookup by id switches Parquet pushdown on for its own statement only.
        client.query(f"SELECT * FROM log_entries WHERE process_id = '{process_id}' AND block_id = '{process_id}'")
        assert list(client.query(PUSHDOWN)["value"]) == ["false"]
        assert client.query(count_sql, begin, end)["n"][0] == first
        assert client.query(count_sql)["n"][0] == first

    with pytest.raises(pa.ArrowInvalid, match="no_such_column"):
        client.query("SELECT no_such_column FROM log_entries")
    assert client.query(count_sql)["n"][0] == first

    counters = provider.context_counters
    assert counters.reused > 0
    assert counters.discarded >= 1  # the failed query's context
    assert counters.created < counters.reused
