"""Checks a transit block against its stream before it is acknowledged.

A 200 promises the block is readable later, so the collector verifies what is cheap to verify:
both queues are valid LZ4 frames, every record's type index exists in the stream's metadata,
no record runs past its buffer, and the object count matches ``nb_objects``. The walk is the
native scanner (C), not a Python loop over events. Queues are decompressed straight into one
buffer (``_lz4_into.py``), so checking a block costs its decompressed size once; a queue of up to
4 MiB goes into a reused scratch buffer (no mapping, no page faults per block), and the scanner
only counts the records, without building its per-record arrays.

Where it runs (``validate_transit_block``): a small payload is checked on the event loop (~25 µs
for a 16 KiB block, less than a hand-off to a thread costs the loop); a large one on the
validation thread, one block at a time as before, so the loop, the service's busiest thread,
keeps serving requests meanwhile (a 1 MiB block's check is ~0.3 ms of CPU: measured in
bench/ingest.py as the largest piece of the loop's own work at that size).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ..lakehouse import StreamRecord
from ..tracing import Block, TransitScanError, WireFormatError, count_queue_records, decode_udts
from ._lz4_into import decompressed_queue

OFF_LOOP_BYTES = 256 * 1024
"""Payloads (both queues, compressed) of at least this size are checked on the validation thread."""

_validator_lock = threading.Lock()
_validator: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child has none of its parent's threads


@lru_cache(maxsize=4096)
def _type_sizes(metadata: bytes) -> tuple[int, ...]:
    return tuple(udt.size for udt in decode_udts(metadata))


def validate_transit_payload(block: Block, stream: StreamRecord) -> str | None:
    """Return None when the block's payload is consistent with its stream, else the reason."""
    try:
        object_sizes = _type_sizes(stream.objects_metadata)
        dependency_sizes = _type_sizes(stream.dependencies_metadata)
        # One queue at a time: each decompressed buffer is dropped before the next is made.
        # The scanner only counts (no per-record arrays) and keeps nothing of the decompressed view.
        with decompressed_queue(block.payload.objects) as objects:
            count = count_queue_records(objects, object_sizes)
        with decompressed_queue(block.payload.dependencies) as dependencies:
            count_queue_records(dependencies, dependency_sizes)
    except (WireFormatError, TransitScanError) as exc:
        return str(exc)
    if count != block.nb_objects:
        return f"nb_objects is {block.nb_objects} but the objects queue holds {count} records"
    return None


def _validation_thread() -> ThreadPoolExecutor:
    """The process's one validation thread (started on first use).

    One thread for every service of the process: large blocks are still checked one at a time,
    so the memory a check takes (its decompressed queue, the thread's scratch) is held once, as
    when the loop checked them.
    """
    pid = os.getpid()
    with _validator_lock:
        executor = _validator.get(pid)
        if executor is None:
            _validator.clear()
            executor = _validator[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sirius-validate")
        return executor


async def validate_transit_block(block: Block, stream: StreamRecord) -> str | None:
    """``validate_transit_payload``, on the validation thread when the payload is large (see the module doc)."""
    if len(block.payload.objects) + len(block.payload.dependencies) < OFF_LOOP_BYTES:
        return validate_transit_payload(block, stream)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_validation_thread(), validate_transit_payload, block, stream)
