"""Sirius lakehouse: PostgreSQL metadata, object store, transit reader, views and ETL."""

from __future__ import annotations

from ._audience_scope import (
    AUDIENCE_PROPERTY,
    PUBLIC_AUDIENCE,
    ReadScope,
    SessionAudience,
    audience_of_session,
    unstamped_audience_from_env,
)
from ._block_source import BlockFilter, block_object_key
from ._config import LakehouseConfig
from ._context_pool import PoolCounters
from ._datalake import BlockRecord, DataLake, ProcessRecord, StreamRecord
from ._environment_variables import (
    MICROMEGAS_OBJECT_STORE_URI,
    MICROMEGAS_SQL_CONNECTION_STRING,
    SIRIUS_ICEBERG,
    SIRIUS_ICEBERG_NAMESPACE,
)
from ._exceptions import (
    ConfigurationError,
    CorruptBlockError,
    IcebergError,
    LakehouseError,
    MetadataStoreError,
    MigrationError,
    ObjectNotFoundError,
    ObjectStoreError,
    ViewError,
)
from ._iceberg_catalog import IcebergConfig, TableSummary, table_summaries
from ._iceberg_publisher import IcebergPublisher, PublishReport, TablePublish, publisher_from_env
from ._lakehouse import EtlStats, Lakehouse, LakehouseSettings
from ._maintenance_daemon import DaemonConfig, MaintenanceDaemon, PassKind, PassReport
from ._materialize import jit_update, materialize_partitions
from ._migrations import (
    DATA_LAKE_SCHEMA_VERSION,
    LAKEHOUSE_SCHEMA_VERSION,
    SIRIUS_SCHEMA_VERSION,
    migrate,
    schema_versions,
)
from ._object_store import InMemoryObjectStore, LocalObjectStore, ObjectStore, open_object_store
from ._otlp_payloads import OTLP_LOGS_FORMAT, OTLP_METRICS_FORMAT, OTLP_TRACES_FORMAT
from ._partition_admin import (
    LakehousePartitionAdmin,
    partitions_table,
    retire_partition_by_file,
    retire_partition_by_metadata,
    retire_partitions,
    view_set_infos,
)
from ._partition_update import Action, UpdateResult, update_partition
from ._partitions import Partition, list_partitions, partitions_for_query
from ._pool import create_pool
from ._property_jsonb import encode_properties
from ._query_audit import QueryAuditLog, QueryAuditRecord
from ._query_deny_list import MATCH_COLUMNS, DenyList, DenyRule, MatchExpressionError, sql_fingerprint
from ._query_deny_sql import deny_list_table_functions, deny_list_udfs
from ._query_session import (
    QueryRange,
    QuerySession,
    SessionFactory,
    SessionSettings,
    find_view_instance_calls,
    substitute_view_instance_calls,
)
from ._read_only_sql import read_only_sql
from ._retention import RetentionReport, apply_retention, delete_expired_temporary_files
from ._sql_admin import InMemoryPartitionAdmin, PartitionAdmin, ViewSetRecord
from ._sql_bucket_histograms import histogram_quantile
from ._sql_functions import new_session_context, prepare_sql, register_sql_functions
from ._sql_hex_ids import plan_sql
from ._sql_histogram_merge import MergeHistogramsAccumulator
from ._sql_histograms import (
    HISTOGRAM_TYPE,
    HistogramAccumulator,
    SumHistogramsAccumulator,
    expand_histogram_table,
    histogram_scalar_udfs,
)
from ._sql_jsonb import decode_jsonb, jsonb_array_elements_table, jsonb_each_table, jsonb_udfs, to_json_text
from ._sql_parameters import ParameterError, bind_parameters
from ._sql_table_functions import SqlEnvironment, expand_table_functions, find_calls, table_functions
from ._tick_converter import TickConverter, estimate_frequency
from ._time_range import TimeRange
from ._transit_dependencies import Dependencies
from ._transit_reader import POSITION, DecodedBlock, decode_block, decode_queues
from ._view_set import GLOBAL_INSTANCE, BlockViewSet, InstanceKind, ViewRegistry, ViewSet, ViewSetInfo
from .views import default_view_sets

__all__ = [
    "AUDIENCE_PROPERTY",
    "DATA_LAKE_SCHEMA_VERSION",
    "GLOBAL_INSTANCE",
    "HISTOGRAM_TYPE",
    "LAKEHOUSE_SCHEMA_VERSION",
    "MATCH_COLUMNS",
    "MICROMEGAS_OBJECT_STORE_URI",
    "MICROMEGAS_SQL_CONNECTION_STRING",
    "OTLP_LOGS_FORMAT",
    "OTLP_METRICS_FORMAT",
    "OTLP_TRACES_FORMAT",
    "POSITION",
    "PUBLIC_AUDIENCE",
    "SIRIUS_ICEBERG",
    "SIRIUS_ICEBERG_NAMESPACE",
    "SIRIUS_SCHEMA_VERSION",
    "Action",
    "BlockFilter",
    "BlockRecord",
    "BlockViewSet",
    "ConfigurationError",
    "CorruptBlockError",
    "DaemonConfig",
    "DataLake",
    "DecodedBlock",
    "DenyList",
    "DenyRule",
    "Dependencies",
    "EtlStats",
    "HistogramAccumulator",
    "IcebergConfig",
    "IcebergError",
    "IcebergPublisher",
    "InMemoryObjectStore",
    "InMemoryPartitionAdmin",
    "InstanceKind",
    "Lakehouse",
    "LakehouseConfig",
    "LakehouseError",
    "LakehousePartitionAdmin",
    "LakehouseSettings",
    "LocalObjectStore",
    "MaintenanceDaemon",
    "MatchExpressionError",
    "MergeHistogramsAccumulator",
    "MetadataStoreError",
    "MigrationError",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "ParameterError",
    "Partition",
    "PartitionAdmin",
    "PassKind",
    "PassReport",
    "PoolCounters",
    "ProcessRecord",
    "PublishReport",
    "QueryAuditLog",
    "QueryAuditRecord",
    "QueryRange",
    "QuerySession",
    "ReadScope",
    "RetentionReport",
    "SessionAudience",
    "SessionFactory",
    "SessionSettings",
    "SqlEnvironment",
    "StreamRecord",
    "SumHistogramsAccumulator",
    "TablePublish",
    "TableSummary",
    "TickConverter",
    "TimeRange",
    "UpdateResult",
    "ViewError",
    "ViewRegistry",
    "ViewSet",
    "ViewSetInfo",
    "ViewSetRecord",
    "apply_retention",
    "audience_of_session",
    "bind_parameters",
    "block_object_key",
    "create_pool",
    "decode_block",
    "decode_jsonb",
    "decode_queues",
    "default_view_sets",
    "delete_expired_temporary_files",
    "deny_list_table_functions",
    "deny_list_udfs",
    "encode_properties",
    "estimate_frequency",
    "expand_histogram_table",
    "expand_table_functions",
    "find_calls",
    "find_view_instance_calls",
    "histogram_quantile",
    "histogram_scalar_udfs",
    "jit_update",
    "jsonb_array_elements_table",
    "jsonb_each_table",
    "jsonb_udfs",
    "list_partitions",
    "materialize_partitions",
    "migrate",
    "new_session_context",
    "open_object_store",
    "partitions_for_query",
    "partitions_table",
    "plan_sql",
    "prepare_sql",
    "publisher_from_env",
    "read_only_sql",
    "register_sql_functions",
    "retire_partition_by_file",
    "retire_partition_by_metadata",
    "retire_partitions",
    "schema_versions",
    "sql_fingerprint",
    "substitute_view_instance_calls",
    "table_functions",
    "table_summaries",
    "to_json_text",
    "unstamped_audience_from_env",
    "update_partition",
    "view_set_infos",
]
