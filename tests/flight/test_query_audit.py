"""Query audit and deny list: a real stack (PostgreSQL, lakehouse), FlightSQL servers over it, the
unmodified ``micromegas`` client, ADBC and the HTTP gateway.

Audit rows are written asynchronously, so tests wait (with a deadline) for them to appear.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import adbc_driver_manager
import asyncpg
import pyarrow as pa
import pytest
from adbc_driver_flightsql import dbapi
from micromegas.flightsql.client import FlightSQLClient
from pyarrow import flight
from waiting import wait_until as _wait_until_shared  # tests/ is on sys.path

from sirius.collector import ApiKeys
from sirius.flight import FlightSqlConfig, FlightSqlService, LakehouseSessionProvider
from sirius.lakehouse import QueryAuditLog, apply_retention

_ERRORS = (flight.FlightError, pa.ArrowException)
ADMIN_KEY, VIEWER_KEY = "k-admin-1", "k-viewer-1"
KEYS = ApiKeys.parse(json.dumps([{"name": "admin", "key": ADMIN_KEY}, {"name": "viewer", "key": VIEWER_KEY}]))


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    return _wait_until_shared(what, condition, timeout)


class Lake:
    """A stack without daemon plus FlightSQL services over its lakehouse, and audit-table reads."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.uri = next(e.url for e in stack.endpoints if e.name == "flightsql")
        self.gateway = next(e.url for e in stack.endpoints if e.name == "gateway")
        self.services: list[FlightSqlService] = []

    def keyed_service(self) -> str:
        """A FlightSQL server with API keys, ``admin`` the only admin; returns its URI."""
        service = FlightSqlService(
            LakehouseSessionProvider(self.stack.stack.lakehouse),
            KEYS,
            FlightSqlConfig(port=0, admin_key_names=frozenset({"admin"})),
            loop=self.stack.loop,
        )
        port = self.stack.call(service.start())
        self.services.append(service)
        return f"grpc://127.0.0.1:{port}"

    def close(self) -> None:
        for service in self.services:
            self.stack.call(service.stop())

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            async with self.stack.stack.lakehouse.pool.acquire() as conn:
                return [dict(r) for r in await conn.fetch(sql, *args)]

        return self.stack.call(run())

    def audit_of(self, sql: str) -> dict[str, Any]:
        rows = _wait_for(
            lambda: self.fetch("SELECT * FROM flightsql_query_audit WHERE sql = $1", sql), f"the audit row of {sql!r}"
        )
        assert len(rows) == 1, rows
        return rows[0]


@pytest.fixture
def lake(stack_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    monkeypatch.setenv("MICROMEGAS_QUERY_DENY_REFRESH_SECONDS", "0.2")
    running = Lake(stack_factory(daemon=False))
    yield running
    running.close()


def _client(uri: str, **headers: str) -> FlightSQLClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # static headers: how x-user-* are sent
        return FlightSQLClient(uri, headers=headers or None)


def _admin(uri: str, **headers: str) -> FlightSQLClient:
    return _client(uri, authorization=f"Bearer {ADMIN_KEY}", **headers)


def test_queries_are_audited_with_their_attribution(lake: Lake) -> None:
    py_sql = "SELECT x FROM (VALUES (1), (2), (3)) AS t(x) -- audit python"
    client = _client(
        lake.uri, **{"x-user-id": "alice%40corp", "x-user-email": "alice@corp.com", "x-user-name": "Alice%20A"}
    )
    assert len(client.query(py_sql)) == 3
    row = lake.audit_of(py_sql)
    assert row["status"] == "ok"
    assert row["error"] is None
    assert row["error_class"] is None
    assert row["output_rows"] == 3
    assert (row["user_id"], row["email"], row["user_name"]) == ("alice@corp", "alice@corp.com", "Alice A")
    assert row["client"] == "python"
    # the 0.32 client's own attribution headers
    assert row["agent"] != "unknown"
    assert row["entrypoint"] != "unknown"
    assert row["session"]
    assert row["client_ip"] == "127.0.0.1"
    assert row["service_account"] is False
    assert len(row["sql_hash"]) == 16
    assert 0 <= row["context_init_ms"] <= row["setup_ms"] <= row["total_ms"]
    assert row["planning_ms"] >= 0
    assert row["execution_ms"] >= 0
    assert (row["bytes_scanned"], row["spill_count"]) == (0, 0)
    assert uuid.UUID(row["query_id"])

    adbc_sql = "SELECT 42 AS answer -- audit adbc"
    options = {
        "adbc.flight.sql.rpc.call_header.x-client-type": "adbc-test",
        "adbc.flight.sql.rpc.call_header.x-user-id": "bob",
        "adbc.flight.sql.rpc.call_header.x-client-notebook": "fleet",
        "adbc.flight.sql.rpc.call_header.x-client-cell": "cell%201",
    }
    with dbapi.connect(lake.uri, db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(adbc_sql)
        assert cur.fetch_arrow_table().num_rows == 1
    row = lake.audit_of(adbc_sql)
    assert (row["status"], row["output_rows"], row["client"], row["user_id"]) == ("ok", 1, "adbc-test", "bob")
    assert (row["notebook"], row["cell"], row["email"]) == ("fleet", "cell 1", "unknown")

    gateway_sql = "SELECT 'g' AS via -- audit gateway"
    request = urllib.request.Request(
        f"{lake.gateway}/query",
        data=json.dumps({"sql": gateway_sql}).encode(),
        headers={"Content-Type": "application/json", "x-client-type": "web", "x-user-email": "carol@corp.com"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == [{"via": "g"}]
    row = lake.audit_of(gateway_sql)
    assert (row["status"], row["output_rows"], row["client"]) == ("ok", 1, "web+gateway")
    assert (row["email"], row["client_ip"]) == ("carol@corp.com", "127.0.0.1")


def test_failing_query_is_audited_with_its_error(lake: Lake) -> None:
    sql = "SELECT * FROM no_such_table_for_audit"
    with pytest.raises(_ERRORS, match="no_such_table_for_audit"):
        _client(lake.uri).query(sql)
    row = lake.audit_of(sql)
    assert (row["status"], row["error_class"]) == ("error", "user")
    assert "no_such_table_for_audit" in row["error"]
    assert row["output_rows"] is None
    assert row["total_ms"] >= 0


def test_denied_query_is_refused_then_allowed_after_removal(lake: Lake) -> None:
    uri, other_uri = lake.keyed_service(), lake.keyed_service()
    admin = _admin(uri, **{"x-user-email": "ops@corp.com"})
    rule = "sql LIKE '%heavy_marker%' AND user_id = 'mallory'"
    added = admin.query(f"SELECT * FROM deny_queries('{rule.replace(chr(39), chr(39) * 2)}', 'dashboard storm')")
    rule_id = added["rule_id"][0]
    listed = admin.query("SELECT * FROM list_query_denials()")
    assert listed["rule_id"].tolist() == [rule_id]
    assert (listed["match_expr"][0], listed["reason"][0], listed["created_by"][0]) == (
        rule,
        "dashboard storm",
        "ops@corp.com",
    )

    sql = "SELECT 1 AS heavy_marker"
    mallory = _client(uri, authorization=f"Bearer {VIEWER_KEY}", **{"x-user-id": "mallory"})
    with pytest.raises(pa.ArrowInvalid, match=f"query denied by rule {rule_id}") as info:
        mallory.query(sql)
    assert "dashboard storm" in str(info.value)
    assert f"remove_query_denial('{rule_id}')" in str(info.value)
    # the other service refuses it too once its cache refreshes; others' queries still run
    other = _client(other_uri, authorization=f"Bearer {VIEWER_KEY}", **{"x-user-id": "mallory"})

    def refused_by_other() -> bool:
        try:
            other.query(sql)
        except pa.ArrowInvalid:
            return True
        return False

    _wait_for(refused_by_other, "the second service to apply the denial", timeout=15)
    trent = _client(uri, authorization=f"Bearer {VIEWER_KEY}", **{"x-user-id": "trent"})
    assert trent.query(sql)["heavy_marker"].tolist() == [1]
    denied = _wait_for(
        lambda: lake.fetch("SELECT * FROM flightsql_query_audit WHERE error_class = 'denied' AND user_id = 'mallory'"),
        "the audit row of the denied query",
    )[0]
    assert (denied["status"], str(denied["deny_rule_id"])) == ("error", rule_id)
    assert (denied["service_account"], denied["service_account_name"]) == (True, "viewer")

    removed = admin.query(f"SELECT remove_query_denial('{rule_id}') AS status")
    assert removed["status"][0] == f"SUCCESS: removed query denial {rule_id}"
    assert mallory.query(sql)["heavy_marker"].tolist() == [1]
    assert admin.query("SELECT * FROM list_query_denials()").empty
    _wait_for(lambda: not refused_by_other(), "the second service to lift the denial", timeout=15)
    hit = lake.fetch("SELECT count(*) AS n FROM query_deny_list")
    assert hit == [{"n": 0}]


def test_non_admin_cannot_manage_the_deny_list(lake: Lake) -> None:
    viewer = _client(lake.keyed_service(), authorization=f"Bearer {VIEWER_KEY}")
    with pytest.raises(_ERRORS, match="deny_queries"):
        viewer.query("SELECT * FROM deny_queries('user_id = ''x''', 'no')")
    with pytest.raises(_ERRORS, match="list_query_denials"):
        viewer.query("SELECT * FROM list_query_denials()")
    with pytest.raises(_ERRORS, match="remove_query_denial"):
        viewer.query(f"SELECT remove_query_denial('{uuid.uuid4()}')")
    assert lake.fetch("SELECT count(*) AS n FROM query_deny_list") == [{"n": 0}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM deny_queries('user_id ==', 'r')", "deny_queries: .*position 10"),
        ("SELECT * FROM deny_queries('nobody = ''x''', 'r')", "deny_queries: unknown column 'nobody'"),
        ("SELECT * FROM deny_queries('''a'' = ''a''', 'r')", "deny_queries: .*names no column"),
        ("SELECT * FROM deny_queries('user_id = ''x''', '  ')", "deny_queries: the reason is empty"),
        ("SELECT * FROM deny_queries(1, 'r')", "deny_queries: match_expr must be a string"),
        ("SELECT * FROM deny_queries('user_id = ''x''')", "deny_queries takes 2 argument"),
        ("SELECT remove_query_denial('not-a-uuid')", "remove_query_denial: 'not-a-uuid' is not a rule id"),
        # the statement around a valid call cannot be planned: the rule is not stored either
        ("SELECT no_such_column FROM deny_queries('user_id = ''x''', 'r')", "no_such_column"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(lake: Lake, sql: str, message: str) -> None:
    with pytest.raises(_ERRORS, match=message) as info:
        _admin(lake.keyed_service()).query(sql)
    assert isinstance(info.value, pa.ArrowInvalid)  # how pyarrow raises INVALID_ARGUMENT
    assert "grpc_status:3" in str(info.value)
    assert lake.fetch("SELECT count(*) AS n FROM query_deny_list") == [{"n": 0}]


def test_deny_queries_answers_as_micromegas_does(lake: Lake) -> None:
    # Micromegas's deny_queries answers a log stream: the new rule's id is its ``msg``
    admin = _admin(lake.keyed_service())
    added = admin.query("SELECT msg AS rule_id, time FROM deny_queries('client = ''nobody''', 'shape test')")
    (rule_id,) = added["rule_id"].tolist()
    assert lake.fetch("SELECT rule_id::text AS r FROM query_deny_list") == [{"r": rule_id}]
    assert admin.query(f"SELECT remove_query_denial('{rule_id}') AS s")["s"][0].startswith("SUCCESS")


def test_removing_an_unknown_rule_says_so(lake: Lake) -> None:
    rule_id = str(uuid.uuid4())
    answer = _admin(lake.keyed_service()).query(f"SELECT remove_query_denial('{rule_id}') AS status")
    assert answer["status"][0].startswith(f"ERROR: no query denial with rule_id {rule_id}")


def test_denial_through_adbc(lake: Lake) -> None:
    uri = lake.keyed_service()
    _admin(uri).query("SELECT * FROM deny_queries('client = ''adbc-denied''', 'adbc test')")
    options = {
        "adbc.flight.sql.authorization_header": f"Bearer {VIEWER_KEY}",
        "adbc.flight.sql.rpc.call_header.x-client-type": "adbc-denied",
    }
    with dbapi.connect(uri, db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="query denied by rule"):
            _fetch(cur, "SELECT 1")


def _fetch(cur: Any, sql: str) -> Any:
    cur.execute(sql)
    return cur.fetch_arrow_table()


def test_retention_deletes_old_audit_rows(lake: Lake) -> None:
    lakehouse = lake.stack.stack.lakehouse
    sql = "SELECT 'recent' -- retention"
    _client(lake.uri).query(sql)
    lake.audit_of(sql)
    old = lake.fetch("SELECT * FROM flightsql_query_audit WHERE sql = $1", sql)[0]
    old["time"] = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=100)
    old["query_id"] = str(uuid.uuid4())
    old["sql"] = "SELECT 'old' -- retention"

    async def insert_old() -> None:
        log = QueryAuditLog(lakehouse.pool)
        from sirius.lakehouse import QueryAuditRecord

        log.submit(QueryAuditRecord(**old))
        await log.flush()
        assert log.written_records == 1

    lake.stack.call(insert_old())
    report = lake.stack.call(apply_retention(lakehouse, 90))
    assert report.query_audit == 1
    assert [r["sql"] for r in lake.fetch("SELECT sql FROM flightsql_query_audit WHERE sql LIKE '%retention'")] == [sql]


def test_audit_write_failure_is_counted_not_raised(pg_dsn: str) -> None:
    async def scenario() -> None:
        pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
        try:
            log = QueryAuditLog(pool)  # this database has no audit table: every insert fails
            record = _record()
            log.submit(record)
            await log.flush()
            assert (log.failed_records, log.written_records) == (1, 0)
        finally:
            await pool.close()

    asyncio.run(scenario())


def _record() -> Any:
    from sirius.lakehouse import QueryAuditRecord

    now = datetime.datetime.now(datetime.UTC)
    return QueryAuditRecord(
        query_id=str(uuid.uuid4()),
        time=now,
        client_ip="127.0.0.1",
        client="c",
        agent="a",
        entrypoint="e",
        session=None,
        notebook=None,
        cell=None,
        user_id="u",
        email="e",
        user_name=None,
        service_account=False,
        service_account_name=None,
        org_id=None,
        sql="SELECT 1",
        sql_hash="0" * 16,
        range_begin=None,
        range_end=None,
        row_limit=None,
        context_init_ms=0.0,
        planning_ms=0.0,
        execution_ms=0.0,
        setup_ms=0.0,
        total_ms=0.0,
        status="ok",
        error=None,
        error_class=None,
        output_rows=1,
        bytes_scanned=0,
        peak_memory_bytes=None,
        spilled_bytes=0,
        spill_count=0,
        deny_rule_id=None,
    )


def test_admin_can_lift_a_rule_that_matches_their_own_queries(lake: Lake) -> None:
    admin = _admin(lake.keyed_service())
    rule_id = admin.query("SELECT * FROM deny_queries('client = ''python''', 'every python client')")["rule_id"][0]
    with pytest.raises(pa.ArrowInvalid, match=rule_id):
        admin.query("SELECT 1 AS locked_out")
    # a statement calling the deny-list functions is exempt for admins, so the valve reopens
    assert admin.query("SELECT * FROM list_query_denials()")["rule_id"].tolist() == [rule_id]
    assert admin.query(f"SELECT remove_query_denial('{rule_id}') AS s")["s"][0].startswith("SUCCESS")
    assert admin.query("SELECT 1 AS back")["back"].tolist() == [1]


def test_scanned_bytes_of_a_lake_query_are_audited(lake: Lake) -> None:
    from test_lakehouse_e2e import _send

    process_id, _, messages = _send(lake.stack.url)
    sql = f"SELECT msg FROM view_instance('log_entries', '{process_id}') -- audit scan"
    assert _client(lake.uri).query(sql)["msg"].tolist() == messages
    row = lake.audit_of(sql)
    assert (row["status"], row["output_rows"]) == ("ok", len(messages))
    assert row["bytes_scanned"] > 0
    assert row["context_init_ms"] > 0


def _operations_examples() -> list[str]:
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = page.split("## Query audit and deny list", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)]


def test_operations_page_examples_run_as_written(lake: Lake) -> None:
    audit_sql, deny_sql, list_sql, remove_sql = _operations_examples()
    admin = _admin(lake.keyed_service())
    admin.query("SELECT 1 AS before_the_examples")
    rule_id = admin.query(deny_sql)["rule_id"][0]
    listed = admin.query(list_sql)
    assert listed["reason"].tolist() == ["alert storm; owner paged"]
    assert "grafana" in listed["match_expr"][0]
    assert admin.query(remove_sql.replace("<rule_id>", rule_id)).iloc[0, 0].startswith("SUCCESS")
    slowest = _wait_for(lambda: lake.fetch(audit_sql), "audit rows of the last hour")
    assert "SELECT 1 AS before_the_examples" in [r["sql"] for r in slowest]


def test_denied_gateway_query_is_a_403_naming_the_rule(lake: Lake) -> None:
    # the stack's own FlightSQL server has no admin list: every caller is admin, as in Micromegas
    admin = _client(lake.uri)
    rule_id = admin.query("SELECT * FROM deny_queries('client = ''web+gateway''', 'web queries paused')")["rule_id"][0]
    request = urllib.request.Request(
        f"{lake.gateway}/query",
        data=json.dumps({"sql": "SELECT 1 AS g"}).encode(),
        headers={"Content-Type": "application/json", "x-client-type": "web"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 403
    body = json.loads(info.value.read())
    assert body["error"].startswith(f"query denied by rule {rule_id} (reason: web queries paused)")
    admin.query(f"SELECT remove_query_denial('{rule_id}')")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == [{"g": 1}]


def test_a_failing_audit_insert_never_fails_a_query(lake: Lake) -> None:
    uri = lake.keyed_service()
    audit_log = lake.services[-1].provider.governance.audit_log
    lake.fetch("ALTER TABLE flightsql_query_audit RENAME TO flightsql_query_audit_away")
    try:
        assert _admin(uri).query("SELECT 7 AS still_served")["still_served"].tolist() == [7]
        _wait_for(lambda: audit_log.failed_records == 1, "the failed audit insert to be counted")
        assert audit_log.written_records == 0
    finally:
        lake.fetch("ALTER TABLE flightsql_query_audit_away RENAME TO flightsql_query_audit")


def test_a_query_abandoned_mid_stream_is_audited_incomplete(lake: Lake) -> None:
    from sirius.flight import _protocol as proto

    sql = "SELECT value FROM range(50000000) -- abandoned"
    ticket = flight.Ticket(proto.pack(proto.TicketStatementQuery(statement_handle=sql.encode())))
    client = flight.connect(lake.uri)
    try:
        reader = client.do_get(ticket)
        assert reader.read_chunk().data.num_rows > 0
        reader.cancel()
    finally:
        client.close()
    row = lake.audit_of(sql)
    assert row["status"] == "incomplete"
    assert 0 < row["output_rows"] < 50_000_000
