"""Checks a transit block against its stream before it is acknowledged.

A 200 promises the block is readable later, so the collector verifies what is cheap to verify:
both queues are valid LZ4 frames, every record's type index exists in the stream's metadata,
no record runs past its buffer, and the object count matches ``nb_objects``. The walk is the
native scanner (C), not a Python loop over events.
"""

from __future__ import annotations

from functools import lru_cache

from ..lakehouse._datalake import StreamRecord
from ..tracing import Block, WireFormatError, decode_udts, decompress_queue
from ..tracing._binding import scan_queue
from ..tracing._exceptions import TransitScanError


@lru_cache(maxsize=4096)
def _type_sizes(metadata: bytes) -> tuple[int, ...]:
    return tuple(udt.size for udt in decode_udts(metadata))


def validate_transit_payload(block: Block, stream: StreamRecord) -> str | None:
    """Return None when the block's payload is consistent with its stream, else the reason."""
    try:
        objects = decompress_queue(block.payload.objects)
        dependencies = decompress_queue(block.payload.dependencies)
        object_sizes = _type_sizes(stream.objects_metadata)
        dependency_sizes = _type_sizes(stream.dependencies_metadata)
        types, _, _ = scan_queue(objects, object_sizes)
        scan_queue(dependencies, dependency_sizes)
    except (WireFormatError, TransitScanError) as exc:
        return str(exc)
    if len(types) != block.nb_objects:
        return f"nb_objects is {block.nb_objects} but the objects queue holds {len(types)} records"
    return None
