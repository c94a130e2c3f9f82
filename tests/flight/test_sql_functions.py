"""The SQL surface in a bare session: JSONB, properties, histograms, table-function expansion, Perfetto."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from perfetto_reader import parse_trace

from sirius.lakehouse._sql_functions import new_session_context, prepare_sql, register_sql_functions
from sirius.lakehouse._sql_jsonb import (
    DICT_BINARY,
    JsonbError,
    decode_jsonb,
    encode_jsonb,
    jsonb_get_raw,
    properties_to_jsonb_array,
    property_get,
)
from sirius.lakehouse._sql_perfetto import PerfettoTrack, chunk_trace, encode_trace
from sirius.lakehouse._sql_table_functions import SqlEnvironment, expand_table_functions, find_calls

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_jsonb_round_trip(value) -> None:
    assert decode_jsonb(encode_jsonb(value)) == value


def test_jsonb_matches_the_databend_layout() -> None:
    # object header, key entries, value entries, keys, values; keys sorted (jsonb crate / Micromegas)
    assert encode_jsonb({"b": "2", "a": "1"}).hex() == "400000021000000110000001100000011000000161623132"
    assert encode_jsonb(12).hex() == "2000000020000002500c"
    assert encode_jsonb(-1).hex() == "200000002000000240ff"
    assert jsonb_get_raw(encode_jsonb({"a": {"x": [1]}}), "a") == encode_jsonb({"x": [1]})
    assert jsonb_get_raw(encode_jsonb({"a": 1}), "b") is None
    assert math.isnan(decode_jsonb(encode_jsonb(float("nan"))))
    with pytest.raises(JsonbError):
        decode_jsonb(b"\x40\x00\x00\x05")


def test_property_get_is_per_distinct_value() -> None:
    props = properties_to_jsonb_array([{"k": "a"}, None, {"k": "b"}, {"k": "a"}, {}])
    assert len(props.dictionary) == 3  # identical maps share one entry
    out = property_get(props, pa.array(["k"] * 5))
    assert pa.types.is_dictionary(out.type)
    assert out.to_pylist() == ["a", None, "b", "a", None]
    varying = property_get(props, pa.array(["k", "k", "x", "k", "k"]))
    assert varying.to_pylist() == ["a", None, None, "a", None]


@pytest.fixture
def ctx():
    context = new_session_context()
    register_sql_functions(context)
    props = properties_to_jsonb_array([{"thread-name": "main", "n": "1"}, {"thread-name": "io"}])
    table = pa.table({"v": [1.0, 2.0], "properties": props, "raw": ['{"a": [1, 2.5, "x"], "b": {"c": true}}', "[]"]})
    context.register_record_batches("t", [table.to_batches()])
    return context


def _one(ctx, sql: str):
    return ctx.sql(sql).to_arrow_table().to_pylist()


def test_jsonb_functions(ctx) -> None:
    rows = _one(
        ctx,
        "SELECT property_get(properties, 'thread-name') AS name, properties_length(properties) AS n, "
        "jsonb_format_json(jsonb_get(jsonb_parse(raw), 'a')) AS a, jsonb_array_length(jsonb_get(jsonb_parse(raw), 'a')) AS len, "
        "jsonb_as_f64(jsonb_parse('2.5')) AS f, jsonb_as_i64(jsonb_parse('7')) AS i, "
        "jsonb_as_string(jsonb_parse('\"s\"')) AS s, jsonb_object_keys(jsonb_parse(raw)) AS keys FROM t",
    )
    assert rows[0] == {
        "name": "main",
        "n": 2,
        "a": '[1,2.5,"x"]',
        "len": 3,
        "f": 2.5,
        "i": 7,
        "s": "s",
        "keys": ["a", "b"],
    }
    assert rows[1]["keys"] is None
    assert rows[1]["a"] is None


def test_histograms(ctx) -> None:
    values = pa.table({"x": pa.array(np.concatenate([np.arange(100.0), [-5.0, 500.0]]))})
    ctx.register_record_batches("h", [values.to_batches(max_chunksize=7)])
    [row] = _one(
        ctx,
        "SELECT count_from_histogram(h) AS c, sum_from_histogram(h) AS s, quantile_from_histogram(h, 0.5) AS median, "
        "variance_from_histogram(h) AS var, h FROM (SELECT make_histogram(0.0, 100.0, 10, x) AS h FROM h)",
    )
    assert row["c"] == 102
    assert row["s"] == sum(range(100)) + 495
    assert row["h"]["bins"][0] == 11  # -5 lands in the first bin
    assert row["h"]["bins"][-1] == 11  # 500 in the last
    assert 45 <= row["median"] <= 55
    x = values["x"].to_numpy()
    assert row["var"] == pytest.approx(x.var())
    [merged] = _one(
        ctx,
        "SELECT sum_histograms(h) AS h FROM (SELECT make_histogram(0.0, 100.0, 10, x) AS h FROM h GROUP BY x > 50)",
    )
    assert merged["h"]["bins"] == row["h"]["bins"]
    expanded = _one(
        ctx,
        expand_table_functions(
            ctx, "SELECT * FROM expand_histogram((SELECT make_histogram(0.0, 100.0, 10, x) FROM h))", SqlEnvironment()
        ),
    )
    assert [r["bin_center"] for r in expanded] == [5.0 + 10 * i for i in range(10)]
    assert sum(r["count"] for r in expanded) == 102


def test_find_calls_skips_strings_comments_and_identifiers() -> None:
    sql = (
        "SELECT 'expand_histogram(1)' AS s, \"expand_histogram\"(x) -- expand_histogram(2)\n"
        "FROM expand_histogram((SELECT f(1, ')') FROM t)) /* list_partitions() */ JOIN list_partitions() p ON true"
    )
    calls = find_calls(sql, {"expand_histogram", "list_partitions"})
    assert [(c.name, c.args) for c in calls] == [
        ("expand_histogram", ("(SELECT f(1, ')') FROM t)",)),
        ("list_partitions", ()),
    ]


def test_retire_by_metadata_arity_rename() -> None:
    assert prepare_sql(
        "SELECT retire_partition_by_metadata(a, b, c, d), retire_partition_by_metadata(a, b, c, d, e)"
    ) == ("SELECT retire_partition_by_metadata__4(a, b, c, d), retire_partition_by_metadata(a, b, c, d, e)")


def test_jsonb_each_and_schema_only(ctx) -> None:
    sql = 'SELECT key, jsonb_format_json(value) AS v FROM jsonb_each(jsonb_parse(\'{"b": 2, "a": [1]}\')) ORDER BY key'
    assert _one(ctx, expand_table_functions(ctx, sql, SqlEnvironment())) == [
        {"key": "a", "v": "[1]"},
        {"key": "b", "v": "2"},
    ]
    # prepared statements: the schema, no execution of the function
    schema_only = expand_table_functions(
        ctx, "SELECT * FROM expand_histogram((SELECT 1/0))", SqlEnvironment(schema_only=True)
    )
    assert ctx.sql(schema_only).schema().names == ["bin_center", "count"]


def test_perfetto_encoding_is_a_valid_trace() -> None:
    begin = np.array([0, 0, 10, 30, 30, 50], dtype=np.int64)
    end = np.array([40, 10, 20, 30, 30, 60], dtype=np.int64)  # nested, adjacent and zero-length spans
    depth = np.array([0, 1, 1, 1, 2, 0], dtype=np.uint32)
    track = PerfettoTrack(
        uuid=7,
        thread_name="main",
        tid=3,
        begin_ns=begin,
        end_ns=end,
        depth=depth,
        name_codes=np.array([0, 1, 1, 2, 2, 0]),
        names=["outer", "inner", "instant"],
        target_codes=np.zeros(6, dtype=np.int64),
        targets=["app"],
    )
    empty_async = PerfettoTrack(
        8, None, 0, *(np.empty(0, dtype=np.int64),) * 3, np.empty(0, np.int64), [], np.empty(0, np.int64), []
    )
    trace, ends = encode_trace("process-1", "/bin/app", [track, empty_async])
    parsed = parse_trace(trace)
    assert parsed.process_name == "/bin/app"
    assert parsed.thread_tracks[7] == {"thread_name": "main", "tid": 3}
    assert parsed.async_tracks == {8: "Async Operations"}
    assert parsed.slices == 6
    assert parsed.max_open_depth == 3
    chunks = chunk_trace(trace, ends, chunk_bytes=64)
    assert len(chunks) > 1
    assert b"".join(chunks) == trace
    for chunk in chunks:
        parse_trace_packets = chunk  # each chunk holds whole packets
        assert parse_trace_packets[:1] == b"\x0a"


def test_dictionary_binary_input_type() -> None:
    ctx = new_session_context()
    register_sql_functions(ctx)
    assert ctx.sql(
        "SELECT property_get(arrow_cast(jsonb_parse('{\"k\": \"v\"}'), 'Dictionary(Int32, Binary)'), 'k') AS v"
    ).to_arrow_table()["v"].to_pylist() == ["v"]
    assert pa.dictionary(pa.int32(), pa.binary()) == DICT_BINARY
