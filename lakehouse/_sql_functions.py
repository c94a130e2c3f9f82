"""SQL functions registered in every DataFusion session (property_get, jsonb_*, histograms, …).

The session factory calls :func:`register_sql_functions` once per session it builds, with the
query's context (caller rights, partition store, event-loop bridge). Table functions that must
run before planning (``expand_histogram``, ``process_spans``, the admin functions, …) are not
registered here: the query server expands them (``expand_table_functions``), see
``_sql_table_functions``.

* properties: ``property_get``, ``properties_length``;
* JSONB: ``jsonb_parse``, ``jsonb_get``, ``jsonb_format_json``, ``jsonb_as_string``,
  ``jsonb_as_f64``, ``jsonb_as_i64``, ``jsonb_object_keys``, ``jsonb_array_length`` (and the
  table functions ``jsonb_each``, ``jsonb_array_elements``);
* histograms: ``make_histogram``, ``sum_histograms`` (aggregates), ``quantile_from_histogram``,
  ``variance_from_histogram``, ``count_from_histogram``, ``sum_from_histogram`` (and the table
  function ``expand_histogram``); ``histogram_quantile(bounds, counts, q)`` over the bucketed
  OTel histograms of the ``histograms`` view, ``merge_histograms(bounds, delta_counts)``
  (aggregate) and ``histogram_quantile(merged, q)`` over a window (``_sql_histogram_merge``);
* properties in any shape: ``properties_to_jsonb``, ``properties_to_dict``,
  ``properties_to_array`` (``_sql_properties``); ``property_get`` and the JSONB functions also
  take ``Binary`` JSONB, ``List<Struct<key, value>>`` and its dictionary (registered variants,
  chosen at planning by ``_sql_overloads``);
* JSONPath: ``jsonb_path_query``, ``jsonb_path_query_first`` (``_sql_jsonpath``);
* charts: ``rgba``, ``lerp_color``, ``color_scale``, ``bin_center``, ``lerp``, ``unlerp``
  (``_sql_visual``);
* blocks: ``get_payload(process_id, stream_id, block_id)`` and the internal
  ``__sirius_parse_block(block_id)`` behind the table function ``parse_block`` (``_sql_blocks``),
  registered when the session has a ``lakehouse`` and ``run_async``;
* admin, for admin callers only: ``retire_partition_by_file(path)``,
  ``retire_partition_by_metadata(view_set, instance, begin, end[, schema_hash])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import datafusion
import pyarrow as pa
from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, udaf, udf

from . import _sql_blocks as blocks
from . import _sql_histograms as histograms
from ._audience_scope import SessionAudience, audience_of_session
from ._sql_admin import PartitionAdmin
from ._sql_blocks import PARSE_BLOCK_UDF
from ._sql_bucket_histograms import bucket_histogram_udfs
from ._sql_histogram_merge import (
    MERGED_HISTOGRAM_QUANTILE,
    MergeHistogramsAccumulator,
    merge_histogram_udfs,
    merge_histograms_udaf_args,
)
from ._sql_jsonb import jsonb_udfs
from ._sql_jsonpath import jsonb_path_udfs
from ._sql_properties import properties_udfs, variant_udfs
from ._sql_text import rename_calls_by_arity
from ._sql_visual import visual_udfs

if TYPE_CHECKING:
    from ._sql_table_functions import RunAsync

__all__ = [
    "ARITY_RENAMES",
    "OVERLOADS",
    "PARSE_BLOCK_UDF",
    "new_session_context",
    "prepare_sql",
    "register_sql_functions",
]

_TS_NAIVE = pa.timestamp("ns")
_RETIRE_BY_METADATA_4 = "retire_partition_by_metadata__4"

ARITY_RENAMES: dict[tuple[str, int], str] = {
    ("retire_partition_by_metadata", 4): _RETIRE_BY_METADATA_4,
    ("histogram_quantile", 2): MERGED_HISTOGRAM_QUANTILE,
}
"""SQL names with several arities: DataFusion-python UDFs have one signature each."""


_JSONB_UDFS = jsonb_udfs() + jsonb_path_udfs() + properties_udfs()
_VARIANT_UDFS = variant_udfs(_JSONB_UDFS)

OVERLOADS: dict[str, set[str]] = {}
"""Function name → the suffixes of its other-type variants (``binary``, ``list``, ``dict_list``)."""
for _name in (variant[0] for variant in _VARIANT_UDFS):
    _base, _suffix = _name.split("__", 1)
    OVERLOADS.setdefault(_base, set()).add(_suffix)


def new_session_context(
    *,
    memory_limit_bytes: int | None = None,
    target_partitions: int | None = None,
    batch_size: int | None = None,
    options: Mapping[str, str] | None = None,
    context_class: type[SessionContext] = SessionContext,
) -> SessionContext:
    """A session configured like Micromegas's (``information_schema`` on, page index off).

    Args:
        memory_limit_bytes: size of the query's fair spill pool; exceeding it fails the query
            with DataFusion's "Resources exhausted" (None: unbounded).
        target_partitions: DataFusion parallelism (default: number of cores).
        batch_size: rows per record batch (default DataFusion's 8192).
        options: further ``datafusion.*`` settings.
        context_class: ``SessionContext`` or a subclass (the context pool's ``PooledContext``).

    Returns:
        A fresh ``SessionContext`` with no tables and no Sirius functions.
    """
    config = (
        SessionConfig()
        .with_information_schema(True)
        .set("datafusion.execution.parquet.enable_page_index", "false")
        .set("datafusion.sql_parser.collect_spans", "true")
        # Strings as Utf8 (the views' declared type), not Utf8View: results go to clients
        # without a conversion copy.
        .set("datafusion.execution.parquet.schema_force_view_types", "false")
    )
    for key, value in (options or {}).items():
        config = config.set(key, value)
    if target_partitions:
        config = config.with_target_partitions(target_partitions)
    if batch_size:
        config = config.with_batch_size(batch_size)
    runtime = RuntimeEnvBuilder()
    if memory_limit_bytes:
        runtime = runtime.with_fair_spill_pool(int(memory_limit_bytes))
    return context_class(config, runtime)


def _admin_udfs(partitions: PartitionAdmin, run_async: RunAsync) -> list[datafusion.ScalarUDF]:
    def by_file(paths: pa.Array) -> pa.Array:
        return pa.array(
            [None if p is None else run_async(partitions.retire_partition_by_file(p)) for p in paths.to_pylist()],
            pa.utf8(),
        )

    def by_metadata(*columns: pa.Array) -> pa.Array:
        view_sets, instances, begins, ends = (c.to_pylist() for c in columns[:4])
        begins_ns = columns[2].cast(pa.int64()).to_pylist()
        ends_ns = columns[3].cast(pa.int64()).to_pylist()
        hashes = columns[4].to_pylist() if len(columns) > 4 else [None] * len(view_sets)
        out: list[str | None] = []
        for view_set, instance, begin, end, begin_ns, end_ns, schema_hash in zip(
            view_sets, instances, begins, ends, begins_ns, ends_ns, hashes, strict=True
        ):
            if None in (view_set, instance, begin, end):
                out.append(None)
                continue
            out.append(
                run_async(partitions.retire_partition_by_metadata(view_set, instance, begin_ns, end_ns, schema_hash))
            )
        return pa.array(out, pa.utf8())

    metadata_args = [pa.utf8(), pa.utf8(), _TS_NAIVE, _TS_NAIVE]
    return [
        udf(by_file, [pa.utf8()], pa.utf8(), "volatile", "retire_partition_by_file"),
        udf(by_metadata, [*metadata_args, pa.binary()], pa.utf8(), "volatile", "retire_partition_by_metadata"),
        udf(by_metadata, metadata_args, pa.utf8(), "volatile", _RETIRE_BY_METADATA_4),
    ]


def _block_udfs(lake: Any, run_async: RunAsync, audience: SessionAudience | None) -> list[datafusion.ScalarUDF]:
    # ``audience``: the session's restriction to its caller's audiences (None: sees everything).
    def get_payload(process_ids: pa.Array, stream_ids: pa.Array, block_ids: pa.Array) -> pa.Array:
        rows = zip(process_ids.to_pylist(), stream_ids.to_pylist(), block_ids.to_pylist(), strict=True)
        return pa.array(
            [None if None in row else run_async(blocks.fetch_payload(lake, *row, audience)) for row in rows],
            pa.binary(),
        )

    def parse(block_ids: pa.Array) -> pa.Array:
        out = []
        for block_id in block_ids.to_pylist():
            parsed = None if block_id is None else run_async(blocks.parse_block(lake, block_id, audience))
            out.append(None if parsed is None else parsed.to_pylist())
        return pa.array(out, blocks.PARSE_BLOCK_TYPE)

    utf8 = pa.utf8()
    return [
        udf(get_payload, [utf8, utf8, utf8], pa.binary(), "volatile", "get_payload"),
        udf(parse, [utf8], blocks.PARSE_BLOCK_TYPE, "volatile", PARSE_BLOCK_UDF),
    ]


def _register_stateless(ctx: SessionContext) -> None:
    for name, fn, inputs, output in _JSONB_UDFS + _VARIANT_UDFS + visual_udfs():
        ctx.register_udf(udf(fn, inputs, output, "immutable", name))
    for name, fn, inputs, output in (
        histograms.histogram_scalar_udfs() + bucket_histogram_udfs() + merge_histogram_udfs()
    ):
        ctx.register_udf(udf(fn, inputs, output, "immutable", name))
    merge_inputs, merged, merge_state = merge_histograms_udaf_args()
    ctx.register_udaf(
        udaf(MergeHistogramsAccumulator, merge_inputs, merged, merge_state, "immutable", "merge_histograms")
    )
    hist = histograms.HISTOGRAM_TYPE
    ctx.register_udaf(
        udaf(
            histograms.HistogramAccumulator,
            [pa.float64(), pa.float64(), pa.int64(), pa.float64()],
            hist,
            [hist],
            "immutable",
            "make_histogram",
        )
    )
    ctx.register_udaf(udaf(histograms.SumHistogramsAccumulator, [hist], hist, [hist], "immutable", "sum_histograms"))


def register_sql_functions(ctx: SessionContext, *, stateless: bool = True, **context: Any) -> None:
    """Register Sirius's scalar and aggregate functions on ``ctx``.

    Args:
        ctx: a ``datafusion.SessionContext``.
        stateless: register the functions that depend on nothing of the session (JSONB,
            histograms, charts …); False when ``ctx`` already has them (a pooled context,
            ``_context_pool.py``), so only the session's own functions below are added.
        **context: what some functions need; all optional:
            ``is_admin`` (bool, default True): register the admin functions;
            ``partitions`` (:class:`PartitionAdmin`): the partition store they act on;
            ``run_async`` (callable): runs a partition-store coroutine to completion from a
            DataFusion worker thread (e.g. ``asyncio.run_coroutine_threadsafe(c, loop).result()``).
            Admin functions are registered only when all three allow it.
    """
    if stateless:
        _register_stateless(ctx)
    partitions = context.get("partitions")
    run_async = context.get("run_async")
    lake = context.get("lakehouse")
    if lake is not None and run_async is not None:
        for block_udf in _block_udfs(lake, run_async, audience_of_session(ctx)):
            ctx.register_udf(block_udf)
    if context.get("is_admin", True) and partitions is not None and run_async is not None:
        for admin_udf in _admin_udfs(partitions, run_async):
            ctx.register_udf(admin_udf)


def prepare_sql(sql: str) -> str:
    """Rewrite the SQL text for the functions DataFusion cannot express directly (arity overloads)."""
    return rename_calls_by_arity(sql, ARITY_RENAMES)
