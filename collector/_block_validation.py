"""Checks a transit block against its stream before it is acknowledged.

A 200 promises the block is readable later, so the collector verifies what is cheap to verify:
both queues are valid LZ4 frames, every record's type index exists in the stream's metadata,
no record runs past its buffer, and the object count matches ``nb_objects``. The walk is the
native scanner (C), not a Python loop over events. Queues are decompressed straight into one
buffer (``_lz4_into.py``), so checking a block costs its decompressed size once.
"""

from __future__ import annotations

from functools import lru_cache

from ..lakehouse import StreamRecord
from ..tracing import Block, TransitScanError, WireFormatError, decode_udts, scan_queue
from ._lz4_into import decompress_queue_into


@lru_cache(maxsize=4096)
def _type_sizes(metadata: bytes) -> tuple[int, ...]:
    return tuple(udt.size for udt in decode_udts(metadata))


def validate_transit_payload(block: Block, stream: StreamRecord) -> str | None:
    """Return None when the block's payload is consistent with its stream, else the reason."""
    try:
        object_sizes = _type_sizes(stream.objects_metadata)
        dependency_sizes = _type_sizes(stream.dependencies_metadata)
        # One queue at a time: each decompressed buffer is dropped before the next is made.
        types, _, _ = scan_queue(decompress_queue_into(block.payload.objects), object_sizes)  # type: ignore[arg-type]
        scan_queue(decompress_queue_into(block.payload.dependencies), dependency_sizes)  # type: ignore[arg-type]
    except (WireFormatError, TransitScanError) as exc:
        return str(exc)
    if len(types) != block.nb_objects:
        return f"nb_objects is {block.nb_objects} but the objects queue holds {len(types)} records"
    return None
