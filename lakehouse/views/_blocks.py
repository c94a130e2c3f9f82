"""``blocks``: a Parquet snapshot of ``blocks ⨝ streams ⨝ processes`` (global, update group 1000).

One row per block, ordered by insert time then block id, with the stream and process columns
prefixed ``streams.`` / ``processes.`` (quote them in SQL). UUIDs become text and property
arrays JSONB (``micromegas-query.md`` §3). Its source count is the number of blocks.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from .._block_source import SourceBatch
from .._property_jsonb import PropertyDictionary
from .._time_range import NS_PER_DAY
from .._view_set import DICT_BIN, TIMESTAMP, BlockViewSet
from ._columns import timestamps

__all__ = ["BLOCKS_SCHEMA", "BlocksView"]

_TAGS = pa.list_(pa.field("tag", pa.string()))

BLOCKS_SCHEMA = pa.schema(
    [
        pa.field("block_id", pa.string(), nullable=False),
        pa.field("stream_id", pa.string(), nullable=False),
        pa.field("process_id", pa.string(), nullable=False),
        pa.field("begin_time", TIMESTAMP, nullable=False),
        pa.field("begin_ticks", pa.int64(), nullable=False),
        pa.field("end_time", TIMESTAMP, nullable=False),
        pa.field("end_ticks", pa.int64(), nullable=False),
        pa.field("nb_objects", pa.int32(), nullable=False),
        pa.field("object_offset", pa.int64(), nullable=False),
        pa.field("payload_size", pa.int64(), nullable=False),
        pa.field("insert_time", TIMESTAMP, nullable=False),
        pa.field("streams.dependencies_metadata", pa.binary(), nullable=False),
        pa.field("streams.objects_metadata", pa.binary(), nullable=False),
        pa.field("streams.tags", _TAGS, nullable=True),
        pa.field("streams.properties", DICT_BIN, nullable=False),
        pa.field("streams.insert_time", TIMESTAMP, nullable=False),
        pa.field("streams.format", pa.string(), nullable=False),
        pa.field("processes.start_time", TIMESTAMP, nullable=False),
        pa.field("processes.start_ticks", pa.int64(), nullable=False),
        pa.field("processes.tsc_frequency", pa.int64(), nullable=False),
        pa.field("processes.exe", pa.string(), nullable=False),
        pa.field("processes.username", pa.string(), nullable=False),
        pa.field("processes.realname", pa.string(), nullable=False),
        pa.field("processes.computer", pa.string(), nullable=False),
        pa.field("processes.distro", pa.string(), nullable=False),
        pa.field("processes.cpu_brand", pa.string(), nullable=False),
        pa.field("processes.insert_time", TIMESTAMP, nullable=False),
        pa.field("processes.parent_process_id", pa.string(), nullable=False),
        pa.field("processes.properties", DICT_BIN, nullable=False),
    ]
)


def blocks_table(batch: SourceBatch) -> pa.Table:
    """The ``blocks`` view rows of ``batch`` (one per block; Python per block, not per event)."""
    blocks = batch.blocks
    streams = [batch.streams[b.stream_id] for b in blocks]
    processes = [batch.processes[b.process_id] for b in blocks]
    stream_props, process_props = PropertyDictionary(), PropertyDictionary()

    def ints(values: list[int], kind: type = np.int64) -> pa.Array:
        return pa.array(np.array(values, dtype=kind))

    return pa.table(
        [
            pa.array([str(b.block_id) for b in blocks], pa.string()),
            pa.array([str(b.stream_id) for b in blocks], pa.string()),
            pa.array([str(b.process_id) for b in blocks], pa.string()),
            timestamps([b.begin_time_ns for b in blocks]),
            ints([b.begin_ticks for b in blocks]),
            timestamps([b.end_time_ns for b in blocks]),
            ints([b.end_ticks for b in blocks]),
            ints([b.nb_objects for b in blocks], np.int32),
            ints([b.object_offset for b in blocks]),
            ints([b.payload_size for b in blocks]),
            timestamps([b.insert_time_ns for b in blocks]),
            pa.array([s.dependencies_metadata for s in streams], pa.binary()),
            pa.array([s.objects_metadata for s in streams], pa.binary()),
            pa.array([list(s.tags) for s in streams], _TAGS),
            stream_props.column(np.array([stream_props.intern(s.properties) for s in streams], np.int32)),
            timestamps([s.insert_time_ns for s in streams]),
            pa.array([s.format for s in streams], pa.string()),
            timestamps([p.start_time_ns for p in processes]),
            ints([p.start_ticks for p in processes]),
            ints([p.tsc_frequency for p in processes]),
            *(
                pa.array([getattr(p, a) for p in processes], pa.string())
                for a in ("exe", "username", "realname", "computer", "distro", "cpu_brand")
            ),
            timestamps([p.insert_time_ns for p in processes]),
            pa.array([p.parent_process_id for p in processes], pa.string()),
            process_props.column(np.array([process_props.intern(p.properties) for p in processes], np.int32)),
        ],
        schema=BLOCKS_SCHEMA,
    )


class BlocksView(BlockViewSet):
    """Block metadata joined with streams and processes."""

    name: ClassVar[str] = "blocks"
    schema: ClassVar[pa.Schema] = BLOCKS_SCHEMA
    file_schema_hash: ClassVar[bytes] = bytes([3])
    update_group: ClassVar[int | None] = 1000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("begin_time", "insert_time")
    counts_blocks: ClassVar[bool] = True
    needs_payloads: ClassVar[bool] = False

    def transform(self, batch: SourceBatch) -> pa.Table:
        """One row per block."""
        return blocks_table(batch)
