"""Encode one OTLP resource message byte-for-byte as Rust's prost does.

Block ids are ``uuid5`` of the *re-encoded* resource (``micromegas-wire.md`` §9.3), and the Rust
ingester re-encodes with prost. Two encoders agree on most messages — both drop nothing known,
skip proto3 defaults, pack repeated scalars and write fields in ascending tag order — with two
differences this module removes:

* **unknown fields**: prost drops them on decode; Python's protobuf keeps and re-emits them. We
  call ``DiscardUnknownFields()`` before serialising.
* **oneof position**: prost-derive sorts a message's fields by their *lowest* tag, so a oneof is
  written where its lowest-numbered member would be, whichever member is set
  (``prost-derive/src/lib.rs``: "This encodes oneof fields in the position of their lowest tag").
  Among the OTLP logs/metrics/traces messages this changes the bytes in exactly two places:
  ``NumberDataPoint.as_int`` (tag 6, written at tag 4's place, i.e. before ``exemplars`` = 5)
  and ``Exemplar.as_int`` (tag 6, written at tag 3's place, i.e. before ``span_id`` = 4 and
  ``trace_id`` = 5). Other oneofs (``AnyValue.value``, ``Metric.data``) have no field between
  their members, and proto3 ``optional`` fields are single-tag.

So spans and logs serialise as they are; metrics get a wire-level reordering pass, but only
when a data point or exemplar actually holds an integer next to fields that move.
"""

from __future__ import annotations

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar, ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

__all__ = ["encode_resource"]

# Message kinds along the paths from ResourceMetrics down to the reordered messages:
# kind -> {field number: child kind}.
_CHILDREN: dict[str, dict[int, str]] = {
    "ResourceMetrics": {2: "ScopeMetrics"},
    "ScopeMetrics": {2: "Metric"},
    "Metric": {5: "Gauge", 7: "Sum", 9: "Histogram", 10: "ExponentialHistogram"},
    "Gauge": {1: "NumberDataPoint"},
    "Sum": {1: "NumberDataPoint"},
    "Histogram": {1: "HistogramDataPoint"},
    "ExponentialHistogram": {1: "ExponentialHistogramDataPoint"},
    "NumberDataPoint": {5: "Exemplar"},
    "HistogramDataPoint": {8: "Exemplar"},
    "ExponentialHistogramDataPoint": {11: "Exemplar"},
    "Exemplar": {},
}
# prost's sort key of a field number where it differs from the number itself.
_PROST_KEY: dict[str, dict[int, int]] = {
    "NumberDataPoint": {6: 4},  # oneof value {as_double = 4, as_int = 6}
    "Exemplar": {6: 3},  # oneof value {as_double = 3, as_int = 6}
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer (length prefixes, tags)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _reorder(buf: bytes, kind: str) -> bytes:
    """Rewrite a serialised message of ``kind`` (and its relevant children) in prost field order."""
    children = _CHILDREN[kind]
    keys = _PROST_KEY.get(kind, {})
    fields: list[tuple[int, bytes]] = []
    pos = 0
    end = len(buf)
    while pos < end:
        start = pos
        tag, pos = _varint(buf, pos)
        after_tag = pos
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = _varint(buf, pos)
            chunk = buf[start:pos]
        elif wire_type == 1:
            pos += 8
            chunk = buf[start:pos]
        elif wire_type == 5:
            pos += 4
            chunk = buf[start:pos]
        elif wire_type == 2:
            length, body = _varint(buf, pos)
            pos = body + length
            child = children.get(number)
            if child is None:
                chunk = buf[start:pos]
            else:
                inner = _reorder(buf[body:pos], child)
                chunk = buf[start:after_tag] + encode_varint(len(inner)) + inner
        else:  # groups never occur in OTLP; keep the bytes as they are
            chunk = buf[start:]
            pos = end
        fields.append((keys.get(number, number), chunk))
    # Serialised input is in ascending tag order already; a stable sort by prost's key moves only
    # the oneof members and keeps repeated fields in their order.
    fields.sort(key=lambda item: item[0])
    return b"".join(chunk for _, chunk in fields)


def _exemplar_moves(exemplar: Exemplar) -> bool:
    return exemplar.WhichOneof("value") == "as_int" and bool(exemplar.span_id or exemplar.trace_id)


def _metrics_need_reorder(resource: ResourceMetrics) -> bool:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            kind = metric.WhichOneof("data")
            if kind in ("gauge", "sum"):
                points = metric.gauge.data_points if kind == "gauge" else metric.sum.data_points
                for point in points:
                    if point.exemplars and (
                        point.WhichOneof("value") == "as_int" or any(_exemplar_moves(e) for e in point.exemplars)
                    ):
                        return True
            elif kind in ("histogram", "exponential_histogram"):
                hist = metric.histogram if kind == "histogram" else metric.exponential_histogram
                for point in hist.data_points:
                    if any(_exemplar_moves(e) for e in point.exemplars):
                        return True
    return False


def encode_resource(resource: ResourceLogs | ResourceMetrics | ResourceSpans) -> bytes:
    """Serialise one ``ResourceLogs`` / ``ResourceMetrics`` / ``ResourceSpans`` as prost would.

    Unknown fields are discarded from ``resource`` in place (prost never keeps them).
    """
    resource.DiscardUnknownFields()
    data = resource.SerializeToString()
    if isinstance(resource, ResourceMetrics) and _metrics_need_reorder(resource):
        return _reorder(data, "ResourceMetrics")
    return data
