"""Sail (``local-cluster``, 2 workers) gives DataFusion's answers to the query set on the same lake.

The lake is ``test_duckdb_parity``'s small observability lake (one-minute global partitions on a
local store). Sail is started as ``sirius.distributed.SailCluster`` starts it in production: a
child process, driver and workers on 127.0.0.1 (checked here with ``ss``: so the test needs no
network namespace). Every query of ``bench/_query_set.py`` runs through ``SessionFactory`` and
through ``SailEngine`` (Spark SQL rendering of the same query); results compare as in the DuckDB
parity test (multisets unless ordered; floats 1e-9 relative, percentiles 2e-6). Spark timestamps
are microseconds, so DataFusion's nanosecond timestamps are truncated to microseconds before the
comparison (the one documented difference of the Sail views). The JSONB functions, ``jsonb_each``,
a ``view_instance`` and a query range are compared the same way, and a lake on moto S3 is read by
a Sail server given object_store's ``AWS_*`` settings.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sirius.distributed import (
    ClusterError,
    SailCluster,
    SailClusterConfig,
    SailEngine,
    UnreadableStoreError,
    check_cluster_url,
)
from sirius.lakehouse import InMemoryObjectStore, Lakehouse, QueryRange, SessionFactory, decode_jsonb

from .bench_query_set import SMALL, observability_lake, query_set
from .conftest import Harness, LakeEnv, spark_micros


async def _datafusion(h: Harness, sql: str, query_range: QueryRange | None = None) -> pa.Table:
    session = await SessionFactory(h.lake).create(query_range)
    return (await session.sql(sql)).to_arrow_table()


def test_sail_binds_loopback_only(sail: SailCluster) -> None:
    from pyspark.sql import SparkSession

    # The workers start with a session's first job (and stop with the session): look while it is open.
    spark = SparkSession.builder.remote(sail.url).create()
    try:
        assert spark.range(0, 1000, 1, 8).selectExpr("sum(id) AS s").collect()[0]["s"] == 499500
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    finally:
        spark.stop()
    mine = [line.split()[3] for line in listening.splitlines() if f"pid={sail.pid}," in line]
    # The Spark Connect port, the driver's, and one per worker.
    assert len(mine) == 4, listening
    assert all(address.startswith("127.0.0.1:") for address in mine), mine
    log = sail.log_path.read_text()
    assert set(re.findall(r"worker (\d+) is available at 127\.0\.0\.1:", log)) == {"1", "2"}, log[-2000:]


def test_every_query_equals_datafusion(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    engine = SailEngine(sail.url)

    async def scenario(h: Harness) -> dict[str, tuple[pa.Table, pa.Table]]:
        built = await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        results = {}
        for query in query_set.QUERIES:
            ours = await _datafusion(h, query_set.render(query, "sirius", built.parameters))
            theirs = await engine.query(h.lake, query_set.render(query, "sail", built.parameters))
            results[query.name] = (ours, theirs)
        return results

    results = local_lake_env(scenario)
    problems = {}
    for query in query_set.QUERIES:
        ours, theirs = results[query.name]
        assert ours.num_rows > 0, f"{query.name}: empty result proves nothing"
        found = query_set.compare_tables(spark_micros(ours), theirs, ordered=query.ordered, rel=query.tolerance)
        if found:
            problems[query.name] = found
    assert not problems, problems


def test_functions_instances_and_ranges_equal_datafusion(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    engine = SailEngine(sail.url)

    async def scenario(h: Harness) -> dict[str, Any]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        out: dict[str, Any] = {}
        by_route = (
            "SELECT property_get(properties, 'http.route') AS route, properties_length(properties) AS n,"
            " count(*) AS c FROM otel_spans GROUP BY 1, 2"
        )
        out["property_get"] = (await _datafusion(h, by_route), await engine.query(h.lake, by_route))
        as_text = "SELECT jsonb_format_json(jsonb_get(properties, 'http.route')) AS j, count(*) AS c FROM otel_spans GROUP BY 1"
        out["jsonb"] = (await _datafusion(h, as_text), await engine.query(h.lake, as_text))
        props = (await _datafusion(h, "SELECT properties FROM otel_spans")).column(0).to_pylist()
        out["each_expected"] = sorted(
            (k, n) for k, n in _key_counts([decode_jsonb(p) for p in props if p is not None]).items()
        )
        each = "SELECT e.key, count(*) AS c FROM otel_spans, LATERAL jsonb_each(properties) e GROUP BY e.key"
        out["each"] = await engine.query(h.lake, each)
        process = (await _datafusion(h, "SELECT min(process_id) FROM log_entries")).column(0)[0].as_py()
        instance = f"SELECT level, count(*) AS n FROM view_instance('log_entries', '{process}') GROUP BY level"
        out["instance"] = (await _datafusion(h, instance), await engine.query(h.lake, instance))
        window = QueryRange(observability_lake.BASE_NS + 60 * 10**9, observability_lake.BASE_NS + 150 * 10**9)
        counted = "SELECT count(*) AS n, min(time) AS lo, max(time) AS hi FROM log_entries"
        out["range"] = (
            await _datafusion(h, counted, window),
            await engine.query(h.lake, counted, window.to_time_range()),
        )
        everything = await engine.query(h.lake, "SELECT count(*) AS n FROM log_entries")
        out["all"] = everything.column(0)[0].as_py()
        return out

    out = local_lake_env(scenario)
    for name in ("property_get", "jsonb", "instance", "range"):
        ours, theirs = out[name]
        assert ours.num_rows > 0, name
        assert query_set.compare_tables(spark_micros(ours), theirs, ordered=False) == [], name
    routes = [r for r in out["property_get"][1].column("route").to_pylist() if r is not None]
    assert "/api/v1/items/3" in routes
    assert sorted(zip(*out["each"].to_pydict().values(), strict=True)) == out["each_expected"]
    assert out["each_expected"], "the spans carry properties"
    ranged = out["range"][1].column("n")[0].as_py()
    assert 0 < ranged < out["all"]


def test_histograms_equal_datafusion(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    """make_histogram, sum_histograms and the readers give DataFusion's answers on 2 workers."""
    engine = SailEngine(sail.url)
    histogram = "make_histogram(0.0, 100.0, 50, value)"
    # Each histogram is made once (in a subquery): Sail refuses the same aggregate twice in a SELECT.
    by_name = (
        "SELECT name, quantile_from_histogram(h, 0.5) AS p50, quantile_from_histogram(h, 0.99) AS p99,"
        " count_from_histogram(h) AS n, sum_from_histogram(h) AS total"
        f" FROM (SELECT name, {histogram} AS h FROM measures GROUP BY name)"
    )
    # Sail runs a grouped-aggregate pandas UDF only beside others of its kind: count(*) on its own.
    rows = "SELECT name, count(*) AS n FROM measures GROUP BY name"
    summed = (
        "SELECT name, quantile_from_histogram(s, 0.9) AS p90, count_from_histogram(s) AS n,"
        " variance_from_histogram(s) AS var FROM (SELECT name, sum_histograms(h) AS s"
        f" FROM (SELECT name, exe, {histogram} AS h FROM measures GROUP BY name, exe) GROUP BY name)"
    )

    async def scenario(h: Harness) -> tuple[dict[str, tuple[pa.Table, pa.Table]], pa.Table]:
        await observability_lake.build_lake(h.lake, h.clock.set, SMALL)
        out = {sql: (await _datafusion(h, sql), await engine.query(h.lake, sql)) for sql in (by_name, summed)}
        return out, await _datafusion(h, rows)

    out, counted = local_lake_env(scenario)
    for sql, (ours, theirs) in out.items():
        assert ours.num_rows > 1, sql
        # The bins are integers, so quantiles match the percentile tolerance of the query set; the
        # float sums differ only by the order of additions.
        assert query_set.compare_tables(ours, theirs, ordered=False, rel=2e-6) == [], sql
    ours = out[by_name][0].to_pydict()
    assert dict(zip(ours["name"], ours["n"], strict=True)) == dict(zip(*counted.to_pydict().values(), strict=True))
    assert len({round(p, 6) for p in ours["p50"] if p is not None}) > 1, ours["p50"]


def _key_counts(objects: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in objects:
        for key in obj if isinstance(obj, dict) else ():
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_bad_input_is_refused_clearly(pg_dsn: str, sail: SailCluster) -> None:
    with pytest.raises(ValueError, match="expected sc://HOST:PORT"):
        check_cluster_url("grpc://127.0.0.1:50051")

    async def scenario() -> None:
        from sirius.lakehouse import create_pool, migrate

        pool = await create_pool(pg_dsn, max_size=2)
        try:
            await migrate(pool)
            lake = Lakehouse(pool, InMemoryObjectStore())
            with pytest.raises(UnreadableStoreError, match="no location Sail can read"):
                await SailEngine(sail.url).query(lake, "SELECT count(*) FROM log_entries")
        finally:
            await pool.close()

    import asyncio

    asyncio.run(scenario())


def test_a_failing_statement_is_a_cluster_error(local_lake_env: LakeEnv, sail: SailCluster) -> None:
    async def scenario(h: Harness) -> None:
        with pytest.raises(ClusterError, match="Sail failed the statement"):
            await SailEngine(sail.url).query(h.lake, "SELECT no_such_column FROM log_entries")

    local_lake_env(scenario)


def test_sail_reads_partitions_on_s3(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> None:
    """A lake on S3 (moto): Sail reads the partitions at their s3:// URLs with the store's settings."""
    from .conftest import _make_env, write_sample

    s3 = _make_env("s3", pg_dsn, tmp_path, request)
    endpoint = request.getfixturevalue("s3_endpoint")
    settings = {"AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "testing"}
    settings |= {"AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    with SailCluster(SailClusterConfig(workers=2, environment=settings)) as cluster:

        async def scenario(h: Harness) -> tuple[pa.Table, pa.Table, tuple[str, ...]]:
            assert h.store.uri.startswith("s3://")  # type: ignore[attr-defined]
            sample = await write_sample(h)
            sql = (
                "SELECT target, level, count(*) AS n, max(time) AS last"
                f" FROM view_instance('log_entries', '{sample.process_id}') GROUP BY target, level"
            )
            from sirius.distributed import plan_on_sail

            plan = await plan_on_sail(h.lake, sql, None)
            ours = await _datafusion(h, sql)
            return ours, await SailEngine(cluster.url).query(h.lake, sql), plan.views[0].paths

        ours, theirs, paths = s3(scenario)
    assert paths, paths
    assert all(p.startswith("s3://") for p in paths), paths
    assert ours.num_rows > 0
    assert query_set.compare_tables(spark_micros(ours), theirs, ordered=False) == []
