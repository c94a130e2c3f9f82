"""The view DDL parser: exact definitions from fixed statements, and the reason for every refusal."""

from __future__ import annotations

import pytest

from sirius.lakehouse._sql_functions import prepare_sql
from sirius.lakehouse._view_ddl import CreateView, DropView, parse_time_delta_ns, parse_view_ddl
from sirius.lakehouse._view_definitions import ViewDefinition, ViewOptions

STATEMENT = """/* team view */ -- counts
create or replace Materialized View errs WITH (
  extract_query = $$SELECT date_bin('1 minute', time) AS t, count(*) AS count FROM log_entries
                    WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1$$,
  count_src_query = 'SELECT sum(nb_objects) AS count FROM blocks WHERE insert_time >= ''{begin}'' AND insert_time < ''{end}''',
  merge_partitions_query = $m$SELECT t, sum(count) AS count FROM {source} GROUP BY t$m$,
  update_group = 4000, time_column = 't', max_time_column = 't',
  source_partition_delta = '2 hours', merge_sort_order = 't'
);"""


def test_create_parses_to_the_exact_definition() -> None:
    ddl = parse_view_ddl(STATEMENT)
    assert ddl == CreateView(
        ViewDefinition(
            view_set_name="errs",
            extract_query=(
                "SELECT date_bin('1 minute', time) AS t, count(*) AS count FROM log_entries\n"
                "                    WHERE insert_time >= '{begin}' AND insert_time < '{end}' GROUP BY 1"
            ),
            count_src_query=(
                "SELECT sum(nb_objects) AS count FROM blocks WHERE insert_time >= '{begin}' AND insert_time < '{end}'"
            ),
            merge_partitions_query="SELECT t, sum(count) AS count FROM {source} GROUP BY t",
            update_group=4000,
            options=ViewOptions("t", "t", "2 hours", "2 hours", ("t",)),
            definition_sql=STATEMENT,
        ),
        or_replace=True,
    )
    assert ViewOptions.from_json(ddl.definition.options.to_json()) == ddl.definition.options  # type: ignore[union-attr]


def test_drop_and_other_statements() -> None:
    assert parse_view_ddl("DROP MATERIALIZED VIEW v") == DropView("v", if_exists=False)
    assert parse_view_ddl(" drop materialized view if exists v ; ") == DropView("v", if_exists=True)
    assert parse_view_ddl("SELECT 1") is None
    assert parse_view_ddl("CREATE TABLE t (x INT)") is None
    assert parse_view_ddl("DROP TABLE t") is None


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP MATERIALIZED VIEW", "expected a view set name at the end of the statement"),
        ("DROP MATERIALIZED VIEW a b", "unexpected text after the statement at 'b'"),
        ("DROP MATERIALIZED TABLE a", "expected MATERIALIZED VIEW"),
        ("CREATE MATERIALIZED VIEW v (", "expected WITH at '('"),
        ("CREATE MATERIALIZED VIEW v WITH extract_query = 'x'", "expected ( after WITH"),
        ("CREATE MATERIALIZED VIEW v WITH (extract_query 'x')", "expected = after extract_query"),
        ("CREATE MATERIALIZED VIEW v WITH (extract_query = $$x)", "unterminated $$ string"),
        ("CREATE MATERIALIZED VIEW v WITH (extract_query = 'x)", "unterminated string literal"),
        ("CREATE MATERIALIZED VIEW v WITH (extract_query = x)", "expected a string"),
        ("CREATE MATERIALIZED VIEW v WITH (update_group = 1)", "missing required option(s) extract_query"),
        ("CREATE MATERIALIZED VIEW v AS SELECT 1", "not AS"),
        ("CREATE MATERIALIZED VIEW v WITH (bogus = 1)", "unknown option 'bogus'"),
        ("CREATE MATERIALIZED VIEW v /* open", "unterminated /* comment"),
    ],
)
def test_malformed_ddl_says_why(sql: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_view_ddl(sql)
    assert reason in str(info.value)


def test_option_values_are_checked() -> None:
    with pytest.raises(ValueError, match="update_group must be a positive integer"):
        parse_view_ddl(STATEMENT.replace("update_group = 4000", "update_group = '4000'"))
    with pytest.raises(ValueError, match="update_group must be a positive integer"):
        parse_view_ddl(STATEMENT.replace("update_group = 4000", "update_group = -1"))
    with pytest.raises(ValueError, match="source_partition_delta: expected a positive"):
        parse_view_ddl(STATEMENT.replace("'2 hours'", "'2 weeks'"))
    with pytest.raises(ValueError, match="merge_sort_order must be a comma-separated list"):
        parse_view_ddl(STATEMENT.replace("merge_sort_order = 't'", "merge_sort_order = 't desc'"))
    assert parse_time_delta_ns("1 day") == 86_400 * 10**9
    assert parse_time_delta_ns(" 3 Minutes ") == 180 * 10**9


def test_dollar_quoted_queries_are_left_verbatim_by_the_sql_rewrites() -> None:
    sql = "CREATE MATERIALIZED VIEW v WITH (extract_query = $$SELECT histogram_quantile(h, 0.5) FROM x$$)"
    assert prepare_sql(sql) == sql
    assert prepare_sql("SELECT histogram_quantile(h, 0.5) FROM x") != "SELECT histogram_quantile(h, 0.5) FROM x"
