"""Planning view definitions against the built-in view sets, and the JIT window's gaps.

No PostgreSQL: ``plan_definition`` plans over empty tables of the views' schemas, so these
check the words of its refusals, the views a definition reads, and ``uncovered``.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from sirius.lakehouse import TimeRange
from sirius.lakehouse._partitions import Partition
from sirius.lakehouse._sql_view_set import SqlViewSet, uncovered
from sirius.lakehouse._view_definitions import ViewDefinition, ViewOptions
from sirius.lakehouse._view_planning import plan_definition
from sirius.lakehouse.views import default_view_sets

EXTRACT = (
    "SELECT date_bin('1 minute', time) AS time_bin, process_id, level, count(*) AS count FROM log_entries"
    " WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1, 2, 3"
)
COUNT = (
    "SELECT sum(nb_objects) AS count FROM blocks WHERE insert_time >= '{begin}' AND insert_time < '{end}'"
    " AND process_id IN (SELECT process_id FROM processes)"
)
MERGE = "SELECT time_bin, process_id, level, sum(count) AS count FROM {source} GROUP BY 1, 2, 3"


def definition(
    name: str = "level_counts", *, extract: str = EXTRACT, merge: str = MERGE, time: str = "time_bin"
) -> ViewDefinition:
    return ViewDefinition(name, extract, COUNT, merge, 4000, ViewOptions(time, time))


def test_plan_finds_schema_and_the_views_read_including_subqueries() -> None:
    planned = plan_definition(default_view_sets(), definition())
    assert planned.schema.names == ["time_bin", "process_id", "level", "count"]
    assert planned.schema.field("time_bin").type == pa.timestamp("ns", tz="+00:00")
    assert planned.extract_reads == frozenset({"log_entries"})
    assert planned.reads == frozenset({"log_entries", "blocks", "processes"})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"extract": EXTRACT.replace("level,", "lvl,")}, "extract_query does not plan: unknown column lvl"),
        ({"extract": EXTRACT.replace("count(*)", "cnt(*)")}, "extract_query does not plan: unknown function cnt()"),
        ({"extract": EXTRACT.replace("log_entries", "nope")}, "extract_query does not plan: unknown view set 'nope'"),
        ({"extract": "SELEC 1"}, "extract_query does not plan: SQL syntax error"),
        ({"extract": EXTRACT.replace("log_entries", "level_counts")}, "a view cannot read itself"),
        ({"time": "process_id"}, "time column 'process_id' must be a nanosecond timestamp"),
        ({"time": "t"}, "time column 't' is not a column of extract_query (columns: time_bin, process_id, level"),
        ({"merge": MERGE.replace("AS count", "AS n")}, "merge_partitions_query must return the columns"),
        ({"merge": MERGE.replace("sum(", "zum(")}, "merge_partitions_query does not plan: unknown function zum()"),
    ],
)
def test_plan_refuses_with_a_reason(change: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError) as info:
        plan_definition(default_view_sets(), definition(**change))
    assert reason in str(info.value)


def test_a_ddl_view_is_planned_as_a_source_and_jit_follows_its_sources() -> None:
    views = default_view_sets()
    counts = SqlViewSet(definition(), plan_definition(views, definition()), views)
    assert counts.jit
    views = views.with_view(counts)
    totals_sql = "SELECT time_bin, level, sum(count) AS count FROM level_counts GROUP BY 1, 2"
    totals_def = ViewDefinition(
        "level_totals", totals_sql, COUNT, "SELECT * FROM {source}", 5000, ViewOptions("time_bin", "time_bin")
    )
    totals = SqlViewSet(totals_def, plan_definition(views, totals_def), views)
    assert totals.reads == frozenset({"level_counts", "blocks", "processes"})
    assert not totals.jit, "its extract query does not select rows by {begin}/{end}"
    stats_def = ViewDefinition(
        "stats_copy",
        "SELECT * FROM log_stats WHERE time_bin >= '{begin}' AND time_bin < '{end}'",
        COUNT,
        "SELECT * FROM {source}",
        5000,
        ViewOptions("time_bin", "time_bin"),
    )
    stats = SqlViewSet(stats_def, plan_definition(views, stats_def), views)
    assert not stats.jit, "log_stats is built from log_entries partitions, not computable at query time"


def _partition(begin: int, end: int, updated: int) -> Partition:
    return Partition("v", "global", begin, end, None, None, updated, None, 0, b"", b"", 0)


def test_uncovered_parts_of_a_window() -> None:
    window = TimeRange(0, 100)
    assert uncovered(window, []) == [window]
    assert uncovered(window, [_partition(-10, 20, 50), _partition(40, 60, 60)]) == [
        TimeRange(20, 40),
        TimeRange(60, 100),
    ]
    assert uncovered(window, [_partition(-10, 200, 300)]) == []
    # written at 70 before its range ended: what was inserted after 70 is not in it
    assert uncovered(window, [_partition(0, 200, 70)]) == [TimeRange(70, 100)]
    assert uncovered(window, [_partition(10, 30, 30), _partition(20, 50, 50)]) == [
        TimeRange(0, 10),
        TimeRange(50, 100),
    ]
