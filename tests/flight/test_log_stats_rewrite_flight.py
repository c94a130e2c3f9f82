"""FlightSQL answers counting questions over ``log_entries`` from ``log_stats``, with the same answers.

The real stack (ingestion service, PostgreSQL, local object store) and a FlightSQL server with
the ``LakehouseSessionProvider``; the ``micromegas`` client sends logs, a daemon pass builds the
global ``log_entries`` and ``log_stats`` partitions, and a count by level asked over FlightSQL is
planned over ``log_stats`` (the provider's ``rewrite`` hook changed the plan) and equals the
count of the rows themselves. Under a query range that cuts a minute it is planned as written.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import datafusion
import micromegas
import pytest

from sirius.flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider
from sirius.lakehouse import MaintenanceDaemon, PassKind
from sirius.tracing import Level, LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info

UTC = datetime.UTC


class _Watched(LakehouseSessionProvider):
    """The real provider, counting the statements its ``rewrite`` hook planned anew."""

    rewritten = 0

    async def rewrite(self, ctx: datafusion.SessionContext, df: datafusion.DataFrame) -> datafusion.DataFrame:
        out = await super().rewrite(ctx, df)
        if out is not df:
            type(self).rewritten += 1
        return out


@pytest.fixture
def watched_flight(stack_factory: Any) -> Iterator[tuple[Any, str]]:
    stack = stack_factory(daemon=False)
    service = FlightSqlService(_Watched(stack.stack.lakehouse), config=FlightSqlConfig(port=0), loop=stack.loop)
    port = stack.call(service.start())
    yield stack, f"grpc://127.0.0.1:{port}"
    stack.call(service.stop())


def _send_logs(url: str) -> str:
    process = current_process_info({"test": "log-stats-rewrite"})
    log = TransitWriter(process, "log")
    for i in range(9):
        level = Level.ERROR if i % 3 == 0 else Level.INFO
        log.log_string(LogMetadata("{}", target="app", level=level), f"message {i}", ticks=time.monotonic_ns())
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    sink.send_block(log.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return str(process.process_id)


def test_count_by_level_over_flight_reads_log_stats(watched_flight: tuple[Any, str]) -> None:
    stack, uri = watched_flight
    process_id = _send_logs(stack.url)

    async def daemon_pass() -> None:
        lake = stack.stack.lakehouse
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    stack.call(daemon_pass())
    client = micromegas.connect(uri)
    counting = f"SELECT level, count(*) AS n FROM log_entries WHERE process_id = '{process_id}' GROUP BY level"
    listing = f"SELECT level FROM log_entries WHERE process_id = '{process_id}'"
    _Watched.rewritten = 0
    counts = client.query(counting)
    assert _Watched.rewritten == 1
    rows = client.query(listing)
    assert _Watched.rewritten == 1
    expected = rows["level"].value_counts().to_dict()
    assert expected == {int(Level.ERROR): 3, int(Level.INFO): 6}
    assert dict(zip(counts["level"], counts["n"], strict=True)) == expected

    begin = datetime.datetime.now(UTC) - datetime.timedelta(hours=1, seconds=30)
    end = datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)
    ranged = client.query(counting, begin, end)
    assert _Watched.rewritten == 1  # the range cuts a minute: planned over log_entries
    assert dict(zip(ranged["level"], ranged["n"], strict=True)) == expected
