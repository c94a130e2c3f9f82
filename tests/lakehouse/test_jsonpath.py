"""Property tests of the SQL/JSON path parser and evaluator behind ``jsonb_path_query``."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse._sql_jsonb import DICT_BINARY, decode_jsonb, encode_jsonb
from sirius.lakehouse._sql_jsonpath import JsonPathError, evaluate, jsonb_path_udfs, parse_json_path

keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | keys
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=15,
)


def _quoted(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


@st.composite
def value_and_walk(draw: st.DrawFn) -> tuple[object, str, object]:
    """A JSON value, a path of keys/indices that exists in it, and what it leads to."""
    value = draw(json_values)
    node, path = value, "$"
    for _ in range(draw(st.integers(0, 5))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            node, path = node[key], f"{path}.{_quoted(key)}"
        elif isinstance(node, list) and node:
            index = draw(st.integers(0, len(node) - 1))
            node, path = node[index], f"{path}[{index}]"
        else:
            break
    return value, path, node


@given(value_and_walk())
@settings(max_examples=300, deadline=None)
def test_member_and_index_paths_reach_the_value(case) -> None:
    value, path, expected = case
    assert evaluate(parse_json_path(path), value) == [expected]


@given(
    st.lists(st.integers(-100, 100), max_size=20),
    st.integers(-100, 100),
    st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
)
@settings(max_examples=300, deadline=None)
def test_filters_match_python(numbers, bound, op) -> None:
    ops = {
        "<": lambda a: a < bound,
        "<=": lambda a: a <= bound,
        ">": lambda a: a > bound,
        ">=": lambda a: a >= bound,
        "==": lambda a: a == bound,
        "!=": lambda a: a != bound,
    }
    document = {"xs": [{"v": n, "s": str(n)} for n in numbers]}
    path = parse_json_path(f"$.xs[*] ? (@.v {op} {bound}).v")
    assert evaluate(path, document) == [n for n in numbers if ops[op](n)]
    negated = parse_json_path(f'$.xs[*] ? (!(@.v {op} {bound}) || @.s == "x").v')
    assert evaluate(negated, document) == [n for n in numbers if not ops[op](n)]


@given(st.lists(json_values, max_size=6), st.integers(0, 8), st.integers(0, 8))
@settings(max_examples=200, deadline=None)
def test_ranges_and_last(items, lo, hi) -> None:
    assert evaluate(parse_json_path(f"$[{lo} to {hi}]"), items) == items[lo : hi + 1]
    assert evaluate(parse_json_path("$[last]"), items) == items[-1:]
    assert evaluate(parse_json_path("$[*]"), items) == items


@given(st.text(max_size=40))
@settings(max_examples=500, deadline=None)
def test_any_text_parses_or_raises_a_path_error(text) -> None:
    try:
        path = parse_json_path(text)
    except JsonPathError as exc:
        message = str(exc)
    else:
        evaluate(path, {"a": [1, {"b": None}]})  # whatever parses evaluates without error
        return
    assert "position" in message or "empty" in message


@given(json_values, st.sampled_from(["$", "$.*", "$[*]", "$.a", "$.a ? (@ != null)"]))
@settings(max_examples=200, deadline=None)
def test_udfs_over_jsonb_match_the_evaluator(value, text) -> None:
    (_, query, _, out_type), (_, first, _, _) = jsonb_path_udfs()
    column = pa.array([encode_jsonb(value)], pa.binary()).dictionary_encode().cast(DICT_BINARY)
    expected = evaluate(parse_json_path(text), decode_jsonb(encode_jsonb(value)))  # JSONB keys are sorted
    all_matches = query(column, pa.array([text]))
    assert all_matches.type == out_type
    assert decode_jsonb(all_matches[0].as_py()) == expected
    head = first(column, pa.array([text]))[0].as_py()
    assert (None if head is None else decode_jsonb(head)) == (expected[0] if expected else None)


@pytest.mark.parametrize(
    "text",
    [
        "$[?(@.a)]",
        "$.a[?(@.price < 10)]",
        "",
        "a",
        "$.",
        "$[1",
        "$[x]",
        "$ ? (@.a ==)",
        "$ ? (@.a == 1",
        '$."unterminated',
    ],
)
def test_malformed_paths_are_errors(text: str) -> None:
    with pytest.raises(JsonPathError):
        parse_json_path(text)
