"""DDL views: JIT of rows not yet materialised, the dependency graph, and validation by planning.

A real stack (ingestion, PostgreSQL, object store) without a running daemon and a FlightSQL
server over its lakehouse; the unmodified ``micromegas`` client (and ``micromegas-views``)
sends the statements and queries. A view over ``log_entries`` answers a query with a time range
from blocks no daemon pass has seen yet, and keeps exact counts once partitions exist; a view
read by another cannot be dropped; cycles, unknown views, columns and functions, and bad time
columns are refused at ``CREATE`` with a reason, and nothing is stored.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import micromegas
import pyarrow as pa
import pytest
from test_lakehouse_e2e import _send
from test_view_ddl import COUNT, _daemon_pass, _views_cli, ddl

from sirius.lakehouse import MaintenanceDaemon, PassKind

LISTING = "SELECT view_set_name FROM list_view_set_definitions() ORDER BY view_set_name"
PARTITIONS = "SELECT count(*) AS n FROM list_partitions() WHERE view_set_name = '{0}'"

TOTALS_EXTRACT = "SELECT time_bin, level, sum(count) AS count FROM level_counts GROUP BY 1, 2"
TOTALS_MERGE = "SELECT time_bin, level, sum(count) AS count FROM {source} GROUP BY 1, 2"


def totals_ddl(*, extract: str = TOTALS_EXTRACT, group: int = 5000) -> str:
    """``level_totals``: per-level counts of every process, read from ``level_counts``."""
    return (
        f"CREATE MATERIALIZED VIEW level_totals WITH (extract_query = $${extract}$$, "
        f"count_src_query = $${COUNT}$$, merge_partitions_query = $${TOTALS_MERGE}$$, "
        f"update_group = {group}, time_column = 'time_bin')"
    )


def _window() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=10), now + datetime.timedelta(minutes=5)


def _levels(client: Any, process_id: str, *, ranged: bool = True) -> list[dict[str, int]]:
    sql = (
        "SELECT level, CAST(sum(count) AS BIGINT) AS n FROM level_counts "
        f"WHERE process_id = '{process_id}' GROUP BY level ORDER BY level"
    )
    frame = client.query(sql, *_window()) if ranged else client.query(sql)
    return frame.to_dict("records")


def _refused(client: Any, sql: str, reason: str) -> str:
    with pytest.raises(pa.ArrowException) as info:
        client.query(sql)
    assert reason in str(info.value), str(info.value)
    return str(info.value)


def test_fresh_rows_of_a_ddl_view_are_visible_before_any_daemon_pass(lake_flight: Any) -> None:
    stack, uri = lake_flight
    client = micromegas.connect(uri)
    assert list(client.query(ddl())["status"]) == ["created"]
    process_id, _, _ = _send(stack.url)
    lake = stack.stack.lakehouse
    jit_before = lake.stats.jit_updates

    # _send logs 2 errors (level 2) and 4 infos (level 4); no pass has run
    assert _levels(client, process_id) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    assert lake.stats.jit_updates > jit_before
    assert client.query(PARTITIONS.format("level_counts"))["n"][0] == 0, "JIT writes no partition"
    assert client.query(PARTITIONS.format("log_entries"))["n"][0] == 0
    # without a query range there is no window to bound the work: only partitions are served
    assert _levels(client, process_id, ranged=False) == []

    _daemon_pass(stack)
    assert client.query(PARTITIONS.format("level_counts"))["n"][0] >= 1
    assert _levels(client, process_id) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}], "no row counted twice"
    assert _levels(client, process_id, ranged=False) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]

    # a second process after the pass: its rows come from JIT, the first one's from partitions
    second, _, _ = _send(stack.url)
    assert _levels(client, second) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    assert _levels(client, process_id) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    totals = client.query(
        "SELECT level, CAST(sum(count) AS BIGINT) AS n FROM level_counts "
        f"WHERE process_id IN ('{process_id}', '{second}') GROUP BY level ORDER BY level",
        *_window(),
    )
    assert totals.to_dict("records") == [{"level": 2, "n": 4}, {"level": 4, "n": 8}]


def test_a_view_whose_extract_query_ignores_the_insert_range_is_not_jit(lake_flight: Any) -> None:
    stack, uri = lake_flight
    client = micromegas.connect(uri)
    process_id, _, _ = _send(stack.url)
    assert list(client.query(ddl())["status"]) == ["created"]
    assert list(client.query(totals_ddl())["status"]) == ["created"]
    # level_totals reads level_counts without {begin}/{end}: served from its partitions only
    fresh = client.query("SELECT count(*) AS n FROM level_totals", *_window())
    assert fresh["n"][0] == 0
    assert _levels(client, process_id) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    views = {v.name: v for v in stack.stack.lakehouse.views}
    assert (views["level_counts"].jit, views["level_totals"].jit) == (True, False)
    assert views["level_totals"].reads == frozenset({"level_counts", "blocks"})


def test_a_view_read_by_another_cannot_be_dropped_nor_form_a_cycle(lake_flight: Any) -> None:
    stack, uri = lake_flight
    client = micromegas.connect(uri)
    _send(stack.url)
    assert list(client.query(ddl())["status"]) == ["created"]
    _refused(client, totals_ddl(extract=TOTALS_EXTRACT.replace("level_counts", "level_countz")), "unknown view set")
    _refused(client, totals_ddl(group=4000), "must be greater than 4000, the update group of level_counts")
    assert list(client.query(totals_ddl())["status"]) == ["created"]
    _daemon_pass(stack)
    partitions = client.query(PARTITIONS.format("level_counts"))["n"][0]
    assert partitions >= 1

    _refused(
        client,
        "DROP MATERIALIZED VIEW level_counts",
        "cannot drop view set level_counts: view set(s) level_totals read it",
    )
    _refused(client, "DROP MATERIALIZED VIEW IF EXISTS level_counts", "view set(s) level_totals read it")
    cycle = ddl(replace=True).replace(
        "insert_time < '{end}'\n    GROUP BY",
        "insert_time < '{end}' AND level IN (SELECT level FROM level_totals)\n    GROUP BY",
    )
    assert "FROM level_totals" in cycle
    _refused(client, cycle, "would read itself through level_counts -> level_totals -> level_counts")
    _refused(
        client,
        ddl(replace=True).replace("update_group = 4000", "update_group = 6000"),
        "update_group 6000 must be less than 5000, the update group of level_totals, which reads level_counts",
    )
    renamed = ddl(replace=True).replace("level, count(*)", "level AS severity, count(*)")
    renamed = renamed.replace("SELECT time_bin, process_id, level,", "SELECT time_bin, process_id, severity,")
    _refused(client, renamed, "view set level_totals reads level_counts and would no longer plan")
    itself = ddl("selfish").replace("FROM log_entries", "FROM selfish")
    _refused(client, itself, "extract_query reads selfish, the view being defined: a view cannot read itself")

    # nothing changed: both definitions, the partitions, and the view answers
    assert list(client.query(LISTING)["view_set_name"]) == ["level_counts", "level_totals", "log_stats"]
    assert client.query(PARTITIONS.format("level_counts"))["n"][0] == partitions
    assert client.query("SELECT count(*) AS n FROM level_counts")["n"][0] >= 1

    assert list(client.query("DROP MATERIALIZED VIEW level_totals")["status"]) == ["dropped"]
    assert list(client.query("DROP MATERIALIZED VIEW level_counts")["status"]) == ["dropped"]
    assert list(client.query(LISTING)["view_set_name"]) == ["log_stats"]


def test_create_plans_the_queries_and_refuses_what_does_not_plan(lake_flight: Any) -> None:
    _, uri = lake_flight
    client = micromegas.connect(uri)
    unknown_column = _refused(
        client, ddl().replace("process_id, level,", "process_id, levle,"), "extract_query does not plan: unknown column"
    )
    assert "levle" in unknown_column
    _refused(client, ddl().replace("count(*) AS count", "kount(*) AS count"), "unknown function kount()")
    _refused(
        client, ddl().replace("SELECT date_bin", "SELEC date_bin"), "extract_query does not plan: SQL syntax error"
    )
    _refused(client, ddl().replace("FROM log_entries", "FROM log_entrys"), "unknown view set 'log_entrys'")
    _refused(
        client, ddl().replace("sum(nb_objects)", "sum(nb_object)"), "count_src_query does not plan: unknown column"
    )
    _refused(
        client, ddl().replace("sum(count) AS count", "summ(count) AS count"), "merge_partitions_query does not plan"
    )
    _refused(
        client,
        ddl().replace("sum(count) AS count FROM", "sum(count) AS total FROM"),
        "merge_partitions_query must return the columns of extract_query in the same order",
    )
    _refused(client, ddl().replace("'time_bin'", "'bin'"), "time column 'bin' is not a column of extract_query")
    _refused(client, ddl().replace("'time_bin'", "'level'"), "time column 'level' must be a nanosecond timestamp")
    assert list(client.query(LISTING)["view_set_name"]) == ["log_stats"]


def test_micromegas_views_apply_reports_a_definition_that_does_not_plan(lake_flight: Any, tmp_path: Path) -> None:
    _, uri = lake_flight
    home, views = tmp_path / "home", tmp_path / "views"
    home.mkdir()
    views.mkdir()
    (views / "level_counts.sql").write_text(ddl().replace("count(*) AS count", "kount(*) AS count") + ";\n")
    applied = _views_cli(uri, home, "apply", "--dir", str(views), "--auto-approve", "--no-color")
    assert applied.returncode != 0
    assert "unknown function kount()" in applied.stdout + applied.stderr
    assert list(micromegas.connect(uri).query(LISTING)["view_set_name"]) == ["log_stats"]


def test_daemon_materialises_a_view_reading_a_ddl_view_in_order(lake_flight: Any) -> None:
    stack, uri = lake_flight
    client = micromegas.connect(uri)
    process_id, _, _ = _send(stack.url)
    assert list(client.query(ddl())["status"]) == ["created"]
    assert list(client.query(totals_ddl())["status"]) == ["created"]

    async def run() -> Any:
        lake = stack.stack.lakehouse
        return await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    report = stack.call(run())
    assert not report.failures
    totals = client.query("SELECT level, CAST(sum(count) AS BIGINT) AS n FROM level_totals GROUP BY 1 ORDER BY 1")
    assert totals.to_dict("records") == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    assert _levels(client, process_id) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]


def test_jit_looks_back_one_hour_at_most(lake_flight: Any) -> None:
    stack, uri = lake_flight
    client = micromegas.connect(uri)
    assert list(client.query(ddl())["status"]) == ["created"]
    process_id, _, _ = _send(stack.url)
    lake = stack.stack.lakehouse
    real_clock = lake.clock
    # seen from 2 hours later, the blocks lie before the JIT window: nothing is extracted
    lake.clock = lambda: real_clock() + datetime.timedelta(hours=2)
    try:
        blocks = lake.stats.blocks_processed
        begin = real_clock() - datetime.timedelta(minutes=10)
        late = client.query(
            f"SELECT count(*) AS n FROM level_counts WHERE process_id = '{process_id}'",
            begin,
            begin + datetime.timedelta(hours=3),
        )
        assert late["n"][0] == 0
        assert lake.stats.blocks_processed == blocks
    finally:
        lake.clock = real_clock
    assert _levels(client, process_id) == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]


def _view(name: str, extract: str, merge: str, group: int, time_column: str) -> str:
    return (
        f"CREATE MATERIALIZED VIEW {name} WITH (extract_query = $${extract}$$, count_src_query = $${COUNT}$$, "
        f"merge_partitions_query = $${merge}$$, update_group = {group}, time_column = '{time_column}')"
    )


def test_jit_goes_through_a_ddl_view_that_allows_it(lake_flight: Any) -> None:
    stack, uri = lake_flight
    client = micromegas.connect(uri)
    rows = _view(
        "log_rows",
        "SELECT time, insert_time, level FROM log_entries WHERE insert_time >= '{begin}' AND insert_time < '{end}'",
        "SELECT * FROM {source}",
        4000,
        "time",
    )
    per_level = _view(
        "rows_per_level",
        "SELECT date_bin('1 minute', time) AS time_bin, level, count(*) AS count FROM log_rows"
        " WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1, 2",
        "SELECT time_bin, level, sum(count) AS count FROM {source} GROUP BY 1, 2",
        5000,
        "time_bin",
    )
    assert list(client.query(rows)["status"]) == ["created"]
    assert list(client.query(per_level)["status"]) == ["created"]
    views = {v.name: v for v in stack.stack.lakehouse.views}
    assert views["rows_per_level"].jit
    _send(stack.url)
    sql = "SELECT level, CAST(sum(count) AS BIGINT) AS n FROM rows_per_level GROUP BY 1 ORDER BY 1"
    expected = [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    assert client.query(sql, *_window()).to_dict("records") == expected
    _daemon_pass(stack)
    assert client.query(sql, *_window()).to_dict("records") == expected
    assert client.query(sql).to_dict("records") == expected
