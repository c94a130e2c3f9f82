"""Sail (``local-cluster``, 2 workers) gives DataFusion's answers for the ported functions.

The OTel histogram functions (``merge_histograms``, ``histogram_quantile`` with two and three
arguments), the table functions run as UDTFs (``expand_histogram`` over a scalar subquery,
``jsonb_array_elements``, ``jsonb_each``) and the metadata table functions (``list_partitions``,
``list_view_sets``) run on the same lake through a DataFusion session (table functions expanded
as the FlightSQL server expands them) and through ``SailEngine``. The cluster is the suite's
``sail`` fixture, started as ``test_sail_parity`` starts it (driver and workers on 127.0.0.1,
checked there with ``ss``).

The OTLP histograms are written as the receivers write them (``split_request``, one block per
request, a daemon pass): explicit points of two layouts (delta and cumulative, so ``delta_counts``
comes from both rules) and an exponential histogram from the real OTel SDK, so the merge also
puts different bounds on their union.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from sirius.distributed import (
    SAIL_FUNCTIONS,
    UNAVAILABLE_ON_SAIL,
    SailCluster,
    SailEngine,
    StatementError,
    pack_merged,
    unpack_merged,
)
from sirius.lakehouse import (
    LakehousePartitionAdmin,
    MaintenanceDaemon,
    PassKind,
    SessionFactory,
    SqlEnvironment,
    expand_table_functions,
)
from sirius.otel_bridge import METRICS

from .bench_query_set import SMALL, observability_lake, query_set
from .conftest import Harness, LakeEnv, spark_micros
from .test_otel_views import T0, T0_NS, S, kv, sdk_exponential_request, store


async def _datafusion(h: Harness, sql: str) -> pa.Table:
    """``sql`` on a DataFusion session, table functions expanded as the FlightSQL server does."""
    session = await SessionFactory(h.lake).create()
    loop = asyncio.get_running_loop()
    env = SqlEnvironment(
        partitions=LakehousePartitionAdmin(h.lake),
        run_async=lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(),
    )
    expanded = await asyncio.to_thread(expand_table_functions, session.ctx, sql, env)
    return (await session.sql(expanded)).to_arrow_table()


def _explicit(service: str, bounds: list[float], counts: list[int], second: float, *, delta: bool) -> Any:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend([kv("service.name", service), kv("service.instance.id", f"{service}-1")])
    metric = resource.scope_metrics.add().metrics.add()
    metric.name, metric.unit = "latency", "ms"
    metric.histogram.aggregation_temporality = 1 if delta else 2
    point = metric.histogram.data_points.add(
        start_time_unix_nano=T0_NS, time_unix_nano=T0_NS + int(second * S), count=sum(counts)
    )
    point.explicit_bounds.extend(bounds)
    point.bucket_counts.extend(counts)
    return request


async def _histogram_lake(h: Harness) -> None:
    fine, coarse = [10.0, 20.0, 30.0, 40.0], [25.0, 50.0]
    await store(h, METRICS, _explicit("shop", fine, [1, 4, 9, 3, 0], 1.0, delta=True), at_second=1.0)
    await store(h, METRICS, _explicit("shop", fine, [0, 2, 5, 8, 1], 2.0, delta=True), at_second=2.0)
    await store(h, METRICS, _explicit("shop", coarse, [3, 6, 2], 3.0, delta=True), at_second=3.0)
    # cumulative: the first point's delta is unknown (NULL), the next ones are differences
    for second, counts in ((1.5, [2, 2, 2]), (2.5, [3, 5, 2]), (3.5, [4, 9, 7])):
        await store(h, METRICS, _explicit("cart", coarse, counts, second, delta=False), at_second=second)
    await store(h, METRICS, sdk_exponential_request(np.arange(1.0, 301.0), max_size=80), at_second=2.0)
    for second in range(1, 5):  # each second pass covers the second before its time
        at = T0 + dt.timedelta(seconds=second + 2.5)
        h.clock.set(at)
        report = await MaintenanceDaemon(h.lake).run_pass(PassKind.SECOND, at)
        assert not report.failures, report.failures


def _merged(table: pa.Table) -> dict[str, tuple[list[float], list[float]] | None]:
    """DataFusion's ``{bounds, counts}`` structs by service."""
    out = {}
    for row in table.to_pylist():
        m = row["m"]
        out[row["service_name"]] = None if m is None else (m["bounds"], m["counts"])
    return out


def _packed(table: pa.Table) -> dict[str, tuple[list[float], list[float]] | None]:
    """Sail's ``[bounds…, counts…]`` arrays by service."""
    out = {}
    for row in table.to_pylist():
        m = row["m"]
        out[row["service_name"]] = None if m is None else (m[: len(m) // 2], m[len(m) // 2 :])
    return out


def test_otel_histogram_functions_equal_datafusion(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    engine = SailEngine(sail.url)
    merged = "SELECT service_name, merge_histograms(bounds, delta_counts) AS m FROM histograms GROUP BY service_name"
    # One merge per SELECT (Sail refuses the same aggregate twice), read outside.
    quantiles = (
        "SELECT service_name, histogram_quantile(m, 0.5) AS p50, histogram_quantile(m, 0.9) AS p90,"
        f" histogram_quantile(m, 0.99) AS p99, histogram_quantile(m, 1.5) AS bad FROM ({merged})"
    )
    per_point = (
        "SELECT service_name, kind, time, histogram_quantile(bounds, counts, 0.5) AS p50,"
        " histogram_quantile(bounds, counts, 0.95) AS p95 FROM histograms"
    )

    async def scenario(h: Harness) -> dict[str, tuple[pa.Table, pa.Table]]:
        await _histogram_lake(h)
        return {
            sql: (await _datafusion(h, sql), await engine.query(h.lake, sql)) for sql in (merged, quantiles, per_point)
        }

    out = local_lake_env(scenario)
    ours, theirs = out[merged]
    expected = _merged(ours)
    assert set(expected) == {"shop", "cart", "exp"}, expected
    assert _packed(theirs) == expected
    assert len(expected["shop"][0]) > 4, "two layouts merged onto the union of their bounds"  # type: ignore[index]
    for sql in (quantiles, per_point):
        ours, theirs = out[sql]
        assert ours.num_rows >= 3, sql
        assert query_set.compare_tables(spark_micros(ours), theirs, ordered=False, rel=1e-12) == [], sql
    p50 = out[quantiles][0].column("p50").to_pylist()
    assert None not in p50, p50
    assert len(set(p50)) == 3, p50
    assert out[quantiles][1].column("bad").to_pylist() == [None, None, None]


def test_table_functions_equal_datafusion(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    engine = SailEngine(sail.url)
    expand = (
        "SELECT bin_center, count FROM expand_histogram("
        "(SELECT make_histogram(0.0, 100.0, 20, value) FROM measures WHERE name = 'cpu.usage'))"
    )
    array = (
        'SELECT jsonb_format_json(value) AS v FROM jsonb_array_elements(jsonb_parse(\'[1, "a", {"b": [2]}, null]\'))'
    )
    not_array = "SELECT count(*) AS n FROM jsonb_array_elements(jsonb_parse('{\"a\": 1}'))"
    each = "SELECT e.key, count(*) AS c FROM otel_spans, LATERAL jsonb_each(properties) e GROUP BY e.key"
    partitions = (
        "SELECT view_set_name, view_instance_id, count(*) AS files, sum(num_rows) AS row_count,"
        " min(min_event_time) AS first_event FROM list_partitions() GROUP BY view_set_name, view_instance_id"
    )
    view_sets = "SELECT view_set_name, has_view_maker, global_instance_available FROM list_view_sets()"
    statements = (expand, array, not_array, partitions, view_sets)

    async def scenario(h: Harness) -> dict[str, tuple[pa.Table, pa.Table]]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        out = {sql: (await _datafusion(h, sql), await engine.query(h.lake, sql)) for sql in statements}
        # DataFusion's jsonb_each runs on one value: compare Sail's LATERAL form with the keys counted here.
        props = (await _datafusion(h, "SELECT properties FROM otel_spans")).column(0).to_pylist()
        from sirius.lakehouse import decode_jsonb

        counts: dict[str, int] = {}
        for p in props:
            for key in decode_jsonb(p) if p is not None else {}:
                counts[key] = counts.get(key, 0) + 1
        out[each] = (pa.table({"key": list(counts), "c": list(counts.values())}), await engine.query(h.lake, each))
        return out

    out = local_lake_env(scenario)
    for sql, (ours, theirs) in out.items():
        if sql != not_array:
            assert ours.num_rows > 0, sql
        assert query_set.compare_tables(spark_micros(ours), theirs, ordered=False) == [], sql
    assert sum(out[expand][1].column("count").to_pylist()) > 0
    assert out[array][1].column("v").to_pylist() == ["1", '"a"', '{"b":[2]}', "null"]
    assert out[not_array][1].column("n").to_pylist() == [0]
    assert {"log_entries", "measures", "otel_spans"} <= set(out[partitions][1].column("view_set_name").to_pylist())


def test_metadata_table_function_with_arguments_is_refused(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    async def scenario(h: Harness) -> None:
        # a DistributedError: the FlightSQL server reports it to the caller as an invalid query
        with pytest.raises(StatementError, match=r"list_partitions takes 0 argument\(s\), got 1"):
            await SailEngine(sail.url).query(h.lake, "SELECT * FROM list_partitions('x')")
        # the engine keeps serving: the next statement runs
        table = await SailEngine(sail.url).query(h.lake, "SELECT count(*) AS n FROM list_view_sets()")
        assert table.column("n")[0].as_py() > 0
        # a lake without partitions: an empty view of list_partitions' columns
        empty = await SailEngine(sail.url).query(h.lake, "SELECT * FROM list_partitions()")
        assert empty.num_rows == 0
        assert "file_path" in empty.column_names

    local_lake_env(scenario)


def test_the_function_lists_say_what_is_ported() -> None:
    ported = {"histogram_quantile", "expand_histogram", "jsonb_array_elements", "list_partitions", "list_view_sets"}
    assert ported | {"merge_histograms", "jsonb_each"} <= set(SAIL_FUNCTIONS)
    missing = " ".join(UNAVAILABLE_ON_SAIL)
    assert not [name for name in ported if name in missing], missing
    assert "merge_histograms result is array<double>" in missing  # its shape differs, it is not missing
    assert "process_spans" in missing
    assert "retire_partitions" in missing


_FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(0, 6).flatmap(
                lambda m: st.tuples(
                    st.lists(_FINITE, min_size=m, max_size=m), st.lists(_FINITE, min_size=m + 1, max_size=m + 1)
                )
            ),
            st.lists(_FINITE, max_size=6).filter(lambda v: len(v) % 2 == 0),  # malformed: even length
        ),
        max_size=8,
    ),
    st.integers(0, 3),
)
def test_packed_merged_histograms_unpack_to_their_bounds_and_counts(rows: list[Any], skip: int) -> None:
    packed = [pack_merged({"bounds": r[0], "counts": r[1]}) if isinstance(r, tuple) else r for r in rows]
    array = pa.array([None] * skip + packed, pa.list_(pa.float64())).slice(skip)  # an offset array, as Arrow slices
    bounds, counts = unpack_merged(array)
    for row, b, c in zip(rows, bounds.to_pylist(), counts.to_pylist(), strict=True):
        assert (b, c) == (row if isinstance(row, tuple) else (None, None))
