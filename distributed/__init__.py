"""Distributed queries on Sail: a Spark Connect server with DataFusion execution on its workers.

* ``SailCluster`` / ``SailClusterConfig``: a Sail server in ``local-cluster`` mode on loopback;
* ``SailEngine``: a statement (Spark SQL) over the lakehouse's views on a cluster, with the same
  partition selection as the DataFusion sessions and our functions ported (``SAIL_FUNCTIONS``:
  JSONB, histograms, OTel histograms, table functions; ``UNAVAILABLE_ON_SAIL`` lists what is not);
* ``pack_merged`` / ``unpack_merged``: the ``array<double>`` form of a ``merge_histograms`` result;
* ``SIRIUS_SAIL_CLUSTER``: the cluster the FlightSQL server sends ``x-sirius-engine: sail``
  statements to.

Needs the ``distributed`` extra (``pysail``, ``pyspark-client``).
"""

from __future__ import annotations

from ._environment_variables import SIRIUS_SAIL_CLUSTER, SIRIUS_SAIL_WORKERS
from ._exceptions import ClusterError, DistributedError, EngineUnavailableError, StatementError, UnreadableStoreError
from ._sail_command import default_workers, run_sail_command
from ._sail_engine import SailEngine, check_cluster_url, query_cluster
from ._sail_functions import SAIL_FUNCTIONS, UNAVAILABLE_ON_SAIL, register_sail_functions
from ._sail_otel_histograms import pack_merged, unpack_merged
from ._sail_server import SailCluster, SailClusterConfig
from ._sail_table_functions import SailTable
from ._sail_views import SailPlan, SailView, plan_on_sail, register_plan

__all__ = [
    "SAIL_FUNCTIONS",
    "SIRIUS_SAIL_CLUSTER",
    "SIRIUS_SAIL_WORKERS",
    "UNAVAILABLE_ON_SAIL",
    "ClusterError",
    "DistributedError",
    "EngineUnavailableError",
    "SailCluster",
    "SailClusterConfig",
    "SailEngine",
    "SailPlan",
    "SailTable",
    "SailView",
    "StatementError",
    "UnreadableStoreError",
    "check_cluster_url",
    "default_workers",
    "pack_merged",
    "plan_on_sail",
    "query_cluster",
    "register_plan",
    "register_sail_functions",
    "run_sail_command",
    "unpack_merged",
]
