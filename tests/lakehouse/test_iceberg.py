"""The global views published as Iceberg tables by the daemon, read back by pyiceberg and DuckDB.

Real PostgreSQL (the SQL catalog lives in the test's database); the local store, moto S3 and
fake-gcs-server (``lake_env``'s stores).
Each table is compared with the view read through a query session: the same rows, as many times.
Iceberg v2 has microsecond timestamps, so the view's nanosecond times are compared truncated to
microseconds (what pyiceberg returns); the data files themselves keep nanoseconds, which DuckDB
reading the table's file list shows exactly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sirius.lakehouse import (
    GLOBAL_INSTANCE,
    IcebergConfig,
    IcebergPublisher,
    Lakehouse,
    MaintenanceDaemon,
    PassKind,
    SessionFactory,
    TimeRange,
    create_pool,
    list_partitions,
    retire_partitions,
    table_summaries,
)

from .conftest import T0

pytest.importorskip("pyiceberg")

S = 1_000_000_000
VIEWS = ("blocks", "log_entries", "measures", "processes", "streams", "otel_spans", "histograms", "log_stats")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _normal(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """One representation for both sides: no dictionaries, µs UTC times, signed integers."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _normal(array.cast(kind.value_type))
    if pa.types.is_timestamp(kind):
        return pc.cast(array, pa.timestamp("us", tz="UTC"), safe=False)
    if pa.types.is_large_string(kind):
        return array.cast(pa.string())
    if pa.types.is_unsigned_integer(kind):
        return array.cast(pa.int64())
    if pa.types.is_list(kind) and pa.types.is_unsigned_integer(kind.value_type):
        return array.cast(pa.list_(pa.int64()))
    return array


def rows(table: pa.Table) -> Counter[tuple[Any, ...]]:
    """The rows of ``table`` as a multiset of tuples (columns in name order, values normalised)."""
    names = sorted(table.column_names)
    columns = [_normal(table.column(n)).to_pylist() for n in names]
    return Counter(tuple(repr(col[i]) for col in columns) for i in range(table.num_rows))


async def view_table(lake: Lakehouse, name: str) -> pa.Table:
    session = await SessionFactory(lake).create()
    return (await session.sql(f"SELECT * FROM {name}")).to_arrow_table()


def iceberg_table(config: IcebergConfig, name: str) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(config.catalog_name, **config.catalog_properties()).load_table(config.table_identifier(name))


async def view_files(lake: Lakehouse, config: IcebergConfig, name: str) -> set[str]:
    parts = await list_partitions(lake.pool, name, GLOBAL_INSTANCE)
    return {config.file_uri(p.file_path) for p in parts if p.file_path}


def table_files(config: IcebergConfig, name: str) -> list[str]:
    return [task.file.file_path for task in iceberg_table(config, name).scan().plan_files()]


async def assert_tables_equal_views(lake: Lakehouse, config: IcebergConfig) -> dict[str, int]:
    """Every global view's table lists the view's files once and holds the view's rows."""
    counts = {}
    for name in VIEWS:
        expected = await view_table(lake, name)
        files = table_files(config, name)
        assert len(files) == len(set(files)), f"{name}: a file listed twice"
        assert set(files) == await view_files(lake, config, name), name
        actual = await asyncio.to_thread(lambda n=name: iceberg_table(config, n).scan().to_arrow())
        assert sorted(actual.column_names) == sorted(expected.column_names), name
        assert rows(actual) == rows(expected), name
        counts[name] = actual.num_rows
    return counts


def _config(pg_dsn: str, lake: Lakehouse) -> IcebergConfig:
    return IcebergConfig.resolve(pg_dsn, lake.store.uri)


def test_tables_equal_views_after_daemon_passes(lake_env: Any, pg_dsn: str) -> None:
    async def scenario(h: Any) -> None:
        first = await h.sample(at_second=10.25)
        config = _config(pg_dsn, h.lake)
        daemon = MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config))
        report = await daemon.run_pass(PassKind.SECOND, at(12.5))
        assert report.iceberg is not None
        assert not report.iceberg.failures, report.iceberg
        assert not report.failures, report.failures
        counts = await assert_tables_equal_views(h.lake, config)
        assert counts["log_entries"] == 5
        assert counts["measures"] == 3
        assert counts["processes"] == 1
        # more data, another pass: the tables grow with the views
        h.clock.set(at(20))
        await h.sample(at_second=20.25)
        report = await daemon.run_pass(PassKind.SECOND, at(22.5))
        assert report.iceberg is not None
        assert report.iceberg.tables["log_entries"].added == 1
        counts = await assert_tables_equal_views(h.lake, config)
        assert counts["log_entries"] == 10
        assert counts["processes"] == 2
        # an idle pass commits nothing, even for a publisher that knows nothing yet
        locations = {n: iceberg_table(config, n).metadata_location for n in VIEWS}
        report = await MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config)).run_pass(PassKind.SECOND, at(23.5))
        assert report.iceberg is not None
        assert not report.iceberg.changed
        assert {n: iceberg_table(config, n).metadata_location for n in VIEWS} == locations
        from pyiceberg.table.name_mapping import create_mapping_from_schema

        for name in VIEWS:  # each name mapping names the table's own field ids
            table = iceberg_table(config, name)
            assert table.name_mapping() == create_mapping_from_schema(table.schema()), name
        summaries = {s.identifier: s for s in await asyncio.to_thread(table_summaries, config)}
        assert summaries["sirius.log_entries"].rows == 10
        assert summaries["sirius.log_entries"].data_files == 2
        assert first.process_id in {
            r["process_id"] for r in iceberg_table(config, "processes").scan().to_arrow().to_pylist()
        }

    lake_env(scenario)


def test_duckdb_reads_the_table_files_with_nanoseconds(local_lake_env: Any, pg_dsn: str) -> None:
    duckdb = pytest.importorskip("duckdb")

    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        config = _config(pg_dsn, h.lake)
        await MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config)).run_pass(PassKind.SECOND, at(12.5))
        for name in ("log_entries", "measures", "processes"):
            expected = await view_table(h.lake, name)
            paths = [p.removeprefix("file://") for p in table_files(config, name)]
            assert paths
            con = duckdb.connect()
            got = con.sql(f"SELECT * FROM read_parquet({paths!r})").to_arrow_table()
            times = [c for c in expected.column_names if pa.types.is_timestamp(expected.schema.field(c).type)]
            for column in times:  # nanoseconds intact in the files the table names
                assert sorted(got.column(column).cast(pa.int64()).to_pylist()) == sorted(
                    expected.column(column).cast(pa.int64()).to_pylist()
                )
            # DuckDB over pyiceberg's Arrow scan: the same rows (µs)
            scanned = iceberg_table(config, name).scan().to_duckdb(table_name="t", connection=con)
            assert rows(scanned.sql("SELECT * FROM t").to_arrow_table()) == rows(expected)

    local_lake_env(scenario)


def test_merge_and_retire_keep_tables_equal(lake_env: Any, pg_dsn: str) -> None:
    async def scenario(h: Any) -> None:
        config = _config(pg_dsn, h.lake)
        daemon = MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config))
        for second in (10, 11, 12):
            h.clock.set(at(second))
            await h.sample(at_second=second + 0.25)
            await daemon.run_pass(PassKind.SECOND, at(second + 2.5))
        seconds_files = set(table_files(config, "log_entries"))
        assert len(seconds_files) == 3
        await assert_tables_equal_views(h.lake, config)
        # the minute pass merges the three 1 s partitions into one minute partition
        h.clock.set(at(150))
        report = await daemon.run_pass(PassKind.MINUTE, at(150))
        assert report.iceberg is not None
        assert not report.iceberg.failures, (report.iceberg, report.failures)
        published = report.iceberg.tables["log_entries"]
        assert (published.added, published.removed, published.data_files) == (1, 3, 1)
        assert not seconds_files & set(table_files(config, "log_entries"))
        counts = await assert_tables_equal_views(h.lake, config)
        assert counts["log_entries"] == 15  # no duplicate rows
        # retiring the partitions empties the table on the next pass
        await retire_partitions(h.lake, "log_entries", GLOBAL_INSTANCE, TimeRange(0, 2**62))
        report = await daemon.run_pass(PassKind.SECOND, at(151.5))
        assert report.iceberg is not None
        assert report.iceberg.tables["log_entries"].removed == 1
        assert table_files(config, "log_entries") == []
        assert iceberg_table(config, "log_entries").scan().to_arrow().num_rows == 0
        await assert_tables_equal_views(h.lake, config)

    lake_env(scenario)


def test_a_crash_between_commits_is_repaired_by_the_next_pass(local_lake_env: Any, pg_dsn: str) -> None:
    async def scenario(h: Any) -> None:
        config = _config(pg_dsn, h.lake)
        publisher = IcebergPublisher(config)
        await h.sample(at_second=10.25)
        await MaintenanceDaemon(h.lake, publisher=publisher).run_pass(PassKind.SECOND, at(12.5))
        # a daemon commits partitions, then dies before its Iceberg commit: a daemon without
        # publisher is exactly that (new 1 s partitions, then the minute merge, unpublished)
        h.clock.set(at(20))
        await h.sample(at_second=20.25)
        await MaintenanceDaemon(h.lake).run_pass(PassKind.SECOND, at(22.5))
        h.clock.set(at(150))
        await MaintenanceDaemon(h.lake).run_pass(PassKind.MINUTE, at(150))
        stale = set(table_files(config, "log_entries"))
        assert stale
        assert stale != await view_files(h.lake, config, "log_entries")
        # the next pass of a fresh daemon (a restarted one: nothing cached) reconciles both ways
        report = await MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config)).run_pass(
            PassKind.SECOND, at(151.5)
        )
        assert report.iceberg is not None
        assert report.iceberg.tables["log_entries"].added == 1
        assert report.iceberg.tables["log_entries"].removed == 1
        counts = await assert_tables_equal_views(h.lake, config)
        assert counts["log_entries"] == 10

    local_lake_env(scenario)


def test_racing_publishers_leave_one_consistent_table(local_lake_env: Any, pg_dsn: str) -> None:
    async def scenario(h: Any) -> None:
        config = _config(pg_dsn, h.lake)
        other_pool = await create_pool(pg_dsn, max_size=4)
        try:
            other = Lakehouse(other_pool, h.lake.store, clock=h.clock)
            publishers = [IcebergPublisher(config), IcebergPublisher(config)]
            for round_ in range(4):
                h.clock.set(at(10 + round_))
                await h.sample(at_second=10 + round_ + 0.25)
                await MaintenanceDaemon(h.lake).run_pass(PassKind.SECOND, at(12.5 + round_))
                reports = await asyncio.gather(publishers[0].publish(h.lake), publishers[1].publish(other))
                assert not any(r.failures for r in reports), [r.failures for r in reports]
                # one of them did the work (the other skipped, or found nothing left to do)
                added = [r.tables["log_entries"].added for r in reports if not r.skipped]
                assert sum(added) == 1, reports
                await assert_tables_equal_views(h.lake, config)
            # a publisher that was skipped catches up from the table itself, not from its cache
            h.clock.set(at(150))
            await MaintenanceDaemon(h.lake).run_pass(PassKind.MINUTE, at(150))
            for publisher, lake in ((publishers[1], other), (publishers[0], h.lake)):
                report = await publisher.publish(lake)
                assert not report.skipped
                assert not report.failures
            await assert_tables_equal_views(h.lake, config)
            assert len(table_files(config, "log_entries")) == 1
        finally:
            await other_pool.close()

    local_lake_env(scenario)


def test_bad_configuration_is_refused() -> None:
    from sirius.lakehouse import ConfigurationError

    with pytest.raises(ConfigurationError, match="postgresql"):
        IcebergConfig.resolve("mysql://x/y", "file:///tmp/lake")
    with pytest.raises(ConfigurationError, match="object store"):
        IcebergConfig.resolve("postgresql://postgres@127.0.0.1/x", "memory://")
    with pytest.raises(ConfigurationError, match="SIRIUS_ICEBERG_NAMESPACE"):
        IcebergConfig.resolve("postgresql://postgres@127.0.0.1/x", "file:///tmp/l", {"SIRIUS_ICEBERG_NAMESPACE": "a-b"})
    with pytest.raises(ConfigurationError, match="SIRIUS_ICEBERG"):
        IcebergConfig.enabled_from_env({"SIRIUS_ICEBERG": "maybe"})
    assert IcebergConfig.enabled_from_env({}) is True
    assert IcebergConfig.enabled_from_env({"SIRIUS_ICEBERG": "0"}) is False


LEVEL_COUNTS_DDL = """CREATE MATERIALIZED VIEW level_counts WITH (
  extract_query = $$SELECT date_bin('1 minute', time) AS time_bin, process_id, level, count(*) AS count
    FROM log_entries WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1, 2, 3$$,
  count_src_query = $$SELECT sum(nb_objects) AS count FROM blocks
    WHERE array_has("streams.tags", 'log') AND insert_time >= '{begin}' AND insert_time < '{end}'$$,
  merge_partitions_query = $$SELECT time_bin, process_id, level, sum(count) AS count FROM {source} GROUP BY 1, 2, 3$$,
  update_group = 4000,
  time_column = 'time_bin')"""


def test_otel_views_and_a_ddl_view_are_published_then_a_dropped_view_loses_its_table(
    local_lake_env: Any, pg_dsn: str
) -> None:
    import numpy as np

    from sirius.lakehouse._view_ddl import parse_view_ddl
    from sirius.lakehouse._view_ddl_execution import execute_view_ddl
    from sirius.otel_bridge import METRICS, TRACES

    from .test_otel_views import frontend_spans, sdk_exponential_request, store, trace_request

    async def scenario(h: Any) -> None:
        config = _config(pg_dsn, h.lake)
        await h.sample(at_second=10.25)
        await store(h, TRACES, trace_request("frontend", frontend_spans()), at_second=10.3)
        await store(h, METRICS, sdk_exponential_request(np.arange(1, 501, dtype=np.float64)), at_second=10.4)
        ddl = parse_view_ddl(LEVEL_COUNTS_DDL)
        assert ddl is not None
        await execute_view_ddl(h.lake, ddl, "test")
        daemon = MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config))
        report = await daemon.run_pass(PassKind.SECOND, at(12.5))
        assert report.iceberg is not None
        assert not report.failures, report.failures
        counts = await assert_tables_equal_views(h.lake, config)
        assert counts["otel_spans"] >= 2
        assert counts["histograms"] == 1
        level_counts = await view_table(h.lake, "level_counts")
        assert level_counts.num_rows > 0
        published = iceberg_table(config, "level_counts").scan().to_arrow()
        assert rows(published) == rows(level_counts)
        # redefined with another column: the next pass publishes a table of the new schema
        replaced = LEVEL_COUNTS_DDL.replace("CREATE", "CREATE OR REPLACE", 1)
        replaced = replaced.replace("count(*) AS count\n", "count(*) AS count, max(msg) AS last_msg\n", 1)
        replaced = replaced.replace(
            "sum(count) AS count FROM", "sum(count) AS count, max(last_msg) AS last_msg FROM", 1
        )
        ddl = parse_view_ddl(replaced)
        assert ddl is not None
        await execute_view_ddl(h.lake, ddl, "test")
        report = await daemon.run_pass(PassKind.SECOND, at(12.5))
        assert report.iceberg is not None
        assert report.iceberg.tables["level_counts"].created, report.iceberg
        published = iceberg_table(config, "level_counts").scan().to_arrow()
        assert "last_msg" in published.column_names
        assert rows(published) == rows(await view_table(h.lake, "level_counts"))
        # the view's definition is dropped: its table goes on the next pass
        drop = parse_view_ddl("DROP MATERIALIZED VIEW level_counts")
        assert drop is not None
        await execute_view_ddl(h.lake, drop, "test")
        report = await daemon.run_pass(PassKind.SECOND, at(13.5))
        assert report.iceberg is not None
        assert report.iceberg.dropped == ["sirius.level_counts"]
        summaries = await asyncio.to_thread(table_summaries, config)
        assert "sirius.level_counts" not in {s.identifier for s in summaries}

    local_lake_env(scenario)


def test_expired_snapshots_take_their_metadata_files_with_them(local_lake_env: Any, pg_dsn: str) -> None:
    from dataclasses import replace
    from pathlib import Path

    async def scenario(h: Any) -> None:
        # Expire everything but the current snapshot after every commit.
        config = replace(_config(pg_dsn, h.lake), snapshot_retention_seconds=1e-6, expiry_interval_seconds=1e-6)
        daemon = MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config))
        for second in (10, 11, 12, 13):
            h.clock.set(at(second))
            await h.sample(at_second=second + 0.25)
            await daemon.run_pass(PassKind.SECOND, at(second + 2.5))
        h.clock.set(at(150))
        await daemon.run_pass(PassKind.MINUTE, at(150))  # the merge: an overwrite snapshot
        await assert_tables_equal_views(h.lake, config)
        for name in ("log_entries", "blocks"):
            table = iceberg_table(config, name)
            named = set()
            for snapshot in table.metadata.snapshots:
                named.add(snapshot.manifest_list)
                named.update(m.manifest_path for m in snapshot.manifests(io=table.io))
            metadata_dir = Path(table.location().removeprefix("file://")) / "metadata"
            on_disk = {p.as_uri() for p in metadata_dir.glob("*.avro")}
            assert len(table.metadata.snapshots) == 1, name
            assert on_disk == named, name  # nothing left behind, nothing named is missing

    local_lake_env(scenario)


def test_schema_mapping_of_nested_and_refused_types() -> None:
    from pyiceberg.types import (
        BinaryType,
        FixedType,
        IntegerType,
        ListType,
        LongType,
        StringType,
        StructType,
        TimestamptzType,
    )

    from sirius.lakehouse import ViewError
    from sirius.lakehouse._iceberg_schema import iceberg_schema

    arrow = pa.schema(
        [
            pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
            pa.field("properties", pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))),
            pa.field("jsonb", pa.dictionary(pa.int32(), pa.binary()), nullable=False),
            pa.field("name", pa.dictionary(pa.int32(), pa.string())),
            pa.field("trace_id", pa.binary(16)),
            pa.field("depth", pa.uint32()),
            pa.field("level", pa.int32()),
        ]
    )
    schema = iceberg_schema(arrow)
    types = {f.name: f.field_type for f in schema.fields}
    assert types["time"] == TimestamptzType()
    assert schema.find_field("time").required
    assert isinstance(types["properties"], ListType)
    element = types["properties"].element_type
    assert isinstance(element, StructType)
    assert [(f.name, f.field_type) for f in element.fields] == [("key", StringType()), ("value", StringType())]
    assert (types["jsonb"], types["name"], types["trace_id"]) == (BinaryType(), StringType(), FixedType(16))
    assert (types["depth"], types["level"]) == (LongType(), IntegerType())
    ids = [f.field_id for f in schema.fields] + [f.field_id for f in element.fields]
    assert len(ids) == len(set(ids))  # every field, nested ones too, has its own id
    with pytest.raises(ViewError, match="'m': Arrow type map<string, string>"):
        iceberg_schema(pa.schema([pa.field("m", pa.map_(pa.string(), pa.string()))]))


def test_a_commit_that_loses_the_race_is_retried_on_the_new_table(
    local_lake_env: Any, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two publishers past the lock (as two processes could be without it) commit the same change.

    Both load the table, then meet at a barrier before committing: the catalog accepts one
    commit; the other fails its optimistic check, reloads, finds its work done and commits nothing.
    """
    import threading

    import sirius.lakehouse._iceberg_publisher as publisher_module

    async def scenario(h: Any) -> None:
        config = _config(pg_dsn, h.lake)
        await h.sample(at_second=10.25)
        await MaintenanceDaemon(h.lake).run_pass(PassKind.SECOND, at(12.5))
        first, second = IcebergPublisher(config), IcebergPublisher(config)
        await first.publish(h.lake)  # tables exist, empty of the next pass's files
        h.clock.set(at(20))
        await h.sample(at_second=20.25)
        await MaintenanceDaemon(h.lake).run_pass(PassKind.SECOND, at(22.5))

        barrier = threading.Barrier(2, timeout=30)
        real_commit = publisher_module._commit
        met: set[int] = set()

        def commit_after_both_loaded(table: Any, adds: Any, removes: Any) -> None:
            if threading.get_ident() not in met:  # only the first commit of each thread waits
                met.add(threading.get_ident())
                barrier.wait()
            real_commit(table, adds, removes)

        monkeypatch.setattr(publisher_module, "_commit", commit_after_both_loaded)
        want = {
            config.file_uri(p.file_path): p for p in await list_partitions(h.lake.pool, "log_entries") if p.file_path
        }
        schema = h.lake.views.get("log_entries").schema
        results = await asyncio.gather(
            asyncio.to_thread(first._reconcile, "log_entries", schema, want),
            asyncio.to_thread(second._reconcile, "log_entries", schema, want),
        )
        assert sorted(r.added for r in results) == [0, 1]  # one commit won, the other found it done
        assert all(r.data_files == 2 for r in results)
        files = table_files(config, "log_entries")
        assert sorted(files) == sorted(set(files)) == sorted(want)

    local_lake_env(scenario)


def test_a_table_of_an_older_build_gets_its_properties_back(local_lake_env: Any, pg_dsn: str) -> None:
    async def scenario(h: Any) -> None:
        config = _config(pg_dsn, h.lake)
        await h.sample(at_second=10.25)
        await MaintenanceDaemon(h.lake, publisher=IcebergPublisher(config)).run_pass(PassKind.SECOND, at(12.5))
        table = iceberg_table(config, "log_entries")
        table.transaction().set_properties({"commit.retry.num-retries": "4"}).commit_transaction()
        report = await IcebergPublisher(config).publish(h.lake)
        assert not report.failures
        assert iceberg_table(config, "log_entries").properties["commit.retry.num-retries"] == "0"
        await assert_tables_equal_views(h.lake, config)

    local_lake_env(scenario)
