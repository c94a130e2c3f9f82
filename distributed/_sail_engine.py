"""Statements on a Sail cluster: a Spark Connect session per statement, views and functions registered.

``SailEngine(url).query(lake, sql, range)`` selects the partitions (``plan_on_sail``, on the
caller's loop), then, in a worker thread, opens a fresh Spark Connect session (temporary views
and functions are per session, so concurrent statements do not see each other's), sets its time
zone to UTC (our timestamps are UTC; Spark would render and parse them in the server's zone),
registers the views and the ported functions, runs the statement and returns its Arrow result.
The dialect is Spark SQL.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._exceptions import ClusterError, EngineUnavailableError
from ._sail_functions import register_sail_functions
from ._sail_views import SailPlan, plan_on_sail, register_plan

if TYPE_CHECKING:
    from sirius.lakehouse import Lakehouse, TimeRange

__all__ = ["SailEngine", "check_cluster_url", "query_cluster"]

_URL = re.compile(r"^sc://[^/\s:]+:\d{1,5}(/.*)?$")


def check_cluster_url(url: str) -> str:
    """``url`` if it is a Spark Connect address (``sc://host:port``), else a clear ``ValueError``."""
    if not _URL.match(url):
        raise ValueError(f"invalid Sail cluster URL {url!r}: expected sc://HOST:PORT, e.g. sc://127.0.0.1:50071")
    return url


class SailEngine:
    """Runs Spark SQL statements over the lakehouse on the Sail cluster at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = check_cluster_url(url)

    async def query(self, lake: Lakehouse, sql: str, query_range: TimeRange | None = None) -> pa.Table:
        """The result of ``sql`` (Spark SQL) over the lakehouse's views.

        Raises:
            EngineUnavailableError: pyspark-client / pysail are not installed.
            UnreadableStoreError: the lakehouse keeps its files in memory.
            ClusterError: the cluster is unreachable or the statement failed there.
            StatementError: a ported table function called wrongly (before the cluster sees it).
            ViewError, MetadataStoreError: as for a DataFusion session.
        """
        plan = await plan_on_sail(lake, sql, query_range)
        return await asyncio.to_thread(self.run, plan)

    def run(self, plan: SailPlan) -> pa.Table:
        """Register ``plan`` on a fresh session and collect its statement (blocking)."""
        spark = self._connect()
        try:
            register_plan(spark, plan)
            register_sail_functions(spark, plan.sql)
            return spark.sql(plan.sql).toArrow()
        except Exception as exc:
            if _is_spark_error(exc):
                raise ClusterError(f"Sail failed the statement: {exc}") from exc
            raise
        finally:
            spark.stop()

    def _connect(self) -> Any:
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise EngineUnavailableError(
                "the Sail engine needs the distributed extra: pip install 'sirius[distributed]'"
            ) from exc
        try:
            spark = SparkSession.builder.remote(self.url).create()
            spark.conf.set("spark.sql.session.timeZone", "UTC")
        except Exception as exc:
            if _is_spark_error(exc):
                raise ClusterError(f"cannot reach the Sail cluster at {self.url}: {exc}") from exc
            raise
        return spark


def query_cluster(sql: str, url: str, query_range: TimeRange | None = None) -> pa.Table:
    """``sql`` on the cluster at ``url`` over the lakehouse the environment names (``sirius query --cluster``).

    The lakehouse is ``MICROMEGAS_SQL_CONNECTION_STRING`` and ``MICROMEGAS_OBJECT_STORE_URI``, as
    for the services; it is opened for this one statement.

    Raises:
        ValueError: a malformed URL.
        ConfigurationError: the environment names no lakehouse.
        DistributedError, ViewError, MetadataStoreError: as ``SailEngine.query``.
    """
    from sirius.lakehouse import Lakehouse, LakehouseConfig, create_pool, open_object_store

    engine = SailEngine(url)
    config = LakehouseConfig.resolve()

    async def run() -> pa.Table:
        pool = await create_pool(config.sql_connection_string, max_size=2)
        store = open_object_store(config.object_store_uri)
        try:
            return await engine.query(Lakehouse(pool, store), sql, query_range)
        finally:
            await store.close()
            await pool.close()

    return asyncio.run(run())


def _is_spark_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("pyspark", "grpc"))
