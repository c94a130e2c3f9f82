"""Split an OTLP export request straight from its protobuf bytes, with the C wire scanner.

``split_request`` needs a parsed request: upb builds a Python-visible message tree, then a
Python loop walks every record for the block statistics and upb re-encodes each resource. Here
one C pass (``native/otlp_scan.c``) over the request bytes yields, per resource, its byte
range, its ``Resource`` range and the statistics; the payload of each block is a ``memoryview``
of the request (no copy), and only the small ``Resource`` message is parsed, for the process
identity. The scanner vouches for a resource only when its bytes are exactly what upb would
re-encode (canonical protobuf: every SDK's encoder writes that), so the blocks, ids and stored
bytes are the ones ``split_request`` produces; any other request — malformed, non-canonical,
with unknown fields, or a metric prost would reorder — gets ``None`` and takes the upb path,
which accepts it or refuses it with its usual error.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ..tracing import ProcessInfo
from ._blocks import (
    REJECTION_REASONS,
    OtlpBlock,
    SplitRequest,
    block_id_prefix,
    process_info_for_resource,
    resource_block,
)
from ._identity import attribute_map, process_id_for_resource
from ._signals import LOGS, METRICS, TRACES, Signal
from ._wire_native import ffi, lib

__all__ = ["WireResource", "scan_request", "split_request_bytes"]

_SIGNAL_CODES = {TRACES.name: 0, LOGS.name: 1, METRICS.name: 2}
_FIRST_CAPACITY = 8  # resources per request: one for nearly every exporter
_IDENTITY_CACHE_SIZE = 4096

# (Resource bytes, audience) -> (the derived process, whether its start is the block's begin time
# because the resource names no usable start). A producer sends the same resource in every
# request; this spares its parse and the uuid5 key per request.
_identities: dict[tuple[bytes, str | None], tuple[ProcessInfo, bool]] = {}

WireResource = tuple[int, int, int, int, int, int, int, int, int, int]
"""(offset, length, resource offset, resource length or -1, items, nb_objects, begin_ns, end_ns,
rejected, reason bits) of one resource message in a request."""


def scan_request(signal: Signal, data: bytes | memoryview) -> list[WireResource] | None:
    """The resources of a request's bytes, or None when upb must decide (see the module docstring)."""
    code = _SIGNAL_CODES[signal.name]
    source = ffi.from_buffer(data)
    capacity = _FIRST_CAPACITY
    while True:
        out = ffi.new("sirius_otlp_resource[]", capacity)
        count = lib.sirius_otlp_scan(source, len(source), code, out, capacity)
        if count < 0:
            return None
        if count <= capacity:
            break
        capacity = count
    return [
        (
            r.offset,
            r.length,
            r.resource_offset,
            r.resource_length if r.has_resource else -1,
            r.items,
            r.nb_objects,
            r.begin_ns,
            r.end_ns,
            r.rejected,
            r.reasons,
        )
        for r in out[0:count]
    ]


def split_request_bytes(
    signal: Signal,
    data: bytes,
    *,
    audience: str | None = None,
    clock: Callable[[], int] = time.time_ns,
    extra_hash_input: bytes = b"",
) -> SplitRequest | None:
    """``split_request(signal, <data parsed>, ...)`` computed from the bytes, or None (parse with upb).

    The blocks' payloads are read-only ``memoryview`` slices of ``data``.
    """
    resources = scan_request(signal, data)
    if resources is None:
        return None
    view = memoryview(data).toreadonly()
    prefix = block_id_prefix(audience, extra_hash_input)
    blocks: list[OtlpBlock] = []
    items = rejected = 0
    reason_bits = 0
    for offset, length, res_offset, res_length, count, nb_objects, begin_ns, end_ns, bad, bits in resources:
        items += count
        rejected += bad
        reason_bits |= bits
        if count == 0:
            continue  # a resource with no records yields no block
        if begin_ns == 0 and end_ns == 0:
            now = clock()
            stats = (count, nb_objects, now, now, bad)
        else:
            stats = (count, nb_objects, begin_ns, end_ns, bad)
        resource_bytes = bytes(view[res_offset : res_offset + res_length]) if res_length >= 0 else b""
        derived = _derived_process(resource_bytes, audience, stats[2])
        payload = view[offset : offset + length]
        blocks.append(
            resource_block(signal, payload, (), stats=stats, prefix=prefix, audience=audience, derived=derived)
        )
    reasons = tuple(sorted(r for bit, r in enumerate(REJECTION_REASONS) if reason_bits & (1 << bit)))
    return SplitRequest(tuple(blocks), items, rejected, reasons)


def _derived_process(resource_bytes: bytes, audience: str | None, begin_ns: int) -> ProcessInfo:
    """``process_info_for_resource`` of a serialised ``Resource``, its attribute work cached."""
    key = (resource_bytes, audience)
    cached = _identities.get(key)
    if cached is None:
        attributes = Resource.FromString(resource_bytes).attributes
        attrs = attribute_map(attributes)
        process_id: uuid.UUID = process_id_for_resource(attrs, audience)
        info = process_info_for_resource(attributes, process_id, 0, attrs)
        # A parsed start cannot be both 0 and 1: these two tell a fallback start apart.
        other = process_info_for_resource(attributes, process_id, 1, attrs)
        uses_fallback = info.start_time_ns == 0 and other.start_time_ns == 1
        if len(_identities) >= _IDENTITY_CACHE_SIZE:
            _identities.clear()  # producers come and go; a full reset is simpler than LRU order
        cached = _identities[key] = (info, uses_fallback)
    info, uses_fallback = cached
    if uses_fallback:
        return dataclasses.replace(info, start_time_ns=begin_ns, start_ticks=begin_ns)
    return info
