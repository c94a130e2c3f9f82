"""OTel SDK exporters that write OTLP-format blocks through the Sirius telemetry sink.

``SiriusSpanExporter``, ``SiriusLogRecordExporter`` (+ the deprecated ``SiriusLogExporter``) and
``SiriusMetricExporter`` turn each SDK batch into the OTLP protobuf the SDK's own OTLP exporters
would send (``opentelemetry-exporter-otlp-proto-common`` encoders), then into one block per
resource (``split_request`` with the running process) and hand the blocks to a ``TelemetrySink``,
which delivers ``insert_process`` → ``insert_stream`` → ``insert_block`` to the ingestion service
in order, batching and retrying on its own thread. Streams carry ``sirius.format = otlp/v1/…`` so
the Sirius ingestion service stores them with that ``streams.format``.

Exporters are registered as the ``sirius`` entry point of the three ``opentelemetry_*_exporter``
groups, so ``OTEL_TRACES_EXPORTER=sirius opentelemetry-instrument python app.py`` works; built
that way (no arguments) they share one sink configured from ``MICROMEGAS_TELEMETRY_URL`` /
``MICROMEGAS_INGESTION_API_KEY`` and the process identity of ``bridge_process_info()``.

They never raise into the SDK: a failure is logged once and reported as ``FAILURE``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..tracing import Block, ProcessInfo, StreamInfo, TelemetrySink
from ._blocks import split_request
from ._process_identity import bridge_process_info
from ._signals import LOGS, METRICS, TRACES, Signal

try:  # SDK >= 1.39 renamed LogExporter to LogRecordExporter (otlp.md §8.2)
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:  # pragma: no cover - older SDKs
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporterBase  # type: ignore[no-redef]
    from opentelemetry.sdk._logs.export import LogExportResult as _LogResult  # type: ignore[no-redef]

try:  # the synchronous gauge class is only in the internal module (otlp.md §8.3)
    from opentelemetry.sdk.metrics._internal.instrument import Gauge as _SyncGauge
except ImportError:  # pragma: no cover
    _SyncGauge = None  # type: ignore[assignment,misc]

__all__ = [
    "DELTA_PREFERRED_TEMPORALITY",
    "BlockSink",
    "SiriusLogExporter",
    "SiriusLogRecordExporter",
    "SiriusMetricExporter",
    "SiriusSpanExporter",
]

_LOG = logging.getLogger("sirius.otel_bridge")

DELTA_PREFERRED_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}
"""Deltas for counters and histograms (directly summable, no reset detection); cumulative for
up-down counters and gauges, whose value is a level (logfire's choice, ``otlp.md`` §8.3)."""
if _SyncGauge is not None:
    DELTA_PREFERRED_TEMPORALITY[_SyncGauge] = AggregationTemporality.CUMULATIVE


class BlockSink(Protocol):
    """Where exporters send: ``TelemetrySink`` or ``InMemoryBlockSink`` (``sirius.tracing``)."""

    def register_process(self, info: ProcessInfo) -> None:
        """Queue ``insert_process``."""
        ...

    def register_stream(self, info: StreamInfo) -> None:
        """Queue ``insert_stream``."""
        ...

    def send_block(self, block: Block) -> bool:
        """Queue ``insert_block``; False when the block was dropped."""
        ...

    def flush(self, timeout: float | None = ...) -> bool:
        """Deliver what is queued; True when done in time."""
        ...

    def shutdown(self, timeout: float = ...) -> bool:
        """Deliver what is queued, then stop."""
        ...


class _OnceLogger:
    """Warns once per distinct message: a failing export must not flood the application's logs."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def warn(self, message: str) -> None:
        if message not in self._seen and len(self._seen) < 100:
            self._seen.add(message)
            _LOG.warning("%s", message)


_ONCE = _OnceLogger()

# The default sink is shared by every exporter built without one (normally the three built by
# the SDK's auto-configuration): one worker thread, one connection, and the process row sent once.
_SHARED_LOCK = threading.Lock()
_shared_sink: TelemetrySink | None = None
_shared_users = 0


def _acquire_shared_sink() -> TelemetrySink:
    global _shared_sink, _shared_users  # noqa: PLW0603
    with _SHARED_LOCK:
        if _shared_sink is None:
            _shared_sink = TelemetrySink()
        _shared_users += 1
        return _shared_sink


def _release_shared_sink(sink: BlockSink, timeout: float) -> bool:
    global _shared_sink, _shared_users  # noqa: PLW0603
    with _SHARED_LOCK:
        _shared_users -= 1
        last = _shared_users <= 0
        if last:
            _shared_sink, _shared_users = None, 0
    return sink.shutdown(timeout) if last else sink.flush(timeout)


class _BlockWriter:
    """The part common to the three exporters: identity, registration, blocks to the sink."""

    def __init__(self, signal: Signal, sink: BlockSink | None, process_info: ProcessInfo | None) -> None:
        self._signal = signal
        self._owns_sink = sink is None
        self._sink: BlockSink = _acquire_shared_sink() if sink is None else sink
        self._process_info = process_info
        self._lock = threading.Lock()
        self._registered_process: uuid.UUID | None = None
        self._registered_streams: set[uuid.UUID] = set()
        self._closed = False
        # A forked child starts with an empty sink queue: register again before its first block.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (w := ref()) is not None and w._forget_registrations())

    def _forget_registrations(self) -> None:
        self._lock = threading.Lock()
        self._registered_process = None
        self._registered_streams = set()

    def write(self, request: Any, resource_attributes: Callable[[], Any]) -> bool:
        """Split ``request`` into blocks and queue them (registering process and stream first)."""
        if self._closed:
            return False
        process = self._process_info or bridge_process_info(resource_attributes())
        split = split_request(self._signal, request, process=process)
        ok = True
        with self._lock:  # SimpleSpanProcessor exports from application threads concurrently
            if self._registered_process != process.process_id:
                # Each sink delivers in order, so the process row precedes our streams even when
                # the native tracer registered it through another sink.
                self._sink.register_process(process)
                self._registered_process = process.process_id
                self._registered_streams.clear()
            for item in split.blocks:
                if item.stream.stream_id not in self._registered_streams:
                    self._sink.register_stream(item.stream)
                    self._registered_streams.add(item.stream.stream_id)
                ok = self._sink.send_block(item.block) and ok
        return ok

    def flush(self, timeout_millis: float) -> bool:
        try:
            return self._sink.flush(timeout_millis / 1000.0)
        except Exception as exc:  # noqa: BLE001
            _ONCE.warn(f"sirius exporter flush failed: {exc!r}")
            return False

    def close(self, timeout_millis: float) -> bool:
        if self._closed:
            return True
        self._closed = True
        try:
            if self._owns_sink:
                return _release_shared_sink(self._sink, timeout_millis / 1000.0)
            return self._sink.flush(timeout_millis / 1000.0)
        except Exception as exc:  # noqa: BLE001
            _ONCE.warn(f"sirius exporter shutdown failed: {exc!r}")
            return False


def _attributes_of_first(batch: Sequence[Any]) -> Callable[[], Any]:
    def get() -> Any:
        resource = getattr(batch[0], "resource", None) if batch else None
        return dict(resource.attributes) if resource is not None else {}

    return get


class SiriusSpanExporter(SpanExporter):
    """Writes finished spans as ``otlp/v1/traces`` blocks of the running process.

    Args:
        sink: where blocks go; default a ``TelemetrySink`` shared by the exporters built without
            one (``MICROMEGAS_TELEMETRY_URL``, ``MICROMEGAS_INGESTION_API_KEY``).
        process_info: the process to write under; default ``bridge_process_info()`` (the native
            tracer's identity when it runs in this process).
    """

    def __init__(self, sink: BlockSink | None = None, process_info: ProcessInfo | None = None) -> None:
        self._writer = _BlockWriter(TRACES, sink, process_info)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Queue the spans; FAILURE when the exporter is shut down or a block was dropped."""
        try:
            ok = self._writer.write(encode_spans(spans), _attributes_of_first(spans))
        except Exception as exc:  # noqa: BLE001 - never raise into the SDK
            _ONCE.warn(f"sirius span exporter failed: {exc!r}")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until queued blocks are delivered."""
        return self._writer.flush(timeout_millis)

    def shutdown(self) -> None:
        """Deliver what is queued (up to 10 s) and stop; the shared sink stops with its last user."""
        self._writer.close(10_000)


class SiriusLogRecordExporter(_LogExporterBase):
    """Writes log records as ``otlp/v1/logs`` blocks of the running process.

    Args:
        sink: as for ``SiriusSpanExporter``.
        process_info: as for ``SiriusSpanExporter``.
    """

    def __init__(self, sink: BlockSink | None = None, process_info: ProcessInfo | None = None) -> None:
        self._writer = _BlockWriter(LOGS, sink, process_info)

    def export(self, batch: Sequence[Any]) -> Any:
        """Queue the records; FAILURE when the exporter is shut down or a block was dropped."""
        try:
            ok = self._writer.write(encode_logs(batch), _attributes_of_first(batch))
        except Exception as exc:  # noqa: BLE001
            _ONCE.warn(f"sirius log exporter failed: {exc!r}")
            return _LogResult.FAILURE
        return _LogResult.SUCCESS if ok else _LogResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until queued blocks are delivered."""
        return self._writer.flush(timeout_millis)

    def shutdown(self) -> None:
        """Deliver what is queued (up to 10 s) and stop."""
        self._writer.close(10_000)


class SiriusLogExporter(SiriusLogRecordExporter):
    """Deprecated name of ``SiriusLogRecordExporter`` (the SDK renamed ``LogExporter`` in 1.39)."""

    def __init__(self, sink: BlockSink | None = None, process_info: ProcessInfo | None = None) -> None:
        warnings.warn("SiriusLogExporter is deprecated; use SiriusLogRecordExporter", DeprecationWarning, stacklevel=2)
        super().__init__(sink, process_info)


class SiriusMetricExporter(MetricExporter):
    """Writes metric points as ``otlp/v1/metrics`` blocks of the running process.

    Args:
        sink: as for ``SiriusSpanExporter``.
        process_info: as for ``SiriusSpanExporter``.
        preferred_temporality: per instrument class; default ``DELTA_PREFERRED_TEMPORALITY``.
        preferred_aggregation: per instrument class (e.g. exponential histograms).
    """

    def __init__(
        self,
        sink: BlockSink | None = None,
        process_info: ProcessInfo | None = None,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        temporality = dict(DELTA_PREFERRED_TEMPORALITY)
        temporality.update(preferred_temporality or {})
        super().__init__(preferred_temporality=temporality, preferred_aggregation=preferred_aggregation)
        self._writer = _BlockWriter(METRICS, sink, process_info)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        """Queue the points; FAILURE when the exporter is shut down or a block was dropped."""
        del timeout_millis, kwargs  # queuing never waits
        try:
            resources = metrics_data.resource_metrics
            first = {} if not resources else dict(resources[0].resource.attributes)
            ok = self._writer.write(encode_metrics(metrics_data), lambda: first)
        except Exception as exc:  # noqa: BLE001
            _ONCE.warn(f"sirius metric exporter failed: {exc!r}")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Wait until queued blocks are delivered."""
        return self._writer.flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Deliver what is queued (up to ``timeout_millis``) and stop."""
        del kwargs
        self._writer.close(timeout_millis)
