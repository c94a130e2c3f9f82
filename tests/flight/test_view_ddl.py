"""Views as code: ``CREATE``/``DROP MATERIALIZED VIEW`` and ``list_view_set_definitions()``.

A real stack (ingestion, PostgreSQL, object store) with a FlightSQL server over its lakehouse;
the unmodified ``micromegas`` client creates a view over ``log_entries``, a daemon pass
materialises it in its update group, the client queries and lists it, and drops it. Malformed
DDL and bad definitions are refused with a reason and change nothing.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import micromegas
import pyarrow as pa
import pytest
from micromegas.auth import StaticTokenAuthProvider
from micromegas.flightsql.client import FlightSQLClient
from test_lakehouse_e2e import _send

from sirius.collector import ApiKeys
from sirius.flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider
from sirius.lakehouse import Lakehouse, LakehouseSettings, MaintenanceDaemon, PassKind, TimeRange

ADMIN_KEY, VIEWER_KEY = "k-admin-ddl", "k-viewer-ddl"
KEYS = ApiKeys.parse(json.dumps([{"name": "admin", "key": ADMIN_KEY}, {"name": "viewer", "key": VIEWER_KEY}]))

EXTRACT = """
    SELECT date_bin('1 minute', time) AS time_bin, process_id, level, count(*) AS count
    FROM log_entries
    WHERE insert_time >= '{begin}' AND insert_time < '{end}'
    GROUP BY 1, 2, 3"""
COUNT = """
    SELECT sum(nb_objects) AS count FROM blocks
    WHERE array_has("streams.tags", 'log') AND insert_time >= '{begin}' AND insert_time < '{end}'"""
MERGE = "SELECT time_bin, process_id, level, sum(count) AS count FROM {source} GROUP BY 1, 2, 3"


def ddl(name: str = "level_counts", *, replace: bool = False, extra: str = "") -> str:
    head = "CREATE OR REPLACE" if replace else "CREATE"
    return (
        f"-- counts per level\n{head} MATERIALIZED VIEW {name} WITH (\n"
        f"  extract_query = $${EXTRACT}$$,\n  count_src_query = $${COUNT}$$,\n"
        f"  merge_partitions_query = $${MERGE}$$,\n  update_group = 4000,\n  time_column = 'time_bin'{extra})"
    )


def _daemon_pass(stack: Any) -> None:
    async def run() -> None:
        lake = stack.stack.lakehouse
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    stack.call(run())


def _refused(client: Any, sql: str, reason: str) -> None:
    with pytest.raises(pa.ArrowException) as info:
        client.query(sql)
    assert reason in str(info.value)


def test_create_materialise_query_list_drop(lake_flight: Any) -> None:
    stack, uri = lake_flight
    process_id, _, _ = _send(stack.url)
    client = micromegas.connect(uri)
    listing = "SELECT view_set_name, definition_sql, update_group, updated_by FROM list_view_set_definitions()"
    # log_stats is seeded by the v10 migration, as in Micromegas 0.32 (Sirius builds it itself)
    assert list(client.query(listing)["view_set_name"]) == ["log_stats"]

    created = client.query(ddl())
    assert created.to_dict("records") == [{"view_set_name": "level_counts", "status": "created"}]
    rows = client.query(listing).to_dict("records")
    assert [(r["view_set_name"], r["update_group"]) for r in rows] == [("log_stats", 3000), ("level_counts", 4000)]
    assert rows[1]["definition_sql"] == ddl().strip()

    _daemon_pass(stack)
    counts = client.query(
        f"SELECT level, sum(count) AS n FROM level_counts WHERE process_id = '{process_id}' GROUP BY level ORDER BY level"
    )
    assert counts.to_dict("records") == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
    parts = client.query("SELECT count(*) AS n FROM list_partitions() WHERE view_set_name = 'level_counts'")
    assert parts["n"][0] >= 1
    names = client.query("SELECT view_set_name FROM list_view_sets()")["view_set_name"]
    assert "level_counts" in set(names)

    replaced = client.query(ddl(replace=True, extra=",\n  source_partition_delta = '1 hour'"))
    assert list(replaced["status"]) == ["replaced"]

    dropped = client.query("DROP MATERIALIZED VIEW level_counts;")
    assert dropped.to_dict("records") == [{"view_set_name": "level_counts", "status": "dropped"}]
    assert list(client.query(listing)["view_set_name"]) == ["log_stats"]
    with pytest.raises(pa.ArrowException, match="level_counts' not found"):
        client.query("SELECT * FROM level_counts")
    remaining = client.query("SELECT count(*) AS n FROM list_partitions() WHERE view_set_name = 'level_counts'")
    assert remaining["n"][0] == 0
    gone = client.query("DROP MATERIALIZED VIEW IF EXISTS level_counts")
    assert gone.to_dict("records") == [{"view_set_name": "level_counts", "status": "not_found"}]


def test_bad_ddl_is_refused_and_changes_nothing(lake_flight: Any) -> None:
    _, uri = lake_flight
    client = micromegas.connect(uri)
    assert list(client.query(ddl())["status"]) == ["created"]
    _refused(client, ddl(), "already exists; use CREATE OR REPLACE")
    _refused(client, "DROP MATERIALIZED VIEW nothing_here", "no view set 'nothing_here' is defined")
    _refused(client, "CREATE MATERIALIZED VIEW v WITH (extract_query = 'SELECT 1'", "expected , or )")
    _refused(client, "CREATE MATERIALIZED VIEW v AS SELECT 1", "not AS")
    _refused(client, ddl("other", extra=", colour = 'blue'"), "unknown option 'colour'")
    _refused(client, ddl("log_stats", replace=True), "built-in view set")
    _refused(client, ddl("Bad-Name"), "expected WITH at '-Name")
    _refused(client, ddl("Bad"), "must match ^[a-z_][a-z0-9_]")
    _refused(client, ddl("__x"), "must not start with '__'")
    _refused(client, "DROP MATERIALIZED VIEW a; DROP MATERIALIZED VIEW b", "one statement per query")
    _refused(client, ddl("other", extra=", time_column = 'x'"), "option time_column is given twice")
    _refused(client, ddl("other").replace("'time_bin'", "'process_id'"), "must be a nanosecond timestamp")
    _refused(client, ddl("other").replace("FROM log_entries", "FROM no_such_table"), "extract_query does not plan")
    _refused(
        client, ddl("other").replace(COUNT, "SELECT sum(nb_objects) AS count FROM blocks"), "'{begin}' and '{end}'"
    )
    _refused(client, ddl("other").replace("{source}", "level_counts"), "FROM {source}")
    _refused(client, ddl("other").replace("sum(nb_objects) AS count", "1 AS n"), "one integer column named count")
    _refused(
        client,
        ddl("other").replace("update_group = 4000", "update_group = 2000"),
        "update_group 2000 must be greater than 2000, the update group of log_entries",
    )
    _refused(client, ddl("other").replace("count(*) AS count", "count(*) AS count, now() AS at"), "may not call now()")
    _refused(
        client, ddl("other").replace("FROM log_entries", "FROM view_instance('log_entries', 'x')"), "view_instance()"
    )
    _refused(client, "DROP MATERIALIZED VIEW log_stats", "built-in view set")
    rows = client.query("SELECT view_set_name FROM list_view_set_definitions()")
    assert list(rows["view_set_name"]) == ["log_stats", "level_counts"]


def test_view_ddl_is_admin_only(lake_flight: Any) -> None:
    stack, _ = lake_flight
    service = FlightSqlService(
        LakehouseSessionProvider(stack.stack.lakehouse),
        KEYS,
        FlightSqlConfig(port=0, admin_key_names=frozenset({"admin"})),
        loop=stack.loop,
    )
    port = stack.call(service.start())
    try:
        uri = f"grpc://127.0.0.1:{port}"
        viewer = FlightSQLClient(uri, auth_provider=StaticTokenAuthProvider(VIEWER_KEY))
        admin = FlightSQLClient(uri, auth_provider=StaticTokenAuthProvider(ADMIN_KEY))
        _refused(viewer, ddl(), "permission denied: CREATE MATERIALIZED VIEW is reserved to lakehouse administrators")
        _refused(viewer, "SELECT * FROM list_view_set_definitions()", "list_view_set_definitions")
        assert list(admin.query(ddl())["status"]) == ["created"]
        _refused(viewer, "DROP MATERIALIZED VIEW level_counts", "permission denied: DROP MATERIALIZED VIEW")
        rows = admin.query("SELECT view_set_name, updated_by FROM list_view_set_definitions()")
        assert rows.to_dict("records")[-1] == {"view_set_name": "level_counts", "updated_by": "admin"}
    finally:
        stack.call(service.stop())


def _views_cli(uri: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "MICROMEGAS_ANALYTICS_URI": uri, "NO_COLOR": "1"}
    env.pop("MICROMEGAS_PROFILE", None)
    cli = Path(sys.executable).parent / "micromegas-views"
    return subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_micromegas_views_cli_plans_applies_lists_and_prunes(lake_flight: Any, tmp_path: Path) -> None:
    _, uri = lake_flight
    home, views = tmp_path / "home", tmp_path / "views"
    home.mkdir()
    views.mkdir()
    (views / "level_counts.sql").write_text(ddl() + ";\n")

    plan = _views_cli(uri, home, "plan", "--dir", str(views), "--no-color")
    assert plan.returncode == 0, plan.stderr
    assert "+ create: level_counts" in plan.stdout

    applied = _views_cli(uri, home, "apply", "--dir", str(views), "--auto-approve", "--no-color")
    assert applied.returncode == 0, applied.stderr
    assert "level_counts: created" in applied.stdout
    assert "Apply complete! 1 created, 0 updated, 0 dropped." in applied.stdout

    listed = _views_cli(uri, home, "list", "--dir", str(views), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["status"], r["update_group"]) for r in rows] == [
        ("level_counts", "unchanged", 4000),
        ("log_stats", "server-only", 3000),
    ]
    pulled = _views_cli(uri, home, "pull", "--dir", str(views), "log_stats")
    assert pulled.returncode == 0, pulled.stderr
    assert (views / "log_stats.sql").read_text().startswith("CREATE MATERIALIZED VIEW log_stats WITH (")

    shown = _views_cli(uri, home, "show", "level_counts")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == ddl().strip()

    # a new file replaces the old one; --prune drops the view set no file defines any more
    (views / "level_counts.sql").unlink()
    (views / "level_totals.sql").write_text(ddl("level_totals"))
    pruned = _views_cli(uri, home, "apply", "--dir", str(views), "--auto-approve", "--prune", "--no-color")
    assert pruned.returncode == 0, pruned.stderr
    assert "level_totals: created" in pruned.stdout
    assert "level_counts: dropped" in pruned.stdout
    final = _views_cli(uri, home, "list", "--dir", str(views), "--format", "json")
    assert [(r["name"], r["status"]) for r in json.loads(final.stdout)] == [
        ("level_totals", "unchanged"),
        ("log_stats", "unchanged"),
    ]


def test_other_services_reload_definitions_after_their_refresh_period(
    lake_flight: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, uri = lake_flight
    home = stack.stack.lakehouse

    def other(seconds: float) -> Lakehouse:
        return Lakehouse(home.pool, home.store, settings=LakehouseSettings(view_definition_refresh_seconds=seconds))

    async def names(lake: Lakehouse) -> set[str]:
        await lake.refresh_view_definitions()
        return {v.name for v in lake.views.global_views()}

    slow, eager = other(3600.0), other(0.0)
    assert "level_counts" not in stack.call(names(slow))
    assert list(micromegas.connect(uri).query(ddl())["status"]) == ["created"]
    assert "level_counts" not in stack.call(names(slow))  # loaded less than its period ago
    assert "level_counts" in stack.call(names(eager))
    loaded = eager.views
    stack.call(names(eager))
    assert eager.views is loaded, "unchanged definitions are not planned again"
    assert list(micromegas.connect(uri).query(ddl(replace=True))["status"]) == ["replaced"]
    stack.call(names(eager))
    assert eager.views is not loaded, "a replaced definition is loaded again"
    assert stack.call(eager.views.get("level_counts").source_count(eager, "global", TimeRange(0, 2**62))) == 0

    monkeypatch.setenv("MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS", "5")
    assert LakehouseSettings.from_env().view_definition_refresh_seconds == 5.0
    monkeypatch.setenv("MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS", "soon")
    with pytest.raises(ValueError, match="MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS must be a non-negative"):
        LakehouseSettings.from_env()
    monkeypatch.delenv("MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS")
    assert LakehouseSettings.from_env().view_definition_refresh_seconds == 60.0


def test_a_view_failing_in_the_daemon_is_reported_and_skipped(lake_flight: Any) -> None:
    stack, uri = lake_flight
    process_id, _, _ = _send(stack.url)
    client = micromegas.connect(uri)
    failing_count = COUNT.replace("sum(nb_objects)", 'CAST(min("processes.exe") AS BIGINT)')
    assert list(client.query(ddl("broken").replace(COUNT, failing_count))["status"]) == ["created"]

    async def run() -> Any:
        lake = stack.stack.lakehouse
        return await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)

    report = stack.call(run())
    assert list(report.failures) == ["broken"]
    assert "broken: count_src_query failed" in report.failures["broken"]
    logs = client.query(f"SELECT count(*) AS n FROM log_entries WHERE process_id = '{process_id}'")
    assert logs["n"][0] == 6


def test_materialize_partitions_backfills_a_new_view(lake_flight: Any) -> None:
    stack, uri = lake_flight
    process_id, _, _ = _send(stack.url)
    _daemon_pass(stack)  # log_entries holds the data before the view exists
    client = micromegas.connect(uri)
    assert list(client.query(ddl())["status"]) == ["created"]
    empty = client.query(f"SELECT count(*) AS n FROM level_counts WHERE process_id = '{process_id}'")
    assert empty["n"][0] == 0
    inserted = client.query(f"SELECT max(insert_time) AS t FROM blocks WHERE process_id = '{process_id}'")["t"][0]
    # materialize_partitions stops at the present (whole seconds): let the clock pass the inserts
    end = inserted.to_pydatetime().replace(microsecond=0) + datetime.timedelta(seconds=1)
    deadline = time.monotonic() + 10
    while datetime.datetime.now(datetime.UTC) <= end and time.monotonic() < deadline:
        time.sleep(0.05)
    begin = end.replace(minute=0, second=0) - datetime.timedelta(hours=1)
    log = client.query(
        f"SELECT msg FROM materialize_partitions('level_counts', '{begin.isoformat()}', '{end.isoformat()}', 3600)"
    )
    assert any("level_counts" in m for m in log["msg"]), list(log["msg"])
    counts = client.query(
        f"SELECT level, sum(count) AS n FROM level_counts WHERE process_id = '{process_id}' GROUP BY level ORDER BY level"
    )
    assert counts.to_dict("records") == [{"level": 2, "n": 2}, {"level": 4, "n": 4}]
