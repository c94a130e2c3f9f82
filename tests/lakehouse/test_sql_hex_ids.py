"""The hex-id rewriter: which literals it finds, how it rewrites them, when it plans twice."""

from __future__ import annotations

import doctest

import datafusion
import pyarrow as pa
import pytest

from sirius.lakehouse import _sql_hex_ids
from sirius.lakehouse._sql_hex_ids import find_hex_id_literals, plan_sql, rewrite_hex_ids

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_doctests() -> None:
    assert doctest.testmod(_sql_hex_ids).failed == 0


@pytest.mark.parametrize(
    ("sql", "values"),
    [
        (f"SELECT * FROM s WHERE trace_id = '{TRACE}'", [TRACE]),
        (f'SELECT * FROM s WHERE "s"."trace_id" != \'{TRACE}\'', [TRACE]),
        (f"SELECT * FROM s WHERE '{SPAN}' = s.span_id AND parent_span_id IN ('{SPAN}', 'ab')", [SPAN, SPAN, "ab"]),
        (f"SELECT * FROM s WHERE span_id NOT IN ('{SPAN}')", [SPAN]),
        (f"SELECT * FROM s WHERE trace_id = '{TRACE}'::bytea", []),
        (f"SELECT * FROM s WHERE name = '{TRACE}' -- trace_id = '{TRACE}'", []),
        (f"SELECT 'trace_id = ''{TRACE}''' FROM s", []),
        (f"SELECT * FROM s WHERE trace_id IN ('{TRACE}', other)", []),
        (f"SELECT * FROM s WHERE x.trace_id_text = '{TRACE}'", []),
        (f"SELECT * FROM s WHERE TRACE_ID = X'{TRACE}'", []),
    ],
)
def test_finds_literals_compared_with_id_columns(sql: str, values: list[str]) -> None:
    assert [h.value for h in find_hex_id_literals(sql)] == values


def test_rewrite_rejects_what_is_not_an_id() -> None:
    with pytest.raises(ValueError, match="span_id holds 8 bytes: compare it with a string of 16 hex digits"):
        rewrite_hex_ids(f"SELECT * FROM s WHERE span_id = '{TRACE}'")


@pytest.fixture
def ctx() -> datafusion.SessionContext:
    context = datafusion.SessionContext()
    table = pa.table(
        {
            "trace_id": pa.array([bytes.fromhex(TRACE), bytes(16)], pa.binary(16)),
            "span_id": pa.array([bytes.fromhex(SPAN), None], pa.binary(8)),
            "name": ["a", "b"],
        }
    )
    context.register_record_batches("s", [table.to_batches()])
    return context


def test_plan_sql_compares_hex_with_binary_ids(ctx) -> None:
    assert plan_sql(ctx, f"SELECT name FROM s WHERE trace_id = '{TRACE.upper()}'").to_pydict() == {"name": ["a"]}
    assert plan_sql(ctx, f"SELECT name FROM s WHERE span_id IN ('{SPAN}')").to_pydict() == {"name": ["a"]}
    projected = plan_sql(ctx, f"SELECT trace_id = '{TRACE}' AS hit FROM s").to_pydict()
    assert projected == {"hit": [True, False]}


def test_plan_sql_leaves_string_columns_alone(ctx) -> None:
    sql = f"SELECT name FROM (SELECT encode(trace_id, 'hex') AS trace_id, name FROM s) WHERE trace_id = '{TRACE}'"
    assert plan_sql(ctx, sql).to_pydict() == {"name": ["a"]}


def test_plan_sql_keeps_other_errors(ctx) -> None:
    with pytest.raises(Exception, match="No field named nope"):
        plan_sql(ctx, f"SELECT nope FROM s WHERE trace_id = '{TRACE}'").to_pydict()


@pytest.mark.parametrize("op", ["=", "<>", "!=", "<", "<=", ">", ">="])
def test_every_comparison_operator_in_both_orders(ctx, op: str) -> None:
    expected = ctx.sql(f"SELECT count(*) AS n FROM s WHERE trace_id {op} X'{TRACE}'").to_pydict()
    assert plan_sql(ctx, f"SELECT count(*) AS n FROM s WHERE trace_id {op} '{TRACE}'").to_pydict() == expected
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    assert plan_sql(ctx, f"SELECT count(*) AS n FROM s WHERE '{TRACE}' {flipped} trace_id").to_pydict() == expected
