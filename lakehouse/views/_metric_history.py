"""Earlier blocks of OTLP metric streams: where a batch's cumulative series find their previous point.

Both ``measures`` (the ``delta`` column) and ``histograms`` (``delta_counts``) derive what a
cumulative point adds from the series' previous point. For a series' first row in a batch, that
point is in an earlier block of its stream: ``read_earlier_blocks`` reads up to
``HISTORY_BLOCKS`` of them per stream (newest first, inserted before the batch's earliest block
of that stream) with their stored payloads, and says which streams were read completely and how
far back the others go, so a series that cannot have started earlier is known to begin here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...tracing.transit import datetime_to_ns
from .._block_source import SourceBatch, SourceBlock, block_object_key
from .._exceptions import ObjectNotFoundError
from .._otlp_payloads import OTLP_METRICS_FORMAT
from .._pool import pg_errors
from .._time_range import to_datetime

if TYPE_CHECKING:
    from .._lakehouse import Lakehouse

__all__ = [
    "HISTORY_BLOCKS",
    "EarlierBlocks",
    "earlier_blocks",
    "metric_blocks",
    "read_earlier_blocks",
    "stored_payload",
]

HISTORY_BLOCKS = 3
"""Earlier blocks of a stream searched for the previous point of a cumulative series."""


@dataclass(frozen=True, slots=True)
class EarlierBlocks:
    """The blocks read before a batch's, for the streams whose series need history.

    Attributes:
        rows: block rows (``block_id``, ``stream_id``, ``process_id``, ``begin_time``).
        payloads: their stored payloads, None where retention deleted one meanwhile.
        complete: streams whose every earlier block was read.
        horizon: stream → the oldest block time read (series started after it cannot have
            older points).
    """

    rows: list[dict[str, Any]]
    payloads: list[bytes | None]
    complete: frozenset[uuid.UUID]
    horizon: dict[uuid.UUID, int]

    def batch(self, batch: SourceBatch) -> SourceBatch | None:
        """The blocks still stored, as a sub-batch of ``batch`` (None when there are none)."""
        kept = [(r, p) for r, p in zip(self.rows, self.payloads, strict=True) if p is not None]
        if not kept:
            return None
        blocks = [SourceBlock(r["block_id"], r["stream_id"], r["process_id"], 0, 0, 0, 0, 0, 0, 0, 0) for r, _ in kept]
        return batch.subset(blocks, [p for _, p in kept])


def metric_blocks(batch: SourceBatch) -> SourceBatch | None:
    """The OTLP metric blocks of ``batch`` as a sub-batch (None when it has none)."""
    picked = [i for i, b in enumerate(batch.blocks) if batch.streams[b.stream_id].format == OTLP_METRICS_FORMAT]
    if not picked:
        return None
    return batch.subset([batch.blocks[i] for i in picked], [batch.payloads[i] for i in picked])


async def read_earlier_blocks(lake: Lakehouse, batch: SourceBatch, streams: Iterable[uuid.UUID]) -> EarlierBlocks:
    """Up to ``HISTORY_BLOCKS`` blocks of each of ``streams`` inserted before its first in ``batch``."""
    wanted = set(streams)
    earliest: dict[uuid.UUID, int] = {}
    for block in batch.blocks:
        if block.stream_id in wanted:
            earliest[block.stream_id] = min(earliest.get(block.stream_id, block.insert_time_ns), block.insert_time_ns)
    found = await asyncio.gather(*(earlier_blocks(lake, s, t) for s, t in earliest.items()))
    complete = frozenset(s for s, rows in zip(earliest, found, strict=True) if len(rows) < HISTORY_BLOCKS)
    horizon = {
        s: min(datetime_to_ns(r["begin_time"]) for r in rows) for s, rows in zip(earliest, found, strict=True) if rows
    }
    rows = [r for stream_rows in found for r in stream_rows]
    payloads = await asyncio.gather(*(stored_payload(lake, r) for r in rows))
    return EarlierBlocks(rows, list(payloads), complete, horizon)


async def earlier_blocks(lake: Lakehouse, stream_id: uuid.UUID, before_ns: int) -> list[dict[str, Any]]:
    """The ``HISTORY_BLOCKS`` latest blocks of a stream inserted before ``before_ns`` (newest first)."""
    sql = (
        "SELECT block_id, stream_id, process_id, begin_time FROM blocks WHERE stream_id = $1 AND insert_time < $2"
        " ORDER BY insert_time DESC, block_id DESC LIMIT $3"
    )
    with pg_errors("reading earlier metric blocks"):
        rows = await lake.pool.fetch(sql, stream_id, to_datetime(before_ns), HISTORY_BLOCKS)
    return [dict(r) for r in rows]


async def stored_payload(lake: Lakehouse, row: dict[str, Any]) -> bytes | None:
    """The payload of a block row, None when retention deleted it meanwhile."""
    try:
        return await lake.store.get(block_object_key(row["process_id"], row["stream_id"], row["block_id"]))
    except ObjectNotFoundError:  # deleted by retention meanwhile: that history is gone
        return None
