"""The whole path on each object store: ingestion → JIT → daemon → query (local, S3, GCS, Azure).

The cloud stores run on emulators on loopback: moto, fake-gcs-server and Azurite.

An instrumented process sends blocks through the telemetry sink to the HTTP ingestion service;
FlightSQL answers a ``view_instance`` query (JIT: partitions written to the store and read back
by DataFusion through the store registered on its session); a daemon pass materialises the
global views into the same store, and FlightSQL reads them from there. The store's own listing
shows the block payloads and the Parquet partitions where the URI says.
"""

from __future__ import annotations

import asyncio

import micromegas
import pytest

from sirius.lakehouse import MaintenanceDaemon, PassKind, open_object_store
from sirius.tracing import Level, LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info

HOUR_NS = 3_600_000_000_000
MESSAGES = [f"message {i}" for i in range(5)]


@pytest.fixture(params=["local", "s3", "gcs", "azure"])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return (tmp_path / "objects").as_uri()
    return request.getfixturevalue(f"{request.param}_env")


async def _keys(uri: str, prefix: str) -> list[str]:
    store = open_object_store(uri)
    try:
        return await store.list_keys(prefix)
    finally:
        await store.close()


def test_ingestion_jit_daemon_and_query_on_the_store(stack_factory, store_uri: str) -> None:
    stack = stack_factory(object_store_uri=store_uri, daemon=False)
    urls = {e.name: e.url for e in stack.endpoints}
    lake = stack.stack.lakehouse
    assert stack.stack.store.uri == store_uri

    process = current_process_info({"test": "cloud-store"})
    log = TransitWriter(process, "log")
    ticks = process.start_ticks
    for message in MESSAGES:
        ticks += 1_000
        log.log_string(LogMetadata("{}", target="app", level=Level.INFO), message, ticks=ticks)
    sink = TelemetrySink(SinkConfig(url=urls["ingestion"]))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    assert sink.send_block(log.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    blobs = asyncio.run(_keys(store_uri, "blobs/"))
    assert len(blobs) == 1
    assert blobs[0].startswith(f"blobs/{process.process_id}/")

    # JIT: the process's own partition is built on demand, written to the store, read back.
    client = micromegas.connect(urls["flightsql"])
    pid = str(process.process_id)
    jit = client.query(f"SELECT msg FROM view_instance('log_entries', '{pid}') ORDER BY time")
    assert list(jit["msg"]) == MESSAGES
    assert any(k.startswith("views/log_entries/") for k in asyncio.run(_keys(store_uri, "views/")))

    # Daemon: the global view is materialised into the same store and queried from it.
    async def materialise() -> None:
        await lake.pool.execute("UPDATE blocks SET insert_time = insert_time - interval '1 hour'")
        report = await MaintenanceDaemon(lake).run_pass(PassKind.HOUR, lake.now_ns() + HOUR_NS)
        assert not report.failures, report.failures
        assert report.written

    stack.call(materialise())
    # The pass has committed when run_pass returns: the global view answers at once.
    rows = client.query(f"SELECT msg FROM log_entries WHERE process_id = '{pid}' ORDER BY time")
    assert list(rows["msg"]) == MESSAGES
    views = asyncio.run(_keys(store_uri, "views/log_entries/global/"))
    assert views, "the daemon wrote no global partition to the store"
    assert all(k.endswith(".parquet") for k in views)
