"""The SQL of ``docs/operations.md`` runs on a real stack as written and does what the page says.

The upgrade example rebuilds older partitions of a view: it must answer one line per partition,
and none of those partitions may reach past the present (the maintenance passes could not
update such a partition until it is over, so new rows would stay out of the view).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from sirius.flight import query_table

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PARTITION = re.compile(r"\[(\S+), (\S+)\): ")


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", OPERATIONS.read_text(), flags=re.DOTALL)


def test_upgrade_example_rebuilds_past_partitions_only(stack_factory) -> None:
    stack = stack_factory(daemon=False)
    uri = {e.name: e.url for e in stack.endpoints}["flightsql"]
    blocks = [sql for sql in _sql_blocks() if "materialize_partitions" in sql]
    assert blocks, "the upgrade example is on the page"
    for sql in blocks:
        started = time.time()
        table = query_table(sql.strip(), uri=uri)
        messages = table.column("msg").to_pylist()
        assert len(messages) > 24, messages[:3]  # the range covers weeks of hourly partitions
        for message in messages:
            match = PARTITION.search(message)
            assert match, message
            end = datetime.fromisoformat(match.group(2).replace("Z", "+00:00")).timestamp()
            assert end <= started, f"a partition reaches past the present: {message}"


def test_a_range_past_the_present_is_cut_there_and_the_answer_says_so(stack_factory) -> None:
    stack = stack_factory(daemon=False)
    uri = {e.name: e.url for e in stack.endpoints}["flightsql"]
    for function in ("materialize_partitions", "regenerate_partitions"):
        sql = f"SELECT * FROM {function}('log_entries', now() - INTERVAL '2 hours', now() + INTERVAL '1 day', 3600)"
        messages = query_table(sql, uri=uri).column("msg").to_pylist()
        after = time.time()
        assert "after the present" in messages[0], messages[0]
        assert "materialized up to" in messages[0], messages[0]
        assert len(messages) >= 3, messages  # the line, then the hours before the present
        for message in messages[1:]:
            match = PARTITION.search(message)
            assert match, message
            end = datetime.fromisoformat(match.group(2).replace("Z", "+00:00")).timestamp()
            assert end <= after, f"a partition reaches past the present: {message}"
    ends = query_table(
        "SELECT arrow_cast(end_insert_time, 'Int64') AS e FROM list_partitions() WHERE view_set_name = 'log_entries'",
        uri=uri,
    ).column("e")
    assert max(ends.to_pylist()) <= time.time_ns()


def test_views_as_code_example_creates_and_drops_a_view(stack_factory) -> None:
    stack = stack_factory(daemon=False)
    uri = {e.name: e.url for e in stack.endpoints}["flightsql"]
    blocks = [sql.strip() for sql in _sql_blocks() if "MATERIALIZED VIEW" in sql]
    assert len(blocks) == 2, "the CREATE and DROP examples are on the page"
    created = query_table(blocks[0], uri=uri)
    assert created.to_pylist() == [{"view_set_name": "level_counts", "status": "created"}]
    assert query_table("SELECT count(*) AS n FROM level_counts", uri=uri).to_pylist() == [{"n": 0}]
    dropped = query_table(blocks[1], uri=uri)
    assert dropped.to_pylist() == [{"view_set_name": "level_counts", "status": "dropped"}]
