"""``bulk_ingest`` (DoPut ``CommandStatementIngest``) with the unmodified ``micromegas`` client.

A real stack (ingestion service, PostgreSQL, object store) and a FlightSQL server over its
lakehouse. Replication is exercised as Micromegas's tooling does it: the rows and payloads of a
process ingested over HTTP are read out, removed from the lake, and uploaded again with
``bulk_ingest`` (processes, streams, blocks, payloads); the lake then holds exactly what it held
and the process's logs query back. Retries add nothing; refused uploads change nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import micromegas
import pyarrow as pa
import pytest
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from pyarrow import flight

from sirius.collector import ApiKeys
from sirius.flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider
from sirius.lakehouse import MaintenanceDaemon, PassKind, block_object_key
from sirius.tracing import Level, LogMetadata, SinkConfig, TelemetrySink, TransitWriter, current_process_info

ADMIN_KEY, VIEWER_KEY = "k-admin-bulk", "k-viewer-bulk"
KEYS = ApiKeys.parse(json.dumps([{"name": "admin", "key": ADMIN_KEY}, {"name": "viewer", "key": VIEWER_KEY}]))

_PROPERTIES = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
_TIME = pa.timestamp("ns", tz="UTC")
_SCHEMAS = {
    "processes": pa.schema(
        [
            ("process_id", pa.string()),
            ("exe", pa.string()),
            ("username", pa.string()),
            ("realname", pa.string()),
            ("computer", pa.string()),
            ("distro", pa.string()),
            ("cpu_brand", pa.string()),
            ("tsc_frequency", pa.int64()),
            ("start_time", _TIME),
            ("start_ticks", pa.int64()),
            ("insert_time", _TIME),
            ("parent_process_id", pa.string()),
            ("properties", _PROPERTIES),
            ("audience", pa.string()),
        ]
    ),
    "streams": pa.schema(
        [
            ("stream_id", pa.string()),
            ("process_id", pa.string()),
            ("dependencies_metadata", pa.binary()),
            ("objects_metadata", pa.binary()),
            ("tags", pa.list_(pa.string())),
            ("properties", _PROPERTIES),
            ("insert_time", _TIME),
            ("format", pa.string()),
            ("audience", pa.string()),
        ]
    ),
    "blocks": pa.schema(
        [
            ("block_id", pa.string()),
            ("stream_id", pa.string()),
            ("process_id", pa.string()),
            ("begin_time", _TIME),
            ("begin_ticks", pa.int64()),
            ("end_time", _TIME),
            ("end_ticks", pa.int64()),
            ("nb_objects", pa.int32()),
            ("object_offset", pa.int64()),
            ("payload_size", pa.int64()),
            ("insert_time", _TIME),
            ("audience", pa.string()),
        ]
    ),
    "payloads": pa.schema(
        [("process_id", pa.string()), ("stream_id", pa.string()), ("block_id", pa.string()), ("payload", pa.binary())]
    ),
}
_ID_COLUMNS = {"processes": "process_id", "streams": "stream_id", "blocks": "block_id"}


class Lake:
    """The stack's lakehouse seen from the test: PostgreSQL rows and stored objects."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.lakehouse = stack.stack.lakehouse

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            async with self.lakehouse.pool.acquire() as conn:
                return [dict(r) for r in await conn.fetch(sql, *args)]

        return self.stack.call(run())

    def execute(self, sql: str, *args: Any) -> None:
        async def run() -> None:
            async with self.lakehouse.pool.acquire() as conn:
                await conn.execute(sql, *args)

        self.stack.call(run())

    def rows(self, table: str, process_id: uuid.UUID) -> list[dict[str, Any]]:
        return self.fetch(f"SELECT * FROM {table} WHERE process_id = $1 ORDER BY {_ID_COLUMNS[table]}", process_id)

    def counts(self) -> dict[str, int]:
        return {t: self.fetch(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in _ID_COLUMNS}

    def objects(self) -> dict[str, bytes]:
        async def run() -> dict[str, bytes]:
            keys = await self.lakehouse.store.list_keys("blobs/")
            return {key: await self.lakehouse.store.get(key) for key in keys}

        return self.stack.call(run())

    def service(self, keys: ApiKeys | None = None, **config: Any) -> str:
        service = FlightSqlService(
            LakehouseSessionProvider(self.lakehouse),
            keys,
            FlightSqlConfig(port=0, **config),
            loop=self.stack.loop,
        )
        port = self.stack.call(service.start())
        self._services.append(service)
        return f"grpc://127.0.0.1:{port}"

    _services: list[FlightSqlService]


@pytest.fixture
def lake(lake_flight: tuple[Any, str]) -> Iterator[tuple[Lake, str]]:
    stack, uri = lake_flight
    view = Lake(stack)
    view._services = []
    yield view, uri
    for service in view._services:
        stack.call(service.stop())


def _send_process(url: str) -> tuple[uuid.UUID, list[str]]:
    """A process with one log stream of two blocks, through the ingestion service."""
    process = current_process_info({"test": "bulk-ingest"})
    log = TransitWriter(process, "log")
    messages = [f"replicated {i}" for i in range(5)]
    sink = TelemetrySink(SinkConfig(url=url))
    sink.register_process(process)
    sink.register_stream(log.stream_info())
    for i, message in enumerate(messages):
        log.log_string(LogMetadata("{}", target="bulk", level=Level.INFO), message, ticks=time.monotonic_ns())
        if i in (2, 4):
            sink.send_block(log.seal())
    assert sink.flush(timeout=60)
    assert sink.shutdown(timeout=5)
    return process.process_id, messages


def _as_arrow(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = _SCHEMAS[table]
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        for name in schema.names:
            value = row.get(name)
            if name == "audience":
                value = "public"
            elif name == "properties":
                value = [{"key": k, "value": v} for k, v in value or ()]
            elif name.endswith("_id") and value is not None:
                value = str(value)
            elif name == "parent_process_id":
                value = ""
            columns[name].append(value)
    return pa.table(columns, schema=schema)


def _payloads(lake: Lake, blocks: list[dict[str, Any]]) -> pa.Table:
    objects = lake.objects()
    rows = [
        {
            "process_id": str(b["process_id"]),
            "stream_id": str(b["stream_id"]),
            "block_id": str(b["block_id"]),
            "payload": objects[block_object_key(b["process_id"], b["stream_id"], b["block_id"])],
        }
        for b in blocks
    ]
    return pa.Table.from_pylist(rows, schema=_SCHEMAS["payloads"])


def _snapshot(lake: Lake, process_id: uuid.UUID) -> dict[str, Any]:
    return {t: lake.rows(t, process_id) for t in _ID_COLUMNS} | {"objects": lake.objects()}


def _extract(lake: Lake, process_id: uuid.UUID) -> dict[str, pa.Table]:
    """The process's rows and payloads as ``bulk_ingest`` uploads (as a replication tool reads them)."""
    uploads = {t: _as_arrow(t, lake.rows(t, process_id)) for t in _ID_COLUMNS}
    uploads["payloads"] = _payloads(lake, lake.rows("blocks", process_id))
    return uploads


def _remove(lake: Lake, process_id: uuid.UUID) -> None:
    for block in lake.rows("blocks", process_id):
        key = block_object_key(block["process_id"], block["stream_id"], block["block_id"])
        lake.stack.call(lake.lakehouse.store.delete(key))
    for table in ("blocks", "streams", "processes"):
        lake.execute(f"DELETE FROM {table} WHERE process_id = $1", process_id)


_ORDER = ("processes", "streams", "payloads", "blocks")


def test_replicated_process_queries_back_exactly_and_retries_add_nothing(lake: tuple[Lake, str]) -> None:
    view, uri = lake
    process_id, messages = _send_process(view.stack.url)
    before = _snapshot(view, process_id)
    assert len(before["blocks"]) == 2
    assert len(before["objects"]) == 2
    uploads = _extract(view, process_id)
    _remove(view, process_id)
    assert view.rows("processes", process_id) == []
    assert view.objects() == {}

    client = micromegas.connect(uri)
    for table in _ORDER:
        result = client.bulk_ingest(table, uploads[table])
        assert result is not None
        assert result.record_count == uploads[table].num_rows, table
    assert _snapshot(view, process_id) == before

    logs = client.query(f"SELECT msg FROM view_instance('log_entries', '{process_id}') ORDER BY time")
    assert list(logs["msg"]) == messages

    async def daemon_pass() -> None:  # the global views (processes, log_entries) are daemon-built
        await MaintenanceDaemon(view.lakehouse).run_pass(PassKind.MINUTE, view.lakehouse.now_ns() + 120 * 10**9)

    view.stack.call(daemon_pass())
    found = client.find_process(str(process_id))
    assert list(found["process_id"]) == [str(process_id)]
    assert list(found["exe"]) == [before["processes"][0]["exe"]]
    logs = client.query(f"SELECT msg FROM log_entries WHERE process_id = '{process_id}' ORDER BY time")
    assert list(logs["msg"]) == messages

    # A retried replication (the same uploads again) adds nothing: ids are unique, objects create-only.
    counts = view.counts()
    for table in _ORDER:
        assert client.bulk_ingest(table, uploads[table]).record_count == uploads[table].num_rows
    assert view.counts() == counts
    assert _snapshot(view, process_id) == before


def _error(call: Any) -> BaseException:
    with pytest.raises(pa.ArrowException) as caught:
        call()
    return caught.value


def _one_process(process_id: uuid.UUID, /, **overrides: Any) -> pa.Table:
    row: dict[str, Any] = {
        "process_id": str(process_id),
        "exe": "/bin/replica",
        "username": "u",
        "realname": "r",
        "computer": "c",
        "distro": "d",
        "cpu_brand": "cpu",
        "tsc_frequency": 1_000_000_000,
        "start_time": 1_700_000_000_000_000_000,
        "start_ticks": 5,
        "insert_time": 1_700_000_000_000_000_000,
        "parent_process_id": "",
        "properties": [{"key": "team", "value": "core"}],
        "audience": "public",
    } | overrides
    return pa.Table.from_pylist([row], schema=_SCHEMAS["processes"])


def test_refused_uploads_change_nothing(lake: tuple[Lake, str]) -> None:
    view, uri = lake
    client = micromegas.connect(uri)
    good = uuid.uuid4()
    before = (view.counts(), view.objects())

    unknown = _error(lambda: client.bulk_ingest("log_entries", _one_process(good)))
    assert isinstance(unknown, pa.ArrowInvalid)
    assert "table 'log_entries' is not supported" in str(unknown)
    assert "processes, streams, blocks, payloads" in str(unknown)

    missing = _one_process(good).drop_columns(["exe"])
    mismatch = _error(lambda: client.bulk_ingest("processes", missing))
    assert isinstance(mismatch, pa.ArrowInvalid)
    assert "missing column 'exe'" in str(mismatch)
    wrong_type = _one_process(good).set_column(7, "tsc_frequency", pa.array(["fast"]))
    assert "column 'tsc_frequency' is string, expected an integer" in str(
        _error(lambda: client.bulk_ingest("processes", wrong_type))
    )

    # A bad row in a later batch: the earlier batch is not kept either (one transaction).
    two_batches = pa.Table.from_batches(
        [
            *_one_process(good).to_batches(),
            *_one_process(uuid.uuid4(), process_id="not-a-uuid").to_batches(),
        ]
    )
    assert two_batches.num_rows == 2
    bad_row = _error(lambda: client.bulk_ingest("processes", two_batches))
    assert isinstance(bad_row, pa.ArrowInvalid)
    assert "row 1: process_id 'not-a-uuid' is not a UUID" in str(bad_row)
    too_long = _one_process(good, exe="x" * 300)
    assert "processes" in str(_error(lambda: client.bulk_ingest("processes", too_long)))

    bad_payload = pa.Table.from_pylist(
        [
            {"process_id": str(good), "stream_id": str(good), "block_id": str(good), "payload": b"ok"},
            {"process_id": str(good), "stream_id": "nope", "block_id": str(good), "payload": b"x"},
        ],
        schema=_SCHEMAS["payloads"],
    )
    assert "row 1: stream_id 'nope' is not a UUID" in str(_error(lambda: client.bulk_ingest("payloads", bad_payload)))
    assert (view.counts(), view.objects()) == before

    # The same server still ingests a good upload.
    assert client.bulk_ingest("processes", _one_process(good)).record_count == 1
    row = view.fetch("SELECT exe, properties FROM processes WHERE process_id = $1", good)
    assert row == [{"exe": "/bin/replica", "properties": [("team", "core")]}]


def test_non_admin_callers_are_refused(lake: tuple[Lake, str]) -> None:
    view, _ = lake
    uri = view.service(KEYS, admin_key_names=frozenset({"admin"}))
    before = view.counts()
    process_id = uuid.uuid4()
    viewer = FlightSQLClient(uri, auth_provider=StaticTokenAuthProvider(VIEWER_KEY))
    refused = _error(lambda: viewer.bulk_ingest("processes", _one_process(process_id)))
    assert isinstance(refused, flight.FlightUnauthorizedError)
    assert "bulk_ingest requires admin privileges" in str(refused)
    assert view.counts() == before

    admin = FlightSQLClient(uri, auth_provider=StaticTokenAuthProvider(ADMIN_KEY))
    assert admin.bulk_ingest("processes", _one_process(process_id)).record_count == 1
    assert view.counts()["processes"] == before["processes"] + 1


def test_oversize_uploads_are_refused(lake: tuple[Lake, str]) -> None:
    view, _ = lake
    uri = view.service(max_ingest_bytes=64 * 1024)
    client = micromegas.connect(uri)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    row = {"process_id": ids[0], "stream_id": ids[1], "block_id": ids[2]}
    big = pa.Table.from_pylist([row | {"payload": bytes(200 * 1024)}], schema=_SCHEMAS["payloads"])
    before = view.objects()
    refused = _error(lambda: client.bulk_ingest("payloads", big))
    assert isinstance(refused, pa.ArrowInvalid)
    assert "exceeds the limit of 65536 bytes" in str(refused)
    assert view.objects() == before

    small = pa.Table.from_pylist([row | {"payload": b"small"}], schema=_SCHEMAS["payloads"])
    assert client.bulk_ingest("payloads", small).record_count == 1
    key = block_object_key(uuid.UUID(ids[0]), uuid.UUID(ids[1]), uuid.UUID(ids[2]))
    assert view.objects()[key] == b"small"


def test_processes_audience_column_becomes_the_audience_property(lake: tuple[Lake, str]) -> None:
    view, uri = lake
    client = micromegas.connect(uri)
    stamped, public = uuid.uuid4(), uuid.uuid4()
    table = pa.concat_tables([_one_process(stamped, audience="team-a"), _one_process(public)])
    assert client.bulk_ingest("processes", table).record_count == 2
    props = {
        r["process_id"]: r["properties"]
        for r in view.fetch(
            "SELECT process_id, properties FROM processes WHERE process_id = ANY($1)", [stamped, public]
        )
    }
    assert props == {
        stamped: [("team", "core"), ("micromegas.audience", "team-a")],
        public: [("team", "core")],
    }


def test_a_server_without_a_lakehouse_does_not_serve_it(flight_server: Any) -> None:
    client = micromegas.connect(flight_server.uri)
    refused = _error(lambda: client.bulk_ingest("processes", _one_process(uuid.uuid4())))
    assert isinstance(refused, pa.ArrowNotImplementedError)
    assert "bulk ingestion is not supported by this server (no lakehouse)" in str(refused)
