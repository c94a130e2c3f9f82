"""DataLake against a real PostgreSQL: round trips, idempotent inserts, Rust-compatible rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from sirius.lakehouse._datalake import BlockRecord, DataLake, ProcessRecord, StreamRecord
from sirius.lakehouse._exceptions import ConfigurationError, MetadataStoreError
from sirius.lakehouse._migrations import migrate
from sirius.lakehouse._pool import create_pool
from sirius.tracing.transit._udt import Member, UserDefinedType, decode_udts
from sirius.tracing.transit._wire_format import Block, BlockPayload, ProcessInfo, StreamInfo

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
NOW_NS = 1_714_564_800_123_456_000
START_NS = 1_714_560_000_123_456_789  # nanoseconds are truncated to microseconds by PostgreSQL


def with_lake(dsn: str, scenario: Callable[[DataLake], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        pool = await create_pool(dsn, max_size=4)
        try:
            await migrate(pool)
            return await scenario(DataLake(pool, clock=lambda: NOW))
        finally:
            await pool.close()

    return asyncio.run(main())


def make_process(**overrides: Any) -> ProcessInfo:
    fields: dict[str, Any] = {
        "process_id": uuid.uuid4(),
        "exe": "/usr/bin/app",
        "username": "alice",
        "realname": "Alice",
        "computer": "host-1",
        "distro": "Debian 12",
        "cpu_brand": "Xeon",
        "tsc_frequency": 2_000_000_000,
        "start_time_ns": START_NS,
        "start_ticks": 123_456,
        "parent_process_id": None,
        "properties": {"env": "prod", "micromegas.audience": "spoofed", "micromegas.x": "y", "version": "1.2"},
    }
    fields.update(overrides)
    return ProcessInfo(**fields)


LOG_UDT = UserDefinedType(
    name="LogStaticStrEvent",
    size=24,
    members=(Member("desc", "LogMetadata", 0, 8, is_reference=True), Member("time", "i64", 8, 8)),
)
STRING_UDT = UserDefinedType(name="StaticString", size=0, is_reference=True)


def make_stream(process_id: uuid.UUID, **overrides: Any) -> StreamInfo:
    fields: dict[str, Any] = {
        "process_id": process_id,
        "stream_id": uuid.uuid4(),
        "dependencies_metadata": (STRING_UDT,),
        "objects_metadata": (LOG_UDT,),
        "tags": ("log",),
        "properties": {"thread-id": "7", "thread-name": "main"},
    }
    fields.update(overrides)
    return StreamInfo(**fields)


def make_block(stream: StreamInfo, **overrides: Any) -> Block:
    fields: dict[str, Any] = {
        "block_id": uuid.uuid4(),
        "stream_id": stream.stream_id,
        "process_id": stream.process_id,
        "begin_time_ns": START_NS + 1_000,
        "begin_ticks": 10,
        "end_time_ns": START_NS + 2_000_000,
        "end_ticks": 2_000,
        "payload": BlockPayload(b"deps", b"objs"),
        "object_offset": 100,
        "nb_objects": 3,
    }
    fields.update(overrides)
    return Block(**fields)


def test_process_round_trip_drops_reserved_properties(pg_dsn: str) -> None:
    parent = uuid.uuid4()
    info = make_process(parent_process_id=parent)

    async def scenario(lake: DataLake) -> ProcessRecord | None:
        await lake.insert_process(info)
        return await lake.get_process(info.process_id)

    assert with_lake(pg_dsn, scenario) == ProcessRecord(
        process_id=info.process_id,
        exe="/usr/bin/app",
        username="alice",
        realname="Alice",
        computer="host-1",
        distro="Debian 12",
        cpu_brand="Xeon",
        tsc_frequency=2_000_000_000,
        start_time_ns=START_NS - 789,
        start_ticks=123_456,
        insert_time_ns=NOW_NS,
        parent_process_id=parent,
        properties={"env": "prod", "version": "1.2"},
    )


def test_duplicate_process_keeps_the_first(pg_dsn: str) -> None:
    first = make_process(parent_process_id=None, properties={})
    again = make_process(process_id=first.process_id, exe="other")

    async def scenario(lake: DataLake) -> tuple[ProcessRecord | None, int]:
        await lake.insert_process(first)
        await lake.insert_process(again)
        count = await lake.pool.fetchval("SELECT count(*) FROM processes")
        return await lake.get_process(first.process_id), count

    record, count = with_lake(pg_dsn, scenario)
    assert count == 1
    assert record is not None
    assert record.exe == "/usr/bin/app"
    assert record.parent_process_id is None
    assert record.properties == {}


def test_properties_are_stored_as_micromegas_property_array(pg_dsn: str) -> None:
    info = make_process(properties={"a": "1", "b": "2"})

    async def scenario(lake: DataLake) -> list[Any]:
        await lake.insert_process(info)
        return await lake.pool.fetch(
            "SELECT pg_typeof(properties)::text AS t, (p).key, (p).value"
            " FROM processes, unnest(properties) AS p ORDER BY (p).key"
        )

    rows = with_lake(pg_dsn, scenario)
    assert [tuple(r) for r in rows] == [("micromegas_property[]", "a", "1"), ("micromegas_property[]", "b", "2")]


def test_stream_round_trip(pg_dsn: str) -> None:
    process = make_process()
    stream = make_stream(process.process_id)
    otlp = make_stream(process.process_id, dependencies_metadata=(), objects_metadata=(), tags=(), properties={})

    async def scenario(lake: DataLake) -> tuple[StreamRecord | None, StreamRecord | None]:
        await lake.insert_process(process)
        await lake.insert_stream(stream)
        await lake.insert_stream(otlp, format="otlp/v1/logs")
        return await lake.get_stream(stream.stream_id), await lake.get_stream(otlp.stream_id)

    native, other = with_lake(pg_dsn, scenario)
    assert native is not None
    assert native.stream_id == stream.stream_id
    assert native.process_id == process.process_id
    assert native.tags == ("log",)
    assert native.format == "micromegas-transit"
    assert native.properties == {"thread-id": "7", "thread-name": "main"}
    assert decode_udts(native.dependencies_metadata) == (STRING_UDT,)
    assert decode_udts(native.objects_metadata) == (LOG_UDT,)
    assert other == StreamRecord(
        stream_id=otlp.stream_id,
        process_id=process.process_id,
        tags=(),
        format="otlp/v1/logs",
        dependencies_metadata=b"\x80",  # CBOR empty array
        objects_metadata=b"\x80",
        properties={},
    )


def test_duplicate_stream_is_ignored(pg_dsn: str) -> None:
    stream = make_stream(uuid.uuid4())
    again = make_stream(stream.process_id, stream_id=stream.stream_id, tags=("metrics",))

    async def scenario(lake: DataLake) -> tuple[StreamRecord | None, int]:
        await lake.insert_stream(stream)
        await lake.insert_stream(again, format="otlp/v1/metrics")
        return await lake.get_stream(stream.stream_id), await lake.pool.fetchval("SELECT count(*) FROM streams")

    record, count = with_lake(pg_dsn, scenario)
    assert count == 1
    assert record is not None
    assert record.tags == ("log",)
    assert record.format == "micromegas-transit"


def test_block_round_trip_and_duplicates(pg_dsn: str) -> None:
    stream = make_stream(uuid.uuid4())
    block = make_block(stream)

    async def scenario(lake: DataLake) -> tuple[BlockRecord | None, int]:
        await lake.insert_block(block, payload_size=1234)
        await lake.insert_block(make_block(stream, block_id=block.block_id, nb_objects=99), payload_size=1)
        return await lake.get_block(block.block_id), await lake.pool.fetchval("SELECT count(*) FROM blocks")

    record, count = with_lake(pg_dsn, scenario)
    assert count == 1
    assert record == BlockRecord(
        block_id=block.block_id,
        stream_id=stream.stream_id,
        process_id=stream.process_id,
        begin_time_ns=START_NS - 789 + 1_000,
        begin_ticks=10,
        end_time_ns=START_NS - 789 + 2_000_000,
        end_ticks=2_000,
        nb_objects=3,
        object_offset=100,
        payload_size=1234,
        insert_time_ns=NOW_NS,
    )


def test_missing_rows_are_none(pg_dsn: str) -> None:
    async def scenario(lake: DataLake) -> tuple[Any, ...]:
        missing = uuid.uuid4()
        return await lake.get_process(missing), await lake.get_stream(missing), await lake.get_block(missing)

    assert with_lake(pg_dsn, scenario) == (None, None, None)


def test_rows_written_like_rust_are_read_back(pg_dsn: str) -> None:
    # A Rust ingester binds its own values positionally; Sirius must read such rows.
    process_id = uuid.uuid4()

    async def scenario(lake: DataLake) -> ProcessRecord | None:
        await lake.pool.execute(
            "INSERT INTO processes VALUES($1,'exe','u','r','c','d','cpu',0,$2,0,$2,NULL,NULL)", process_id, NOW
        )
        return await lake.get_process(process_id)

    record = with_lake(pg_dsn, scenario)
    assert record is not None
    assert record.properties == {}  # NULL array
    assert record.start_time_ns == NOW_NS
    assert record.tsc_frequency == 0


def test_ping_and_errors(pg_dsn: str) -> None:
    async def scenario() -> None:
        pool = await create_pool(pg_dsn)
        lake = DataLake(pool)
        await lake.ping()
        with pytest.raises(MetadataStoreError):  # not migrated: no such table
            await lake.get_process(uuid.uuid4())
        await pool.close()
        with pytest.raises(MetadataStoreError):
            await lake.ping()

    asyncio.run(scenario())


def test_default_clock_is_utc_now(pg_dsn: str) -> None:
    async def scenario() -> dt.datetime:
        pool = await create_pool(pg_dsn, max_size=2)
        try:
            await migrate(pool)
            lake = DataLake(pool)
            info = make_process()
            before = dt.datetime.now(dt.UTC)
            await lake.insert_process(info)
            inserted = await pool.fetchval("SELECT insert_time FROM processes")
            assert before <= inserted <= dt.datetime.now(dt.UTC)
            return inserted
        finally:
            await pool.close()

    assert asyncio.run(scenario()).tzinfo is not None


def test_create_pool_errors() -> None:
    with pytest.raises(MetadataStoreError):
        asyncio.run(create_pool("postgresql://postgres@127.0.0.1:1/none", connect_timeout=5))
    with pytest.raises(ConfigurationError):
        asyncio.run(create_pool("postgresql://host:notaport/db"))
    with pytest.raises(ConfigurationError):
        asyncio.run(create_pool("postgresql://postgres@127.0.0.1/db", min_size=3, max_size=2))


def test_unknown_database_is_a_metadata_store_error(pg_dsn: str) -> None:
    dsn = pg_dsn.rsplit("/", 1)[0] + "/sirius_no_such_database"
    with pytest.raises(MetadataStoreError) as info:
        asyncio.run(create_pool(dsn))
    assert isinstance(info.value.__cause__, asyncpg.PostgresError)
