"""``streams``: one row per stream with blocks in the partition's insert range (global).

A SQL-batch view over the ``blocks`` rows of the range: the stream's columns from its first
block and the latest block ``insert_time`` as ``last_update_time``; partitions merge with the
same aggregation. ``tags`` is a list of strings (``array_has(tags, 'log')`` works on it).
Queries see one row per stream: rows of several partitions are folded (``fold_frame``).
"""

from __future__ import annotations

from typing import ClassVar

import datafusion
import pyarrow as pa

from .._block_source import SourceBatch
from .._time_range import NS_PER_DAY
from .._view_set import DICT_BIN, TIMESTAMP, BlockViewSet, schema_hash
from ._aggregate import first_and_max, fold_frame
from ._blocks import blocks_table

__all__ = ["STREAMS_SCHEMA", "StreamsView"]

STREAMS_SCHEMA = pa.schema(
    [
        pa.field("stream_id", pa.string(), nullable=False),
        pa.field("process_id", pa.string(), nullable=False),
        pa.field("dependencies_metadata", pa.binary(), nullable=False),
        pa.field("objects_metadata", pa.binary(), nullable=False),
        pa.field("tags", pa.list_(pa.field("tag", pa.string())), nullable=True),
        pa.field("properties", DICT_BIN, nullable=False),
        pa.field("insert_time", TIMESTAMP, nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("last_update_time", TIMESTAMP, nullable=False),
    ]
)

_FROM_BLOCKS = {
    "stream_id": "stream_id",
    "process_id": "process_id",
    "dependencies_metadata": "streams.dependencies_metadata",
    "objects_metadata": "streams.objects_metadata",
    "tags": "streams.tags",
    "properties": "streams.properties",
    "insert_time": "streams.insert_time",
    "format": "streams.format",
}


class StreamsView(BlockViewSet):
    """Streams seen in blocks (SQL-batch view over ``blocks``, update group 2000)."""

    name: ClassVar[str] = "streams"
    schema: ClassVar[pa.Schema] = STREAMS_SCHEMA
    file_schema_hash: ClassVar[bytes] = schema_hash(STREAMS_SCHEMA)
    update_group: ClassVar[int | None] = 2000
    max_partition_delta_ns: ClassVar[int] = NS_PER_DAY
    event_time_columns: ClassVar[tuple[str, str]] = ("insert_time", "last_update_time")
    sort_order: ClassVar[tuple[str, ...]] = ("stream_id",)
    counts_blocks: ClassVar[bool] = True
    needs_payloads: ClassVar[bool] = False

    def transform(self, batch: SourceBatch) -> pa.Table:
        """Group the range's blocks by stream."""
        return first_and_max(
            blocks_table(batch), "stream_id", _FROM_BLOCKS, {"last_update_time": "insert_time"}, STREAMS_SCHEMA
        )

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Group partitions' rows by stream again."""
        rows = pa.concat_tables(tables) if tables else STREAMS_SCHEMA.empty_table()
        firsts = {c: c for c in _FROM_BLOCKS}
        return first_and_max(rows, "stream_id", firsts, {"last_update_time": "last_update_time"}, STREAMS_SCHEMA)

    def serve(self, frame: datafusion.DataFrame) -> datafusion.DataFrame:
        """One row per stream over all the partitions read."""
        return fold_frame(frame, "stream_id", tuple(_FROM_BLOCKS), ("last_update_time",), STREAMS_SCHEMA)
