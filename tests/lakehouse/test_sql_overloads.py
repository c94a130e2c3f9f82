"""Functions over several property/JSONB types: the right variant for every call of a statement."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sirius.lakehouse._sql_functions import OVERLOADS, new_session_context, register_sql_functions
from sirius.lakehouse._sql_hex_ids import plan_sql
from sirius.lakehouse._sql_jsonb import encode_jsonb
from sirius.lakehouse._sql_overloads import OverloadError, plan_with_overloads

STRUCT = pa.struct([pa.field("key", pa.utf8(), False), pa.field("value", pa.utf8(), False)])
LEGACY = pa.list_(pa.field("Property", STRUCT, False))  # non-null fields, as Micromegas wrote them


@pytest.fixture
def ctx():
    context = new_session_context()
    register_sql_functions(context)
    lists = pa.array([[{"key": "host", "value": "a"}], None, []], LEGACY)
    table = pa.table(
        {
            "legacy": lists,
            "legacy_dict": pa.DictionaryArray.from_arrays(pa.array([0, 0, 1], pa.int32()), lists.drop_null()),
            "large": pa.array([[{"key": "host", "value": "l"}], None, []], pa.large_list(STRUCT)),
            "binary": pa.array([encode_jsonb({"host": "b", "n": {"x": [1, 2]}}), None, encode_jsonb({})], pa.binary()),
            "jsonb": pa.array([encode_jsonb({"host": "j"}), encode_jsonb({}), None]).dictionary_encode(),
            "k": pa.array([1, 2, 3]),
        }
    )
    context.register_record_batches("t", [table.to_batches()])
    return context


def _rows(ctx, sql: str) -> list[dict]:
    return plan_sql(ctx, sql).to_arrow_table().to_pylist()


def test_every_shape_in_one_statement(ctx) -> None:
    rows = _rows(
        ctx,
        "SELECT property_get(legacy, 'host') AS l, property_get(legacy_dict, 'host') AS ld, "
        "property_get(large, 'host') AS lg, property_get(binary, 'host') AS b, property_get(jsonb, 'host') AS j, "
        "properties_length(legacy) AS nl, properties_length(binary) AS nb FROM t ORDER BY k",
    )
    assert rows == [
        {"l": "a", "ld": "a", "lg": "l", "b": "b", "j": "j", "nl": 1, "nb": 2},
        {"l": None, "ld": "a", "lg": None, "b": None, "j": None, "nl": None, "nb": None},
        {"l": None, "ld": None, "lg": None, "b": None, "j": None, "nl": 0, "nb": 0},
    ]


def test_nested_calls_and_filters(ctx) -> None:
    rows = _rows(
        ctx,
        "SELECT k, jsonb_as_i64(jsonb_path_query_first(jsonb_get(binary, 'n'), '$.x[last]')) AS last, "
        "jsonb_format_json(jsonb_get(jsonb_get(binary, 'n'), 'x')) AS x, "
        "property_get(properties_to_jsonb(legacy), 'host') AS via_jsonb "
        "FROM t WHERE property_get(binary, 'host') = 'b' AND property_get(legacy, 'host') = 'a' "
        "ORDER BY property_get(jsonb, 'host')",
    )
    assert rows == [{"k": 1, "last": 2, "x": "[1,2]", "via_jsonb": "a"}]


def test_conversions_round_trip(ctx) -> None:
    rows = _rows(
        ctx,
        "SELECT properties_to_array(properties_to_dict(legacy)) AS back, properties_to_array(legacy_dict) AS arr, "
        "jsonb_format_json(properties_to_jsonb(legacy_dict)) AS j FROM t ORDER BY k",
    )
    assert rows == [
        {"back": [{"key": "host", "value": "a"}], "arr": [{"key": "host", "value": "a"}], "j": '{"host":"a"}'},
        {"back": None, "arr": [{"key": "host", "value": "a"}], "j": '{"host":"a"}'},
        {"back": [], "arr": [], "j": "{}"},
    ]


def test_views_types_plan_once(ctx) -> None:
    plans: list[str] = []

    def plan(context, sql):
        plans.append(sql)
        df = context.sql(sql)
        df.optimized_logical_plan()
        return df

    plan_with_overloads(
        ctx, "SELECT property_get(jsonb, 'host') FROM t WHERE property_get(jsonb, 'a') IS NULL", OVERLOADS, plan
    )
    assert len(plans) == 1
    plans.clear()
    plan_with_overloads(ctx, "SELECT property_get(binary, 'host'), property_get(jsonb, 'host') FROM t", OVERLOADS, plan)
    assert plans[-1] == "SELECT property_get__binary(binary, 'host'), property_get(jsonb, 'host') FROM t"
    assert len(plans) <= 3


def test_unsupported_types_name_the_function(ctx) -> None:
    with pytest.raises(OverloadError, match=r"property_get: unsupported argument type Int64"):
        plan_sql(ctx, "SELECT property_get(k, 'host') FROM t")
    with pytest.raises(OverloadError, match=r"jsonb_path_query: unsupported argument type Utf8"):
        plan_sql(ctx, "SELECT jsonb_path_query('text', '$') FROM t")
