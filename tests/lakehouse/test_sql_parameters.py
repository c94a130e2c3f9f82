"""Bound parameters written into prepared statements as literals."""

from __future__ import annotations

import datetime

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse._sql_functions import new_session_context
from sirius.lakehouse._sql_parameters import ParameterError, bind_parameters


def test_placeholders_outside_strings_comments_and_identifiers() -> None:
    sql = "SELECT $2, \"$1\", '$1 ?' -- $1 ?\n, /* ? */ $1"
    assert bind_parameters(sql, pa.table({"a": ["x"], "b": [7]})) == "SELECT 7, \"$1\", '$1 ?' -- $1 ?\n, /* ? */ 'x'"
    assert bind_parameters("SELECT ?, ?", pa.table({"a": [1], "b": [None]})) == "SELECT 1, NULL"


def test_timestamps_keep_nanoseconds() -> None:
    ts = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns", tz="UTC"))
    day = pa.array([datetime.date(2024, 2, 29)])
    bound = bind_parameters("SELECT $1 AS t, $2 AS d", pa.table({"t": ts, "d": day}))
    assert bound == "SELECT TIMESTAMP '2023-11-14T22:13:20.123456789' AS t, DATE '2024-02-29' AS d"


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT $2", {"a": [1]}, "placeholder $2 has no value"),
        ("SELECT 1", {"a": [1]}, "1 parameter(s) given but the statement uses 0"),
        ("SELECT $1, ?", {"a": [1]}, "either $n or ?"),
        ("SELECT ?", {"a": [1, 2]}, "one row of parameters, got 2"),
        ("SELECT ?", {"a": pa.array([[1]])}, "no SQL literal for a parameter of type list"),
    ],
)
def test_mismatches_are_errors(sql: str, params: dict, message: str) -> None:
    with pytest.raises(
        ParameterError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")
    ):
        bind_parameters(sql, pa.table(params))


values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",)))
    | st.binary(max_size=16)
)


@given(values)
@settings(max_examples=200, deadline=None)
def test_bound_values_come_back_unchanged(value) -> None:
    # the literal of any value plans as that value: no quoting trick changes the statement
    ctx = new_session_context()
    column = pa.array([value])
    table = ctx.sql(bind_parameters("SELECT $1 AS v, 1 AS marker", pa.table({"v": column}))).to_arrow_table()
    assert table["marker"].to_pylist() == [1]
    assert table["v"].to_pylist() == [value]
