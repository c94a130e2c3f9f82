"""CloudWatch Metric Streams records (OpenTelemetry 1.0 output format) → one OTLP metrics request.

Each Firehose record holds one or more length-delimited ``ExportMetricsServiceRequest``
messages (``split_length_delimited``). Their resources carry no service or host identity, only
``cloud.provider``, ``cloud.account.id``, ``cloud.region`` and ``aws.exporter.arn``, so every
stream of every account would collapse onto one process. As Micromegas does, such a resource
(an ``aws.exporter.arn``, no ``service.name`` / ``service.namespace``, none of host.id,
host.name, process.pid, service.instance.id) is split into one resource per CloudWatch
namespace (the ``Namespace`` attribute of each metric's first data point, compared
case-insensitively; ``AWS/Unknown`` without one), with ``service.name`` = the namespace and
``service.instance.id`` = the exporter ARN: one process per namespace and stream, named after
the namespace. Other resources pass unchanged. The split is deterministic (namespaces in sorted
order), so a retried delivery stores the same blocks.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics, ScopeMetrics

from ..otel_bridge import attribute_map, attribute_text, is_degenerate_resource
from ._exceptions import OtlpInvalidRequestError
from ._firehose import split_length_delimited

__all__ = ["UNKNOWN_NAMESPACE", "decode_metric_stream_records", "is_metric_stream_resource", "rewrite_metric_streams"]

UNKNOWN_NAMESPACE = "AWS/Unknown"
"""``service.name`` of metrics without a ``Namespace`` attribute."""

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DATA_KINDS = ("sum", "gauge", "histogram", "exponential_histogram", "summary")


def _norm(text: str) -> str:
    return text.strip(" \t\n\r\x0c\x0b").translate(_ASCII_LOWER)


def is_metric_stream_resource(attributes: list[KeyValue]) -> bool:
    """True for a CloudWatch Metric Streams resource (the fingerprint in the module docstring)."""
    attrs = attribute_map(attributes)
    return (
        bool(_norm(attribute_text(attrs.get("aws.exporter.arn"))))
        and not _norm(attribute_text(attrs.get("service.name")))
        and not _norm(attribute_text(attrs.get("service.namespace")))
        and is_degenerate_resource(attrs)
    )


def _namespace(metric: Metric) -> str | None:
    kind = metric.WhichOneof("data")
    if kind not in _DATA_KINDS:
        return None
    points = getattr(metric, kind).data_points
    if not points:
        return None
    text = attribute_text(attribute_map(points[0].attributes).get("Namespace")).strip()
    return text or None


def _set(attributes: list[KeyValue], key: str, value: str) -> None:
    for kv in attributes:
        if kv.key == key:
            kv.value.CopyFrom(AnyValue(string_value=value))
            return
    attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))


def _partition(resource: ResourceMetrics) -> list[ResourceMetrics]:
    # bucket key: the lower-cased namespace (None first, as Rust orders Option); value: the first
    # spelling seen and the bucket's scopes.
    buckets: dict[str | None, tuple[str | None, list[ScopeMetrics]]] = {}
    for scope in resource.scope_metrics:
        per_namespace: dict[str | None, tuple[str | None, list[Metric]]] = {}
        for metric in scope.metrics:
            namespace = _namespace(metric)
            key = None if namespace is None else namespace.translate(_ASCII_LOWER)
            per_namespace.setdefault(key, (namespace, []))[1].append(metric)
        for key in sorted(per_namespace, key=_order):
            namespace, metrics = per_namespace[key]
            part = ScopeMetrics(metrics=metrics, schema_url=scope.schema_url)
            if scope.HasField("scope"):
                part.scope.CopyFrom(scope.scope)
            buckets.setdefault(key, (namespace, []))[1].append(part)
    arn = attribute_text(attribute_map(resource.resource.attributes).get("aws.exporter.arn"))
    out: list[ResourceMetrics] = []
    for key in sorted(buckets, key=_order):
        namespace, scopes = buckets[key]
        part = ResourceMetrics(scope_metrics=scopes, schema_url=resource.schema_url)
        part.resource.CopyFrom(resource.resource)
        attributes = [_copy(kv) for kv in resource.resource.attributes]
        _set(attributes, "service.instance.id", arn)
        _set(attributes, "service.name", namespace or UNKNOWN_NAMESPACE)
        for kv in attributes:
            if kv.key == "service.namespace":
                kv.value.CopyFrom(AnyValue(string_value=""))
                break
        del part.resource.attributes[:]
        part.resource.attributes.extend(attributes)
        out.append(part)
    return out


def _copy(kv: KeyValue) -> KeyValue:
    out = KeyValue()
    out.CopyFrom(kv)
    return out


def _order(key: str | None) -> tuple[int, bytes]:
    return (0, b"") if key is None else (1, key.encode())


def rewrite_metric_streams(request: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest:
    """``request`` with each Metric Streams resource split by namespace; other resources unchanged."""
    out = ExportMetricsServiceRequest()
    for resource in request.resource_metrics:
        if resource.HasField("resource") and is_metric_stream_resource(list(resource.resource.attributes)):
            out.resource_metrics.extend(_partition(resource))
        else:
            out.resource_metrics.append(resource)
    return out


def decode_metric_stream_records(records: tuple[bytes, ...]) -> ExportMetricsServiceRequest:
    """Every message of every record, rewritten and merged into one request (resources in order).

    Raises:
        OtlpInvalidRequestError: bad framing or a message that is not an ``ExportMetricsServiceRequest``.
    """
    merged = ExportMetricsServiceRequest()
    for index, record in enumerate(records):
        for number, data in enumerate(split_length_delimited(record, f"record[{index}]")):
            try:
                message = ExportMetricsServiceRequest.FromString(data)
            except DecodeError as exc:
                msg = f"record[{index}] message[{number}] is not an OTLP ExportMetricsServiceRequest: {exc}"
                raise OtlpInvalidRequestError(msg) from exc
            merged.resource_metrics.extend(rewrite_metric_streams(message).resource_metrics)
    return merged
