"""``x-sirius-engine: sail`` on the FlightSQL server and ``sirius query --engine sail --cluster``.

A real stack (ingestion, PostgreSQL, a local object store) and a Sail ``local-cluster`` with 2
workers on loopback. An app's log entries are sent through the ingestion service; the same
``view_instance`` statement (JIT first) is answered by the server's DataFusion session, by the
server's Sail cluster (header), and by the CLI running on the cluster itself (``--cluster``):
the three answers are equal; so are ``list_view_sets()``'s rows on both engines. Bad engine names, a server without a cluster and ``--cluster``
without ``--engine sail`` and a table function called wrongly are refused with clear messages.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from sirius.distributed import SailCluster
from sirius.flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider, QueryClientError, query_table
from sirius.flight import run_query as cli_query
from sirius.tracing import Level, LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info


def _send(url: str) -> str:
    process = current_process_info({"test": "sail-engine"})
    log = TransitWriter(process, "log")
    for i in range(30):
        level = Level.ERROR if i % 3 == 0 else Level.INFO
        log.log_string(LogMetadata("{}", target=f"app{i % 4}", level=level), f"message {i}", ticks=time.monotonic_ns())
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    sink.send_block(log.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return str(process.process_id)


def _rows(table: Any) -> list[tuple[Any, ...]]:
    return sorted(zip(*table.to_pydict().values(), strict=True))


def test_header_and_cluster_flag_give_datafusions_answer(
    stack_factory: Any, sail: SailCluster, tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_uri = f"file://{tmp_path}/lake"
    stack = stack_factory(object_store_uri=store_uri, daemon=False)
    lake = stack.stack.lakehouse
    with_sail = FlightSqlService(
        LakehouseSessionProvider(lake, sail_cluster=sail.url), config=FlightSqlConfig(port=0), loop=stack.loop
    )
    without = FlightSqlService(
        LakehouseSessionProvider(lake, sail_cluster=None), config=FlightSqlConfig(port=0), loop=stack.loop
    )
    uri = f"grpc://127.0.0.1:{stack.call(with_sail.start())}"
    bare_uri = f"grpc://127.0.0.1:{stack.call(without.start())}"
    try:
        process_id = _send(stack.url)
        sql = (
            "SELECT target, level, count(*) AS n, min(msg) AS first"
            f" FROM view_instance('log_entries', '{process_id}') GROUP BY target, level"
        )
        ours = query_table(sql, uri=uri)
        on_sail = query_table(sql, uri=uri, engine="sail")
        assert ours.num_rows == 8
        assert _rows(on_sail) == _rows(ours)

        monkeypatch.setenv("MICROMEGAS_SQL_CONNECTION_STRING", pg_dsn)
        monkeypatch.setenv("MICROMEGAS_OBJECT_STORE_URI", store_uri)
        out, err = io.StringIO(), io.StringIO()
        assert cli_query(sql, engine="sail", cluster=sail.url, output_format="json", out=out, err=err) == 0, (
            err.getvalue()
        )
        printed = json.loads(out.getvalue())
        assert sorted((r["target"], r["level"], r["n"], r["first"]) for r in printed) == _rows(ours)

        with pytest.raises(QueryClientError, match="invalid x-sirius-engine header 'spark'"):
            query_table("SELECT 1", uri=uri, engine="spark")
        with pytest.raises(QueryClientError, match="no Sail cluster is configured on this server"):
            query_table(sql, uri=bare_uri, engine="sail")
        with pytest.raises(QueryClientError, match="Sail failed the statement"):
            query_table("SELECT no_such_column FROM log_entries", uri=uri, engine="sail")
        # The metadata table functions run on both engines; called wrongly, a clear error, not an internal one.
        view_sets = "SELECT view_set_name, has_view_maker FROM list_view_sets()"
        listed = _rows(query_table(view_sets, uri=uri))
        assert ("log_entries", True) in listed
        assert _rows(query_table(view_sets, uri=uri, engine="sail")) == listed
        with pytest.raises(QueryClientError, match=r"list_partitions takes 0 argument\(s\), got 1") as refused:
            query_table("SELECT * FROM list_partitions('x')", uri=uri, engine="sail")
        assert "internal" not in str(refused.value).lower()
        err = io.StringIO()
        assert cli_query(sql, cluster=sail.url, out=io.StringIO(), err=err) == 2
        assert "--cluster goes with --engine sail" in err.getvalue()
        err = io.StringIO()
        assert cli_query(sql, engine="sail", cluster="grpc://x:1", out=io.StringIO(), err=err) == 2
        assert "expected sc://HOST:PORT" in err.getvalue()
    finally:
        stack.call(with_sail.stop())
        stack.call(without.stop())
