"""Test helper: ``SourceBatch``'s arguments for blocks a ``TransitWriter`` sealed (rows, stream, process, payloads)."""

from __future__ import annotations

import uuid
from typing import Any

from sirius.lakehouse._block_source import SourceBlock, SourceProcess, SourceStream
from sirius.tracing.transit._udt import encode_udts
from sirius.tracing.transit._wire_format import payload_to_cbor
from sirius.tracing.transit._writer import TransitWriter


def batch_parts(
    writer: TransitWriter, sealed: list[Any]
) -> tuple[list[SourceBlock], dict[uuid.UUID, SourceStream], dict[uuid.UUID, SourceProcess], list[bytes]]:
    """``SourceBatch``'s arguments for blocks ``writer`` sealed: their rows, stream, process, payloads."""
    info = writer.stream_info()
    process_id = info.process_id
    stream = SourceStream(
        info.stream_id,
        process_id,
        encode_udts(info.dependencies_metadata),
        encode_udts(info.objects_metadata),
        ("cpu",),
        {},
        0,
        "transit",
    )
    process = SourceProcess(process_id, "app", "u", "u", "h", "linux", "cpu", 10**9, 0, 0, 0, "", {}, 10**9)
    rows = [
        SourceBlock(b.block_id, b.stream_id, b.process_id, 0, 0, 0, 0, b.nb_objects, b.object_offset, 0, 0)
        for b in sealed
    ]
    return rows, {stream.stream_id: stream}, {process_id: process}, [payload_to_cbor(b.payload) for b in sealed]
