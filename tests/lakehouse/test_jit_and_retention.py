"""JIT reuse and rebuilds, retention of rows and objects, and the partition admin functions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sirius.lakehouse import (
    DaemonConfig,
    LakehousePartitionAdmin,
    MaintenanceDaemon,
    PassKind,
    QueryRange,
    SessionFactory,
    TimeRange,
    delete_expired_temporary_files,
    list_partitions,
)
from sirius.tracing.transit._writer import SpanMetadata

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
T0_NS = 1_772_445_600_000_000_000
DAY = dt.timedelta(days=1)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


async def scalar(lake: Any, sql: str, query_range: QueryRange | None = None) -> Any:
    session = await SessionFactory(lake).create(query_range)
    return (await session.sql(sql)).to_arrow_table().column(0).to_pylist()[0]


def test_a_second_query_over_the_same_range_does_no_etl(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        sample = await h.sample()
        lake = h.lake
        sql = f"SELECT count(*) FROM view_instance('log_entries', '{sample.process_id}')"
        assert await scalar(lake, sql) == 5
        first = lake.stats.snapshot()
        assert first["partitions_written"] == 1
        assert await scalar(lake, sql) == 5
        second = lake.stats.snapshot()
        assert second["partitions_written"] == first["partitions_written"]
        assert second["blocks_processed"] == first["blocks_processed"]
        assert second["jit_updates"] == first["jit_updates"] + 1

        # a new block of the process in the same hour: the partition is stale and rebuilt
        sample.log.log_static_interop(4, "more", "one more", ticks=h.ticks(6_000_000))
        h.clock.set(at(20))
        await h.seal(sample.log)
        assert await scalar(lake, sql) == 6
        assert lake.stats.partitions_written == first["partitions_written"] + 1
        assert len(await list_partitions(lake.pool, "log_entries", sample.process_id)) == 1

        # an hour later: a second 1 h slice, the first reused
        sample.log.log_static_interop(4, "later", "next hour", ticks=h.ticks(3_700_000_000_000))
        h.clock.set(at(3_700))
        await h.seal(sample.log)
        assert await scalar(lake, sql) == 7
        ranges = [p.insert_range for p in await list_partitions(lake.pool, "log_entries", sample.process_id)]
        assert [(r.begin_ns - T0_NS) // 3_600_000_000_000 for r in ranges] == [0, 1]
        in_range = QueryRange(at(0), at(1))  # only blocks whose events overlap the first second
        assert await scalar(lake, sql, in_range) == 6

    local_lake_env(scenario)


def test_thread_spans_partitions_grow_to_cover_queried_blocks(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        p = await h.process()
        cpu = await h.stream(p, "cpu")
        outer, inner = SpanMetadata("outer"), SpanMetadata("inner")
        cpu.begin_thread_span(outer, ticks=h.ticks(1_000_000_000))  # opens at 1 s, closes at 5 s
        cpu.begin_thread_span(inner, ticks=h.ticks(1_500_000_000))
        cpu.end_thread_span(inner, ticks=h.ticks(1_800_000_000))
        h.clock.set(at(2))
        await h.insert(cpu.finish_block(end_ticks=h.ticks(2_000_000_000), end_time_ns=T0_NS + 2_000_000_000))
        cpu.begin_thread_span(inner, ticks=h.ticks(3_000_000_000))
        cpu.end_thread_span(inner, ticks=h.ticks(3_500_000_000))
        cpu.end_thread_span(outer, ticks=h.ticks(5_000_000_000))
        h.clock.set(at(6))
        await h.insert(cpu.finish_block(end_ticks=h.ticks(6_000_000_000), end_time_ns=T0_NS + 6_000_000_000))
        sql = f"SELECT name, begin, \"end\", depth FROM view_instance('thread_spans', '{cpu.stream_id}') ORDER BY begin"

        async def spans(begin: float, end: float) -> list[tuple[str, int, int, int]]:
            session = await SessionFactory(h.lake).create(QueryRange(at(begin), at(end)))
            table = (await session.sql(sql)).to_arrow_table()
            return [
                (r["name"], r["begin"].value - T0_NS, r["end"].value - T0_NS, r["depth"])
                for r in table.to_pandas().to_dict("records")
            ]

        # first block only: the outer span is still open, closed at the block's end (2 s)
        assert await spans(1.4, 1.9) == [
            ("outer", 1_000_000_000, 2_000_000_000, 0),
            ("inner", 1_500_000_000, 1_800_000_000, 1),
        ]
        # second block only: the outer span's begin is before it (synthetic, at the block's begin)
        assert await spans(3.2, 4) == [
            ("outer", 2_000_000_000, 5_000_000_000, 0),
            ("inner", 3_000_000_000, 3_500_000_000, 1),
        ]
        # one partition per block so far; a query over both widens them into one, whole spans
        assert len(await list_partitions(h.lake.pool, "thread_spans", str(cpu.stream_id))) == 2
        assert await spans(0, 10) == [
            ("outer", 1_000_000_000, 5_000_000_000, 0),
            ("inner", 1_500_000_000, 1_800_000_000, 1),
            ("inner", 3_000_000_000, 3_500_000_000, 1),
        ]
        assert len(await list_partitions(h.lake.pool, "thread_spans", str(cpu.stream_id))) == 1
        written = h.lake.stats.partitions_written
        assert len(await spans(1.4, 1.9)) == 2  # the covering partition is reused, nothing rebuilt
        assert h.lake.stats.partitions_written == written

    local_lake_env(scenario)


def test_retention_deletes_exactly_the_expired_data_and_shrinks_the_store(lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        old = await h.sample(at_second=10.25)
        lake = h.lake
        await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, at(12.5))
        late = 5 * 86_400  # a process five days later
        h.clock.set(at(late))
        new = await h.sample(at_second=late + 10.25, start_time_ns=T0_NS + late * 1_000_000_000)
        await MaintenanceDaemon(lake).run_pass(PassKind.SECOND, at(late + 12.5))
        for sample in (old, new):
            await scalar(lake, f"SELECT count(*) FROM view_instance('log_entries', '{sample.process_id}')")
        recent = QueryRange(at(late), at(late + 60))
        before_rows = await _dump(lake, recent)
        assert before_rows["log_entries"] == 5
        blobs_before = await lake.store.total_size("blobs/")
        views_before = await lake.store.total_size("views/")

        h.clock.set(at(late + 3_600 + 600))
        daemon = MaintenanceDaemon(lake, DaemonConfig(retention_days=3, retention_batch_size=2))
        report = await daemon.run_pass(PassKind.HOUR, h.clock())
        assert report.retention is not None
        assert (report.retention.blocks, report.retention.streams, report.retention.processes) == (3, 3, 1)
        assert report.retention.partitions == 10 + 1  # ten global views (second 10) and the old JIT partition

        pool = lake.pool
        assert {r[0] for r in await pool.fetch("SELECT process_id FROM processes")} == {new.process.process_id}
        assert await pool.fetchval("SELECT count(*) FROM blocks") == 3
        remaining = await lake.store.list_keys("blobs/")
        assert len(remaining) == 3
        assert all(k.startswith(f"blobs/{new.process_id}/") for k in remaining)
        assert all(p.end_insert_ns > T0_NS + 86_400_000_000_000 for p in await list_partitions(pool))
        assert await lake.store.total_size("blobs/") < blobs_before
        assert await _dump(lake, recent) == before_rows

        h.clock.set(at(late + 3 * 3_600))  # replaced files expire an hour after retirement
        assert await delete_expired_temporary_files(lake) == 7 + 1  # the retired partitions' files
        assert await lake.store.total_size("views/") < views_before
        assert await _dump(lake, recent) == before_rows
        assert await pool.fetchval("SELECT count(*) FROM temporary_files") == 0

    lake_env(scenario)


async def _dump(lake: Any, query_range: QueryRange) -> dict[str, Any]:
    session = await SessionFactory(lake).create(query_range)
    result: dict[str, Any] = {}
    for view in ("log_entries", "measures", "blocks", "processes", "streams", "log_stats"):
        table = (await session.sql(f"SELECT * FROM {view}")).to_arrow_table()
        result[view] = table.num_rows
        result[f"{view}_rows"] = sorted(map(repr, table.to_pylist()))
    return result


def test_partition_admin_functions(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        h.clock.set(at(20))  # the ranges below are over (a range past the present is cut there)
        lake = h.lake
        admin = LakehousePartitionAdmin(lake)
        lines: list[str] = []
        begin, end = T0_NS + 10 * 1_000_000_000, T0_NS + 12 * 1_000_000_000
        await admin.materialize_partitions("log_entries", begin, end, 1, lines.append)
        assert lines == [
            "log_entries/global [2026-03-02T10:00:10Z, 2026-03-02T10:00:11Z): created with 5 rows",
            "log_entries/global [2026-03-02T10:00:11Z, 2026-03-02T10:00:12Z): created with 0 rows",
        ]
        table = await admin.list_partitions()
        assert table.num_rows == 2
        assert table.column("source_data_hash").to_pylist() == [(5).to_bytes(8, "little"), bytes(8)]
        assert table.column("file_schema_hash").to_pylist() == [b"\x08", b"\x08"]  # log_entries' schema version
        view_sets = (await admin.list_view_sets()).to_pylist()
        assert {v["view_set_name"]: v["global_instance_available"] for v in view_sets} == {
            "blocks": True, "log_entries": True, "measures": True, "processes": True, "streams": True,
            "log_stats": True, "thread_spans": False, "async_events": False, "otel_spans": True, "histograms": True,
            "measure_stats": True, "span_stats": True,
        }  # fmt: skip

        lines.clear()
        await admin.regenerate_partitions("log_entries", begin, begin + 1_000_000_000, 1, lines.append)
        assert lines == ["log_entries/global [2026-03-02T10:00:10Z, 2026-03-02T10:00:11Z): created with 5 rows"]
        path = next(p.file_path for p in await list_partitions(lake.pool) if p.file_path)
        assert (await admin.retire_partition_by_file(path)).startswith("SUCCESS")
        assert (await admin.retire_partition_by_file(path)).startswith("ERROR")
        assert await scalar(lake, "SELECT count(*) FROM log_entries") == 0

        ok = await admin.retire_partition_by_metadata("log_entries", "global", begin + 1_000_000_000, end, b"\x08")
        assert ok.startswith("SUCCESS")
        missing = await admin.retire_partition_by_metadata("log_entries", "global", begin, end, None)
        assert missing.startswith("ERROR")
        assert await list_partitions(lake.pool) == []

        await admin.materialize_partitions("measures", begin, end, 1, lines.append)
        lines.clear()
        await admin.retire_partitions("measures", "global", begin, end, lines.append)
        assert lines[-1] == "retired 2 partition(s) of measures/global"
        assert await list_partitions(lake.pool, insert_range=TimeRange(begin, end)) == []

    local_lake_env(scenario)
