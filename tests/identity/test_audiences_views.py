"""Audiences on the read side: two teams' data never mix in any view, function, gateway or Explore screen.

One stack, one lake: ``team-a`` and ``team-b`` each write through the native sink and an OTel SDK
exporter with their own minted ingestion key; a daemon pass materialises the global views (whose
partitions hold both teams' rows) and two DDL views (one per process, one aggregated across
processes). Then every view set of the lakehouse's registry (so a new view is covered without
editing this test) and ``view_instance`` of every process and stream are queried with the real
``micromegas`` client as each team's reader and as an admin: each reader sees exactly the rows of
its own processes (the admin's rows of those processes), the admin sees both teams.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _audience_lake import AUDIENCES, AudienceLake, Principal, build, daemon_pass, explore_get, gateway_query

from sirius.lakehouse import InstanceKind

# A DDL view per process (filtered by its process_id) and one aggregated across processes (which a
# restricted reader cannot be shown: its rows belong to no single process).
EXTRACT = """
    SELECT date_bin('1 minute', time) AS time_bin, process_id, level, count(*) AS count
    FROM log_entries WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1, 2, 3"""
TOTALS = """
    SELECT date_bin('1 minute', time) AS time_bin, level, count(*) AS count
    FROM log_entries WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1, 2"""
COUNT = """
    SELECT sum(nb_objects) AS count FROM blocks
    WHERE array_has("streams.tags", 'log') AND insert_time >= '{begin}' AND insert_time < '{end}'"""


def _ddl(name: str, extract: str, keys: str) -> str:
    merge = f"SELECT time_bin, {keys}, sum(count) AS count FROM {{source}} GROUP BY {keys}, time_bin"
    return (
        f"CREATE MATERIALIZED VIEW {name} WITH (extract_query = $${extract}$$, count_src_query = $${COUNT}$$,"
        f" merge_partitions_query = $${merge}$$, update_group = 4000, time_column = 'time_bin')"
    )


# Views every audience wrote rows to: each must show both teams to the admin.
POPULATED = {"log_entries", "measures", "processes", "streams", "blocks", "log_stats", "otel_spans", "level_counts"}


@pytest.fixture
def lake(stack_factory: Any, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> AudienceLake:
    built = build(stack_factory, pg_dsn, capsys)
    admin = built.readers[-1]
    built.query(admin, _ddl("level_counts", EXTRACT, "process_id, level"))
    built.query(admin, _ddl("level_totals", TOTALS, "level"))
    daemon_pass(built.stack)
    return built


def _key_column(columns: list[str]) -> str | None:
    return next((c for c in ("process_id", "stream_id") if c in columns), None)


def _counts(lake: AudienceLake, principal: Principal, view: str, key: str | None) -> dict[str | None, int]:
    """Rows of a global view per process (or stream) id, as ``principal`` reads them."""
    if key is None:
        frame = lake.query(principal, f"SELECT count(*) AS n FROM {view}")
        total = int(frame["n"].iloc[0])
        return {None: total} if total else {}
    frame = lake.query(principal, f"SELECT CAST({key} AS STRING) AS k, count(*) AS n FROM {view} GROUP BY 1")
    return {row.k: int(row.n) for row in frame.itertuples()}


def _sees(principal: Principal, owner: str | None) -> bool:
    return principal.audiences is None or owner in principal.audiences


def test_every_view_set_shows_each_reader_exactly_its_own_audience(lake: AudienceLake) -> None:
    admin = lake.readers[-1]
    stack_lake = lake.stack.stack.lakehouse
    lake.stack.call(stack_lake.refresh_view_definitions())
    views = list(stack_lake.views)
    assert {"level_counts", "level_totals"} <= {v.name for v in views}
    ids = {a: {i for i, owner in lake.owner.items() if owner == a} for a in AUDIENCES}
    assert all(ids.values()), "both audiences' processes and streams are stamped with their audience"
    assert set(lake.owner.values()) == set(AUDIENCES), "every row is stamped by ingestion, none by the client"
    checked_global = checked_instances = 0

    for view in views:
        if view.has_global:
            key = _key_column(view.schema.names)
            everything = _counts(lake, admin, view.name, key)
            if view.name in POPULATED:
                owners = {lake.owner.get(k) for k in everything}
                assert set(AUDIENCES) <= owners, f"{view.name}: the admin sees both audiences"
            for reader in lake.readers[:-1]:
                seen = _counts(lake, reader, view.name, key)
                expected = {k: n for k, n in everything.items() if k is not None and _sees(reader, lake.owner.get(k))}
                assert seen == expected, f"{view.name} as {reader.name}"
            checked_global += 1
        if view.jit_instance is None:
            continue
        kind_ids = {
            a: sorted(i for i in ids[a] if (view.jit_instance is InstanceKind.PROCESS) == (i in _process_ids(lake)))
            for a in AUDIENCES
        }
        for audience, instance_ids in kind_ids.items():
            for instance in instance_ids:
                sql = f"SELECT count(*) AS n FROM view_instance('{view.name}', '{instance}')"
                full = int(lake.query(admin, sql, ranged=True)["n"].iloc[0])
                for reader in lake.readers[:-1]:
                    got = int(lake.query(reader, sql, ranged=True)["n"].iloc[0])
                    assert got == (full if audience in reader.audiences else 0), (view.name, instance, reader.name)
                checked_instances += 1
    assert checked_global >= 8
    assert checked_instances >= 20


def _process_ids(lake: AudienceLake) -> set[str]:
    return {
        row.k
        for row in lake.query(lake.readers[-1], "SELECT CAST(process_id AS STRING) AS k FROM processes").itertuples()
    }


def _one_of(lake: AudienceLake, audience: str) -> pd.Series:
    """A block of ``audience``'s native log stream: its process, stream and block ids."""
    admin = lake.readers[-1]
    blocks = lake.query(
        admin,
        "SELECT CAST(process_id AS STRING) AS p, CAST(stream_id AS STRING) AS s, CAST(block_id AS STRING) AS b"
        " FROM blocks WHERE array_has(\"streams.tags\", 'log')",
    )
    mine = blocks[blocks["p"].map(lake.owner.get) == audience]
    assert len(mine) >= 1
    return mine.iloc[0]


def test_functions_taking_an_id_answer_another_audience_as_a_missing_one(lake: AudienceLake) -> None:
    admin, reader_a = lake.readers[-1], lake.readers[0]
    own, other = _one_of(lake, "team-a"), _one_of(lake, "team-b")
    missing = "00000000-0000-4000-8000-000000000000"

    def error(principal: Principal, sql: str) -> str:
        with pytest.raises(Exception) as info:
            lake.query(principal, sql, ranged=True)
        return str(info.value)

    # parse_block: own block parsed, another audience's block is "not found" like a made-up one
    assert len(lake.query(reader_a, f"SELECT * FROM parse_block('{own.b}')")) > 0
    assert len(lake.query(admin, f"SELECT * FROM parse_block('{other.b}')")) > 0
    assert f"block '{other.b}' not found" in error(reader_a, f"SELECT * FROM parse_block('{other.b}')")
    assert f"block '{missing}' not found" in error(reader_a, f"SELECT * FROM parse_block('{missing}')")

    # get_payload: the same
    payload = "SELECT get_payload('{p}', '{s}', '{b}') AS payload"
    assert lake.query(reader_a, payload.format(p=own.p, s=own.s, b=own.b))["payload"].iloc[0]
    assert lake.query(admin, payload.format(p=other.p, s=other.s, b=other.b))["payload"].iloc[0]
    assert "no payload for block" in error(reader_a, payload.format(p=other.p, s=other.s, b=other.b))

    # process_spans / perfetto_trace_chunks run nested queries: another audience's process reads as unknown
    def outcome(principal: Principal, sql: str, process_id: str) -> tuple[str, object]:
        try:
            return "rows", int(lake.query(principal, sql.format(p=process_id))["n"].iloc[0])
        except Exception as exc:
            return "error", re.sub(r" \(query_id=.*", "", str(exc)).replace(process_id, "<id>")

    for function in ("process_spans", "perfetto_trace_chunks"):
        sql = f"SELECT count(*) AS n FROM {function}('{{p}}', 'both', '2000-01-01T00:00:00Z', '2100-01-01T00:00:00Z')"
        mine = outcome(reader_a, sql, own.p)
        assert mine == outcome(admin, sql, own.p)
        assert mine[0] == "rows"
        assert mine[1] > 0
        assert outcome(admin, sql, other.p)[0] == "rows"
        assert outcome(reader_a, sql, other.p) == outcome(reader_a, sql, missing)

    # list_partitions: no partition of another audience's instances, and no global partition
    listed = lake.query(reader_a, "SELECT view_instance_id FROM list_partitions()")
    assert set(listed["view_instance_id"]) <= {i for i, owner in lake.owner.items() if owner == "team-a"}
    everything = lake.query(admin, "SELECT view_instance_id FROM list_partitions()")
    assert "global" in set(everything["view_instance_id"])


def test_gateway_and_explore_show_each_reader_its_own_audience(lake: AudienceLake) -> None:
    admin, reader_a, reader_b = lake.readers[-1], lake.readers[0], lake.readers[1]
    sql = "SELECT DISTINCT CAST(process_id AS STRING) AS p FROM log_entries"
    status, rows = gateway_query(lake.urls, admin.key, sql)
    assert status == 200
    assert {lake.owner[r["p"]] for r in rows} == set(AUDIENCES)
    for reader in (reader_a, reader_b):
        status, rows = gateway_query(lake.urls, reader.key, sql)
        assert status == 200
        assert {lake.owner[r["p"]] for r in rows} == set(reader.audiences or ())

    status, body = explore_get(lake.urls, admin.key, "processes")
    assert status == 200, body
    every = {p["process_id"] for p in body["data"]["processes"]}
    assert {lake.owner[p] for p in every} == set(AUDIENCES)
    status, body = explore_get(lake.urls, reader_a.key, "processes")
    assert status == 200, body
    mine = {p["process_id"] for p in body["data"]["processes"]}
    assert mine
    assert {lake.owner[p] for p in mine} == {"team-a"}
    theirs = next(p for p in every if lake.owner[p] == "team-b")
    status, body = explore_get(lake.urls, reader_a.key, f"process/{theirs}")
    assert status == 404, body
    assert explore_get(lake.urls, reader_b.key, f"process/{theirs}")[0] == 200
