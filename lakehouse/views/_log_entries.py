"""``log_entries``: one row per log event of blocks tagged ``log`` (global and per process).

Message, target and level follow ``micromegas-wire.md`` §5.6: ``LogStaticStrEvent`` takes its
descriptor's ``fmt_str``; interop events carry their own level and target; ``TaggedLogString``
properties may override ``target`` and ``level`` (as text such as ``warn``). Events without
properties get the empty JSONB object. Per block, each object type is handled as a whole
(columns from the transit reader, references resolved with numpy lookups), then rows are put
back into queue order.

OTLP blocks (``_otel_logs``): log records of ``otlp/v1/logs`` streams, and the ``exception``
events of spans of ``otlp/v1/traces`` streams (tag ``trace``, read as well). Sirius appends
``trace_id`` and ``span_id`` columns after Micromegas's (null for native events), then
``service_name`` (``_columns.service_name_of``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ...tracing.transit import TRANSIT_FORMAT
from .._block_source import SourceBatch
from .._otlp_payloads import OTLP_LOGS_FORMAT, OTLP_TRACES_FORMAT
from .._parquet_files import MAX_ROW_GROUP_ROWS
from .._property_jsonb import PropertyDictionary
from .._tick_converter import TickConverter
from .._time_range import NS_PER_HOUR
from .._transit_reader import POSITION, DecodedBlock
from .._view_set import DICT_BIN, DICT_STR, TIMESTAMP, BlockViewSet, InstanceKind, TableMaker
from ._columns import (
    BLOCK_CONTEXT_FIELDS,
    PROCESS_PROPERTIES_FIELD,
    SERVICE_NAME_FIELD,
    BlockRows,
    concat_dictionary_strings,
    null_column,
    timestamps,
)
from ._otel_logs import exception_log_entries, otlp_log_entries

__all__ = ["LOG_ENTRIES_SCHEMA", "LogEntriesView"]

LOG_ENTRIES_SCHEMA = pa.schema(
    [
        *BLOCK_CONTEXT_FIELDS,
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("target", DICT_STR, nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("msg", pa.string(), nullable=False),
        pa.field("properties", DICT_BIN, nullable=False),
        PROCESS_PROPERTIES_FIELD,
        # Sirius: the OTel record's trace and span ids (null for native events), for joins with otel_spans.
        pa.field("trace_id", pa.binary(16)),
        pa.field("span_id", pa.binary(8)),
        # Sirius: the process's service (OTel service.name, else the service.name property, else exe).
        SERVICE_NAME_FIELD,
    ]
)

_LEVELS = {"fatal": 1, "error": 2, "warn": 3, "warning": 3, "info": 4, "debug": 5, "trace": 6}
_LOG_TYPES = frozenset(
    {
        "LogStaticStrEvent",
        "LogStringEvent",
        "LogStringEventV2",
        "LogStaticStrInteropEvent",
        "LogStringInteropEventV2",
        "LogStringInteropEventV3",
        "TaggedLogString",
        "TaggedLogInteropEvent",
    }
)


def _level_of(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    return _LEVELS.get(text, 0)


@dataclass(slots=True)
class _Pieces:
    position: list[npt.NDArray[np.int64]]
    ticks: list[npt.NDArray[np.int64]]
    level: list[npt.NDArray[np.int32]]
    target: list[pa.Array]
    msg: list[pa.Array]
    props: list[npt.NDArray[np.int32]]


def _overrides(decoded: DecodedBlock, props: PropertyDictionary) -> tuple[npt.NDArray[np.uint64], ...]:
    """Sorted set ids, their dictionary indices, level overrides (0 = none), target override flags."""
    sets = decoded.dependencies.property_sets
    ids, indices = props.intern_sets(sets)
    values = [sets[int(i)] for i in ids.tolist()]
    levels = np.array([_level_of(v.get("level", "")) for v in values], dtype=np.int32)
    return ids, indices, levels


def _rows_of_block(decoded: DecodedBlock, props: PropertyDictionary) -> _Pieces:
    deps = decoded.dependencies
    pieces = _Pieces([], [], [], [], [], [])
    set_ids, set_indices, set_levels = _overrides(decoded, props)
    set_targets = pa.array([deps.property_sets[int(i)].get("target") for i in set_ids.tolist()], type=pa.string())
    for name, table in decoded.tables.items():
        if name not in _LOG_TYPES or table.num_rows == 0:
            continue
        refs = set(decoded.reference_columns.get(name, ()))
        n = table.num_rows
        if "desc" in table.column_names:
            # One lookup for every field; targets stay codes into the descriptors' few texts.
            records = deps.record_indices(table.column("desc").to_numpy(), "desc")
            level = deps.field_of_records(records, "level").cast(pa.int32()).to_numpy(zero_copy_only=False)
            target = deps.field_of_records(records, "target")
        else:
            level = table.column("level").to_numpy().astype(np.int32)
            target = deps.resolve_strings(table.column("target").to_numpy())
        if "msg" not in table.column_names:
            msg = deps.field_of_records(records, "fmt_str")
        elif "msg" in refs:
            msg = deps.resolve_strings(table.column("msg").to_numpy())
        else:
            msg = table.column("msg").combine_chunks()
        prop_index = np.zeros(n, dtype=np.int32)
        if "properties" in table.column_names:
            k = np.searchsorted(set_ids, table.column("properties").to_numpy())
            prop_index = set_indices[k]
            override = set_levels[k]
            level = np.where(override > 0, override, level).astype(np.int32)
            target_override = set_targets.take(pa.array(k))
            target = pc.if_else(pc.is_valid(target_override), target_override, target.cast(pa.string()))
        pieces.position.append(table.column(POSITION).to_numpy())
        pieces.ticks.append(table.column("time").to_numpy().astype(np.int64))
        pieces.level.append(np.asarray(level, dtype=np.int32))
        pieces.target.append(target)
        pieces.msg.append(msg.cast(pa.string()))  # static messages come dictionary-coded
        pieces.props.append(prop_index)
    return pieces


class LogEntriesView(BlockViewSet):
    """Log events; global (daemon, group 2000) and per process (JIT)."""

    name: ClassVar[str] = "log_entries"
    schema: ClassVar[pa.Schema] = LOG_ENTRIES_SCHEMA
    # [6] in Micromegas; [7] since OTLP blocks are read (trace_id/span_id columns, exception
    # events of span blocks): partitions that skipped them are invisible and get rebuilt;
    # [8] since the service_name column and the otel.span.exception rows at Warn.
    file_schema_hash: ClassVar[bytes] = bytes([8])
    update_group: ClassVar[int | None] = 2000
    jit_instance: ClassVar[InstanceKind | None] = InstanceKind.PROCESS
    max_partition_delta_ns: ClassVar[int] = NS_PER_HOUR
    tag: ClassVar[str | None] = "log"
    # Times in queue order and block insert times delta-encode to a byte or two a row: the
    # encoder does less and time queries read less (bench/README.md, bench/etl.py, 2026-12-07).
    delta_columns: ClassVar[tuple[str, ...]] = ("insert_time", "time")
    # Free text and JSONB: no query prunes on their min/max, and the writer's statistics of a
    # dictionary column hash its indices (a unique per write batch).
    no_statistics: ClassVar[tuple[str, ...]] = ("msg", "properties", "process_properties")
    other_tags: ClassVar[tuple[str, ...]] = ("trace",)
    extra_formats: ClassVar[Mapping[str, TableMaker]] = {
        OTLP_LOGS_FORMAT: partial(otlp_log_entries, schema=LOG_ENTRIES_SCHEMA),
        OTLP_TRACES_FORMAT: partial(exception_log_entries, schema=LOG_ENTRIES_SCHEMA),
    }

    def transform_chunks(self, batch: SourceBatch) -> Iterator[pa.Table]:
        """Rows of transit blocks a row group at a time, so the file is encoded while they are made."""
        formats = {batch.streams[b.stream_id].format for b in batch.blocks}
        if not batch.blocks or not formats <= {TRANSIT_FORMAT}:
            yield self.transform_batch(batch)
            return
        # One decoding thread ahead of this one and the encoder's: three busy threads for two
        # cores (two decoders contended for the GIL: best of 5 at load 2, 362 vs 327 ms).
        for part in batch.decoded_chunks(MAX_ROW_GROUP_ROWS, workers=1):
            yield self.transform(part)

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Rows of the transit log blocks of ``batch``.

        Each block's pieces (one per object type) are put in queue order by one gather over the
        whole batch: a message is copied once, from its decoded piece into the column, rather than
        concatenated and reordered per block and concatenated again (fewer copies of the largest
        column, and fewer fresh pages to fault in).
        """
        props = PropertyDictionary()
        counts: list[int] = []
        orders: list[npt.NDArray[np.int64]] = []
        ticks: list[npt.NDArray[np.int64]] = []
        levels: list[npt.NDArray[np.int32]] = []
        targets: list[pa.Array] = []
        msgs: list[pa.Array] = []
        prop_indices: list[npt.NDArray[np.int32]] = []
        converters = []
        offset = 0
        for index, block in enumerate(batch.blocks):
            pieces = _rows_of_block(batch.decode(index), props)
            if not pieces.position:
                counts.append(0)
                continue
            order = np.argsort(np.concatenate(pieces.position), kind="stable")
            orders.append(order + offset)
            offset += order.size
            counts.append(order.size)
            converters.append((batch.processes[block.process_id].converter(), order.size))
            ticks.extend(pieces.ticks)
            levels.extend(pieces.level)
            targets.extend(pieces.target)
            msgs.extend(pieces.msg)
            prop_indices.extend(pieces.props)
        rows = BlockRows(batch, counts)
        total = int(rows.counts.sum())
        empty_i32 = np.empty(0, np.int32)
        order = np.concatenate(orders) if orders else np.empty(0, np.int64)
        take = pa.array(order)
        return pa.table(
            [
                *rows.context_columns(),
                timestamps(_times(np.concatenate(ticks)[order] if ticks else np.empty(0, np.int64), converters)),
                concat_dictionary_strings(targets).take(take),
                pa.array(np.concatenate(levels)[order] if levels else empty_i32, pa.int32()),
                pa.chunked_array(msgs, pa.string()).take(take) if msgs else pa.array([], pa.string()),
                props.column(np.concatenate(prop_indices)[order] if prop_indices else empty_i32),
                rows.process_properties(),
                null_column(total, pa.binary(16)),
                null_column(total, pa.binary(8)),
                rows.service_name(),
            ],
            schema=LOG_ENTRIES_SCHEMA,
        )


def _times(ticks: npt.NDArray[np.int64], converters: list[tuple[TickConverter, int]]) -> npt.NDArray[np.int64]:
    """Unix ns of rows laid out block after block, each block's ticks converted by its process's converter."""
    if len({c for c, _ in converters}) <= 1:
        return converters[0][0].ticks_to_ns(ticks) if converters else ticks
    times = np.empty_like(ticks)
    start = 0
    for converter, size in converters:
        times[start : start + size] = converter.ticks_to_ns(ticks[start : start + size])
        start += size
    return times
