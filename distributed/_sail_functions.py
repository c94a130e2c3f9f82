"""Our SQL functions on Sail: the lakehouse's Arrow kernels behind Spark's pandas UDF and UDTF APIs.

Sail runs Python UDFs on its workers with the PySpark protocol: a pandas UDF gets each argument
as a pandas Series per Arrow batch. Each one here turns its Series back into an Arrow array and
calls the same kernel as the DataFusion sessions (``sirius.lakehouse.jsonb_udfs``), so a JSONB
property set is decoded by the same code whichever engine runs the query. Spark has no dictionary
type: JSONB arrives as ``binary`` (the Parquet column the views write) and dictionary results are
returned as their plain values.

Available: ``property_get`` and ``properties_length`` over JSONB property sets (the views'
shape), ``jsonb_parse``, ``jsonb_get``, ``jsonb_format_json``, ``jsonb_as_string``,
``jsonb_as_f64``, ``jsonb_as_i64``, ``jsonb_object_keys``, ``jsonb_array_length``; the histogram
functions of ``_sail_histograms`` (``make_histogram``, ``sum_histograms`` and their readers) and
of ``_sail_otel_histograms`` (``merge_histograms``, ``histogram_quantile`` with 2 or 3
arguments); the table functions of ``_sail_table_functions`` (``expand_histogram``,
``jsonb_each``, ``jsonb_array_elements`` as UDTFs; ``list_partitions`` and ``list_view_sets``
computed before the statement). ``UNAVAILABLE_ON_SAIL`` lists the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sirius.lakehouse import jsonb_udfs

from ._sail_histograms import HISTOGRAM_FUNCTIONS, register_histogram_functions
from ._sail_otel_histograms import OTEL_HISTOGRAM_FUNCTIONS, register_otel_histogram_functions
from ._sail_table_functions import METADATA_TABLE_FUNCTIONS, ROW_TABLE_FUNCTIONS, register_row_table_functions

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SAIL_FUNCTIONS", "UNAVAILABLE_ON_SAIL", "register_sail_functions"]

UNAVAILABLE_ON_SAIL = (
    "property_get over List<Struct<key, value>> (legacy property lists)",
    "properties_to_jsonb, properties_to_dict, properties_to_array",
    "a histogram as a column is array<double> [start, end, min, max, sum, sum_sq, count, bins...],"
    " not DataFusion's struct; a merge_histograms result is array<double> [bounds..., counts...],"
    " not DataFusion's {bounds, counts} struct",
    "the admin table functions (retire_partitions, materialize_partitions, regenerate_partitions,"
    " list_view_set_definitions), view DDL and the deny list functions: they run under the FlightSQL"
    " server's admin checks",
    "process_spans, perfetto_trace_chunks and parse_block: one process's or one block's sequential"
    " work, nothing to distribute",
    "view_instance as a table function: each call is replaced by a registered view of its partitions",
    "jsonb_path_query, jsonb_path_query_first, the chart functions (rgba, lerp_color, color_scale,"
    " bin_center, lerp, unlerp), get_payload",
)
"""What the DataFusion sessions offer and Sail sessions do not (docs/scaling-out.md lists it)."""


def _spark_type(arrow: pa.DataType) -> str:
    if pa.types.is_dictionary(arrow):
        return _spark_type(arrow.value_type)
    if pa.types.is_list(arrow):
        return f"array<{_spark_type(arrow.value_type)}>"
    names = {pa.utf8(): "string", pa.binary(): "binary", pa.float64(): "double", pa.int64(): "bigint"}
    names[pa.int32()] = "int"
    if arrow not in names:
        raise TypeError(f"no Spark type for {arrow}")
    return names[arrow]


def _arrow_input(series: pd.Series, arrow: pa.DataType) -> pa.Array:
    plain = arrow.value_type if pa.types.is_dictionary(arrow) else arrow
    values = pa.array(series.tolist(), type=plain)
    return values.dictionary_encode().cast(arrow) if pa.types.is_dictionary(arrow) else values


def _pandas_output(result: pa.Array) -> pd.Series:
    import pandas as pd

    if pa.types.is_dictionary(result.type):
        result = result.cast(result.type.value_type)
    return pd.Series(result.to_pylist(), dtype=object)


def _pandas_udf(name: str, kernel: Callable[..., pa.Array], inputs: list[pa.DataType], output: pa.DataType) -> Any:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    # pandas_udf reads its kind from the type hints, so each arity gets a function of its own
    # (hints set as objects: pandas is imported here only, so the package loads without it).
    if len(inputs) == 1:

        def one(first: pd.Series) -> pd.Series:
            return _pandas_output(kernel(_arrow_input(first, inputs[0])))

        body: Callable[..., pd.Series] = one
        one.__annotations__ = {"first": pd.Series, "return": pd.Series}
    elif len(inputs) == 2:

        def two(first: pd.Series, second: pd.Series) -> pd.Series:
            return _pandas_output(kernel(_arrow_input(first, inputs[0]), _arrow_input(second, inputs[1])))

        body = two
        two.__annotations__ = {"first": pd.Series, "second": pd.Series, "return": pd.Series}
    else:  # pragma: no cover - every JSONB kernel takes one or two arguments
        raise TypeError(f"{name}: {len(inputs)} arguments")
    body.__name__ = name
    return pandas_udf(body, _spark_type(output))  # type: ignore[call-overload]


SAIL_FUNCTIONS = (
    *(name for name, *_ in jsonb_udfs()),
    *HISTOGRAM_FUNCTIONS,
    *OTEL_HISTOGRAM_FUNCTIONS,
    *ROW_TABLE_FUNCTIONS,
    *METADATA_TABLE_FUNCTIONS,
)
"""Names of the functions ``register_sail_functions`` adds."""


def _calls(sql: str) -> Callable[[str], bool]:
    """Whether ``sql`` may call a function of that name (a name followed by ``(``, any case)."""
    named = {m.lower() for m in re.findall(r"(?<![\w.])`?([A-Za-z_]\w*)`?\s*\(", sql)}
    return lambda name: name in named


def register_sail_functions(spark: Any, sql: str | None = None) -> None:
    """Register the ported functions on a Spark Connect session (temporary functions).

    With ``sql``, only the functions it names in a call: each registration is a round trip that
    ships the pickled function (about 90 ms for all of them, most of a small statement's cost).
    The metadata table functions are not functions there: ``plan_on_sail`` computes their rows.
    """
    wanted = (lambda _: True) if sql is None else _calls(sql)
    for name, kernel, inputs, output in jsonb_udfs():
        if wanted(name):
            spark.udf.register(name, _pandas_udf(name, kernel, inputs, output))
    register_histogram_functions(spark, wanted)
    register_otel_histogram_functions(spark, wanted)
    register_row_table_functions(spark, wanted)
