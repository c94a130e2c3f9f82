"""The histogram functions on Sail: ``make_histogram``, ``sum_histograms`` and their readers.

``make_histogram`` and ``sum_histograms`` are grouped-aggregate pandas UDFs; the readers
(``quantile_from_histogram``, ``count_from_histogram``, ``sum_from_histogram``,
``variance_from_histogram``) are scalar pandas UDFs. Each one rebuilds the lakehouse's Arrow
histogram struct from its input and calls the DataFusion sessions' own accumulators and kernels,
so the bins, counts and quantiles are the same whichever engine runs the query.

Spark Connect refuses a struct as the result of a grouped-aggregate pandas UDF, so on Sail a
histogram travels as ``array<double>``: ``[start, end, min, max, sum, sum_sq, count, bin_0, …]``
(min and max NaN while the histogram is empty). Every histogram function here reads and writes
that form, so they compose as on DataFusion; a histogram selected as a column is that array
rather than DataFusion's struct. Counts are exact up to 2^53.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sirius.lakehouse import HISTOGRAM_TYPE, HistogramAccumulator, SumHistogramsAccumulator, histogram_scalar_udfs

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HISTOGRAM_FUNCTIONS", "SAIL_HISTOGRAM_TYPE", "register_histogram_functions", "unpack_histogram"]

SAIL_HISTOGRAM_TYPE = "array<double>"
"""The Spark type of a histogram on Sail (see the module docstring for its layout)."""
_HEADER = ("start", "end", "min", "max", "sum", "sum_sq", "count")
_SPARK_TYPES = {pa.float64(): "double", pa.uint64(): "bigint"}


def _pack(histogram: dict[str, Any] | None) -> list[float] | None:
    """The Sail form of one histogram (None stays None)."""
    if histogram is None or histogram.get("bins") is None:
        return None
    header = [math.nan if histogram[name] is None else float(histogram[name]) for name in _HEADER]
    return header + [float(b) for b in histogram["bins"]]


def unpack_histogram(packed: Sequence[float] | None) -> dict[str, Any] | None:
    """The lakehouse struct (as a dict) of one Sail histogram."""
    if packed is None or len(packed) <= len(_HEADER):
        return None
    values = dict(zip(_HEADER, (float(v) for v in packed[: len(_HEADER)]), strict=True))
    empty = values["count"] == 0
    return {
        **values,
        "min": None if empty else values["min"],
        "max": None if empty else values["max"],
        "count": int(values["count"]),
        "bins": [int(b) for b in packed[len(_HEADER) :]],
    }


def _histograms(series: pd.Series) -> pa.Array:
    return pa.array([unpack_histogram(None if v is None else list(v)) for v in series], HISTOGRAM_TYPE)


def _doubles(series: pd.Series) -> pa.Array:
    """A numeric Series as float64 (Spark literals such as ``0.5`` arrive as Decimal objects)."""
    return pa.array(series.astype("float64"), pa.float64(), from_pandas=True)


def _make_histogram(start: pd.Series, end: pd.Series, nb_bins: pd.Series, values: pd.Series) -> list[float] | None:
    accumulator = HistogramAccumulator()
    accumulator.update(
        _doubles(start),
        _doubles(end),
        _doubles(nb_bins).cast(pa.int64()),
        _doubles(values),
    )
    return _pack(accumulator.evaluate().as_py())


def _sum_histograms(histograms: pd.Series) -> list[float] | None:
    accumulator = SumHistogramsAccumulator()
    accumulator.update(_histograms(histograms))
    return _pack(accumulator.evaluate().as_py())


def _reader(name: str, kernel: Callable[..., pa.Array], inputs: list[pa.DataType], output: pa.DataType) -> Any:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    # pandas_udf reads its kind from the type hints, set as objects (pandas is imported here only).
    if len(inputs) == 1:

        def one(histograms: pd.Series) -> pd.Series:
            return pd.Series(kernel(_histograms(histograms)).to_pylist(), dtype=object)

        body: Callable[..., pd.Series] = one
        one.__annotations__ = {"histograms": pd.Series, "return": pd.Series}
    else:

        def two(histograms: pd.Series, argument: pd.Series) -> pd.Series:
            second = _doubles(argument).cast(inputs[1])
            return pd.Series(kernel(_histograms(histograms), second).to_pylist(), dtype=object)

        body = two
        two.__annotations__ = {"histograms": pd.Series, "argument": pd.Series, "return": pd.Series}
    body.__name__ = name
    return pandas_udf(body, _SPARK_TYPES[output])  # type: ignore[call-overload]


def _aggregates() -> dict[str, Any]:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def make_histogram(start: pd.Series, end: pd.Series, nb_bins: pd.Series, values: pd.Series) -> float:
        return _make_histogram(start, end, nb_bins, values)  # type: ignore[return-value]

    def sum_histograms(histograms: pd.Series) -> float:
        return _sum_histograms(histograms)  # type: ignore[return-value]

    # Series arguments and a scalar result make a grouped-aggregate pandas UDF (read from the hints,
    # set as objects: pandas is imported here only). The result is the packed list, not a float.
    make_histogram.__annotations__ = {
        **dict.fromkeys(("start", "end", "nb_bins", "values"), pd.Series),
        "return": float,
    }
    sum_histograms.__annotations__ = {"histograms": pd.Series, "return": float}
    return {f.__name__: pandas_udf(f, SAIL_HISTOGRAM_TYPE) for f in (make_histogram, sum_histograms)}  # type: ignore[call-overload]


HISTOGRAM_FUNCTIONS = ("make_histogram", "sum_histograms", *(name for name, *_ in histogram_scalar_udfs()))
"""Names of the functions ``register_histogram_functions`` adds."""


def register_histogram_functions(spark: Any, wanted: Callable[[str], bool] = lambda _: True) -> None:
    """Register the histogram aggregates and readers (those ``wanted`` by name) on a Spark Connect session."""
    for name, aggregate in _aggregates().items():
        if wanted(name):
            spark.udf.register(name, aggregate)
    for name, kernel, inputs, output in histogram_scalar_udfs():
        if wanted(name):
            spark.udf.register(name, _reader(name, kernel, inputs, output))
