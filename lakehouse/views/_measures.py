"""``measures``: one row per metric event of blocks tagged ``metrics`` (global and per process).

Name, unit and target come from the event's ``MetricMetadataDependency``; integer values become
f64; an integer metric whose unit is ``ticks`` is converted to seconds with the process's tick
frequency and reported with unit ``seconds`` (``micromegas-wire.md`` §5.6). Tagged events carry
a property set; the others get the empty JSONB object. Older tagged events without a ``desc``
member take name, unit and target from their properties.

OTLP blocks (``otlp/v1/metrics``, ``_otel_metrics``): gauges, sums, summaries and the counts,
sums, minima and maxima of histograms. Sirius appends a ``delta`` column (the increase a row
stands for: the value of delta sums, derived for cumulative monotonic series; NULL for native
events and gauges), so ``SUM(delta)`` works for both temporalities, then ``service_name``
(``_columns.service_name_of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .._block_source import SourceBatch
from .._otlp_payloads import OTLP_METRICS_FORMAT
from .._property_jsonb import PropertyDictionary
from .._time_range import NS_PER_HOUR
from .._transit_reader import POSITION, DecodedBlock
from .._view_set import DICT_BIN, DICT_STR, TIMESTAMP, BlockViewSet, InstanceKind, TableMaker
from ._columns import (
    BLOCK_CONTEXT_FIELDS,
    PROCESS_PROPERTIES_FIELD,
    SERVICE_NAME_FIELD,
    BlockRows,
    concat_strings,
    dictionary_strings,
    timestamps,
)
from ._otel_metrics import otlp_measures, prepare_history

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["MEASURES_SCHEMA", "MeasuresView"]

MEASURES_SCHEMA = pa.schema(
    [
        *BLOCK_CONTEXT_FIELDS,
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("unit", DICT_STR, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("properties", DICT_BIN, nullable=False),
        PROCESS_PROPERTIES_FIELD,
        # Sirius: increase since the series' previous point (OTel sums and counts), else null.
        pa.field("delta", pa.float64()),
        # Sirius: the process's service (OTel service.name, else the service.name property, else exe).
        SERVICE_NAME_FIELD,
    ]
)

_INTEGER_TYPES = frozenset({"IntegerMetricEvent", "TaggedIntegerMetricEvent"})
_METRIC_TYPES = _INTEGER_TYPES | {"FloatMetricEvent", "TaggedFloatMetricEvent"}


def _from_properties(decoded: DecodedBlock, ids: npt.NDArray[np.uint64], key: str) -> pa.Array:
    sets = decoded.dependencies.property_sets
    return pa.array([sets[int(i)].get(key, "") for i in ids.tolist()], type=pa.string())


def _block_columns(
    decoded: DecodedBlock, props: PropertyDictionary, frequency: int
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], list[pa.Array], npt.NDArray[np.float64], npt.NDArray[np.int32]
]:
    """Queue-ordered ``(order, ticks, [target, name, unit], value, property index)`` of one block."""
    deps = decoded.dependencies
    set_ids, set_indices = props.intern_sets(deps.property_sets)
    positions, ticks, values, prop_index = [], [], [], []
    texts: list[list[pa.Array]] = [[], [], []]
    for type_name, table in decoded.tables.items():
        if type_name not in _METRIC_TYPES or table.num_rows == 0:
            continue
        n = table.num_rows
        has_props = "properties" in table.column_names
        set_of_event = table.column("properties").to_numpy() if has_props else np.empty(0, np.uint64)
        if "desc" in table.column_names:
            desc = table.column("desc").to_numpy()
            target, name, unit = (deps.resolve_field(desc, f).cast(pa.string()) for f in ("target", "name", "unit"))
        else:
            target, name, unit = (_from_properties(decoded, set_of_event, f) for f in ("target", "name", "unit"))
        value = table.column("value").to_numpy().astype(np.float64)
        if type_name in _INTEGER_TYPES:
            is_ticks = pc.equal(unit, "ticks").to_numpy(zero_copy_only=False)
            if is_ticks.any():
                value = np.where(is_ticks, value / max(frequency, 1), value)
                unit = pc.if_else(pa.array(is_ticks), "seconds", unit)
        index = set_indices[np.searchsorted(set_ids, set_of_event)] if has_props else np.zeros(n, np.int32)
        positions.append(table.column(POSITION).to_numpy())
        ticks.append(table.column("time").to_numpy().astype(np.int64))
        for bucket, column in zip(texts, (target, name, unit), strict=True):
            bucket.append(column)
        values.append(value)
        prop_index.append(index.astype(np.int32))
    if not positions:
        empty = np.empty(0, np.int64)
        return empty, empty, [pa.array([], pa.string())] * 3, np.empty(0), np.empty(0, np.int32)
    order = np.argsort(np.concatenate(positions), kind="stable")
    take = pa.array(order)
    return (
        order,
        np.concatenate(ticks)[order],
        [concat_strings(bucket).take(take) for bucket in texts],
        np.concatenate(values)[order],
        np.concatenate(prop_index)[order],
    )


class MeasuresView(BlockViewSet):
    """Metric events; global (daemon, group 2000) and per process (JIT)."""

    name: ClassVar[str] = "measures"
    schema: ClassVar[pa.Schema] = MEASURES_SCHEMA
    # [7] in Micromegas; [8] since OTLP blocks are read (delta column): partitions that
    # skipped them are invisible and get rebuilt; [9] since the service_name column.
    file_schema_hash: ClassVar[bytes] = bytes([9])
    update_group: ClassVar[int | None] = 2000
    jit_instance: ClassVar[InstanceKind | None] = InstanceKind.PROCESS
    max_partition_delta_ns: ClassVar[int] = NS_PER_HOUR
    tag: ClassVar[str | None] = "metrics"
    extra_formats: ClassVar[Mapping[str, TableMaker]] = {
        OTLP_METRICS_FORMAT: partial(otlp_measures, schema=MEASURES_SCHEMA)
    }

    async def prepare_batch(self, lake: Lakehouse, batch: SourceBatch) -> None:
        """Decode OTLP metric blocks and find the earlier points of their cumulative series."""
        await prepare_history(lake, batch)

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Rows of the transit metrics blocks of ``batch``."""
        props = PropertyDictionary()
        counts: list[int] = []
        times: list[npt.NDArray[np.int64]] = []
        texts: list[list[pa.Array]] = [[], [], []]
        values: list[npt.NDArray[np.float64]] = []
        prop_indices: list[npt.NDArray[np.int32]] = []
        for index, block in enumerate(batch.blocks):
            process = batch.processes[block.process_id]
            order, ticks, columns, value, prop_index = _block_columns(batch.decode(index), props, process.frequency)
            counts.append(order.size)
            times.append(process.converter().ticks_to_ns(ticks))
            for bucket, column in zip(texts, columns, strict=True):
                bucket.append(column)
            values.append(value)
            prop_indices.append(prop_index)
        rows = BlockRows(batch, counts)
        target, name, unit = (dictionary_strings(concat_strings(bucket)) for bucket in texts)
        return pa.table(
            [
                *rows.context_columns(),
                timestamps(np.concatenate(times)),
                target,
                name,
                unit,
                pa.array(np.concatenate(values), pa.float64()),
                props.column(np.concatenate(prop_indices)),
                rows.process_properties(),
                pa.nulls(int(rows.counts.sum()), pa.float64()),
                rows.service_name(),
            ],
            schema=MEASURES_SCHEMA,
        )
