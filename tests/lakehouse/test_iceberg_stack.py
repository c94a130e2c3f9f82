"""``sirius up`` publishes the views as Iceberg tables by default; ``sirius iceberg`` shows them.

A stack on the test's PostgreSQL and a local store receives a sample process through its HTTP
ingestion service (the tracing sink, as an application sends it); its daemon's passes publish
the tables, which pyiceberg reads back with the rows the FlightSQL-facing session serves.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from sirius.admin.cli import main
from sirius.lakehouse import IcebergConfig, SessionFactory, publisher_from_env
from sirius.tracing import (
    Level,
    LogMetadata,
    SinkConfig,
    TelemetrySink,
    TransitWriter,
    current_process_info,
)

pytest.importorskip("pyiceberg")


def _send(url: str) -> int:
    """One process with one log block of 7 entries through the HTTP sink; returns the entries sent."""
    process = current_process_info({"test": "iceberg"}, exe="iceberg-test")
    log = TransitWriter(process, "log")
    for i in range(7):
        log.log_string(
            LogMetadata("{}", target="iceberg.test", level=Level.INFO), f"entry {i}", ticks=time.monotonic_ns()
        )
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    sink.send_block(log.seal())
    assert sink.flush(timeout=30)
    sink.shutdown(timeout=5)
    return 7


def test_sirius_up_publishes_tables_and_sirius_iceberg_lists_them(
    stack_factory: Any, pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    store_uri = (tmp_path / "objects").as_uri()
    stack = stack_factory(object_store_uri=store_uri)
    sent = _send(stack.endpoints[0].url)
    config = IcebergConfig.resolve(pg_dsn, store_uri)

    def published_rows() -> int:
        catalog = SqlCatalog(config.catalog_name, **config.catalog_properties())
        return catalog.load_table(config.table_identifier("log_entries")).scan().to_arrow().num_rows

    assert wait_until("the log entries in the Iceberg table", lambda: published_rows() == sent)

    async def view_rows() -> list[str]:
        session = await SessionFactory(stack.stack.lakehouse).create()
        table = (await session.sql("SELECT msg FROM log_entries")).to_arrow_table()
        return sorted(table.column("msg").to_pylist())

    catalog = SqlCatalog(config.catalog_name, **config.catalog_properties())
    published = catalog.load_table(config.table_identifier("log_entries")).scan().to_arrow()
    assert sorted(published.column("msg").to_pylist()) == stack.call(view_rows())

    code = main(["iceberg", "--sql-connection-string", pg_dsn, "--object-store-uri", store_uri])
    out = capsys.readouterr().out
    assert code == 0
    assert "uri:       postgresql+psycopg2://" in out
    assert f"warehouse: {store_uri}/iceberg" in out
    line = next(line for line in out.splitlines() if line.startswith("sirius.log_entries "))
    snapshots, files, rows = line.split()[1:]
    assert int(snapshots) >= 1
    assert int(files) >= 1
    assert rows == str(sent)
    assert "sirius.processes" in out


def test_sirius_iceberg_before_any_publish(pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_uri = (tmp_path / "objects").as_uri()
    assert main(["iceberg", "--sql-connection-string", pg_dsn, "--object-store-uri", store_uri]) == 0
    assert "no tables yet" in capsys.readouterr().out


def test_sirius_iceberg_refuses_bad_settings(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iceberg", "--sql-connection-string", pg_dsn, "--object-store-uri", "ftp://x"]) == 2
    assert "MICROMEGAS_OBJECT_STORE_URI" in capsys.readouterr().err


def test_publishing_is_on_by_default_and_off_with_sirius_iceberg_0(pg_dsn: str) -> None:
    assert publisher_from_env(pg_dsn, "file:///tmp/lake", {}) is not None
    assert publisher_from_env(pg_dsn, "file:///tmp/lake", {"SIRIUS_ICEBERG": "0"}) is None
    assert publisher_from_env(pg_dsn, "memory://", {}) is None  # nothing outside could read it
    assert publisher_from_env(pg_dsn, "az://container/lake", {}) is None  # pyiceberg has no az:// IO
