"""``histograms`` (Sirius): one row per OTLP Histogram / ExponentialHistogram data point.

Micromegas drops OTLP histograms; Sirius keeps them whole (``otlp.md`` §10.4): the point's
time and start time, name, unit, scope (``target``), kind (``explicit`` / ``exponential``),
temporality (``delta`` / ``cumulative`` / ``unspecified``), count, sum, min, max, the explicit
``bounds`` and bucket ``counts`` (``len(counts) = len(bounds) + 1``; derived for exponential
points), and the exponential layout as sent (``scale``, ``zero_count``, ``zero_threshold``,
``pos_offset``/``pos_counts``, ``neg_offset``/``neg_counts``; NULL for explicit points).
``histogram_quantile(bounds, counts, q)`` estimates quantiles from either kind.

Sirius columns after ``process_properties``: ``delta_counts`` (what the point adds to its
series, in the layout of ``bounds``, whatever the temporality; NULL when unknown; see
``_otel_histograms``) and ``service_name``. Over a time window::

    SELECT service_name, histogram_quantile(merge_histograms(bounds, delta_counts), 0.99) AS p99
    FROM histograms WHERE name = 'http.server.duration' GROUP BY service_name

Global (daemon, group 2000) and per process (JIT), from blocks of ``otlp/v1/metrics`` streams
(only those are read: the source count is their ``nb_objects``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from .._block_source import SourceBatch
from .._otlp_payloads import OTLP_METRICS_FORMAT
from .._time_range import NS_PER_HOUR
from .._view_set import DICT_BIN, DICT_STR, TIMESTAMP, BlockViewSet, InstanceKind, TableMaker, schema_hash
from ._columns import BLOCK_CONTEXT_FIELDS, PROCESS_PROPERTIES_FIELD, SERVICE_NAME_FIELD
from ._otel_histograms import otlp_histograms, prepare_histogram_history

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = ["HISTOGRAMS_SCHEMA", "HistogramsView"]

HISTOGRAMS_SCHEMA = pa.schema(
    [
        *BLOCK_CONTEXT_FIELDS,
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("start_time", TIMESTAMP),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("name", DICT_STR, nullable=False),
        pa.field("unit", DICT_STR, nullable=False),
        pa.field("kind", DICT_STR, nullable=False),
        pa.field("temporality", DICT_STR, nullable=False),
        pa.field("count", pa.uint64(), nullable=False),
        pa.field("sum", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("bounds", pa.list_(pa.float64()), nullable=False),
        pa.field("counts", pa.list_(pa.uint64()), nullable=False),
        pa.field("scale", pa.int32()),
        pa.field("zero_count", pa.uint64()),
        pa.field("zero_threshold", pa.float64()),
        pa.field("pos_offset", pa.int32()),
        pa.field("pos_counts", pa.list_(pa.uint64())),
        pa.field("neg_offset", pa.int32()),
        pa.field("neg_counts", pa.list_(pa.uint64())),
        pa.field("properties", DICT_BIN, nullable=False),
        PROCESS_PROPERTIES_FIELD,
        pa.field("delta_counts", pa.list_(pa.uint64())),
        SERVICE_NAME_FIELD,
    ]
)


class HistogramsView(BlockViewSet):
    """OTLP histogram points; global (daemon, group 2000) and per process (JIT)."""

    name: ClassVar[str] = "histograms"
    schema: ClassVar[pa.Schema] = HISTOGRAMS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(HISTOGRAMS_SCHEMA)
    update_group: ClassVar[int | None] = 2000
    jit_instance: ClassVar[InstanceKind | None] = InstanceKind.PROCESS
    max_partition_delta_ns: ClassVar[int] = NS_PER_HOUR
    tag: ClassVar[str | None] = "metrics"
    formats: ClassVar[tuple[str, ...]] = (OTLP_METRICS_FORMAT,)
    extra_formats: ClassVar[Mapping[str, TableMaker]] = {
        OTLP_METRICS_FORMAT: partial(otlp_histograms, schema=HISTOGRAMS_SCHEMA)
    }

    async def prepare_batch(self, lake: Lakehouse, batch: SourceBatch) -> None:
        """Decode the OTLP metric blocks and find the earlier points of their cumulative series."""
        await prepare_histogram_history(lake, batch)

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Native (transit) blocks hold no histograms."""
        del batch
        return HISTOGRAMS_SCHEMA.empty_table()
