"""The view sets Sirius serves, one module each (``micromegas-query.md`` §2-3).

``default_view_sets()`` is the registry a ``Lakehouse`` uses unless given another; a new view
set is one module with a ``ViewSet`` subclass, added here. OTLP blocks feed ``log_entries``,
``measures`` (``_otel_logs``, ``_otel_metrics``), ``otel_spans`` and ``histograms``
(``_otel_histograms``). Every event view ends with Sirius's ``service_name`` column
(``_columns.service_name_of``); ``processes`` and ``streams`` are served one row per id.
"""

from __future__ import annotations

from .._view_set import ViewRegistry
from ._async_events import ASYNC_EVENTS_SCHEMA, AsyncEventsView
from ._blocks import BLOCKS_SCHEMA, BlocksView
from ._histograms import HISTOGRAMS_SCHEMA, HistogramsView
from ._log_entries import LOG_ENTRIES_SCHEMA, LogEntriesView
from ._measures import MEASURES_SCHEMA, MeasuresView
from ._minute_stats import (
    LOG_STATS_SCHEMA,
    MEASURE_STATS_SCHEMA,
    SPAN_STATS_SCHEMA,
    LogStatsView,
    MeasureStatsView,
    SpanStatsView,
)
from ._otel_spans import OTEL_SPANS_SCHEMA, OtelSpansView
from ._processes import PROCESSES_SCHEMA, ProcessesView
from ._streams import STREAMS_SCHEMA, StreamsView
from ._thread_spans import THREAD_SPANS_SCHEMA, ThreadSpansView

__all__ = [
    "ASYNC_EVENTS_SCHEMA",
    "BLOCKS_SCHEMA",
    "HISTOGRAMS_SCHEMA",
    "LOG_ENTRIES_SCHEMA",
    "LOG_STATS_SCHEMA",
    "MEASURES_SCHEMA",
    "MEASURE_STATS_SCHEMA",
    "OTEL_SPANS_SCHEMA",
    "PROCESSES_SCHEMA",
    "SPAN_STATS_SCHEMA",
    "STREAMS_SCHEMA",
    "THREAD_SPANS_SCHEMA",
    "AsyncEventsView",
    "BlocksView",
    "HistogramsView",
    "LogEntriesView",
    "LogStatsView",
    "MeasureStatsView",
    "MeasuresView",
    "OtelSpansView",
    "ProcessesView",
    "SpanStatsView",
    "StreamsView",
    "ThreadSpansView",
    "default_view_sets",
]


def default_view_sets() -> ViewRegistry:
    """The registry of every built-in view set."""
    return ViewRegistry(
        [
            BlocksView(),
            LogEntriesView(),
            MeasuresView(),
            ProcessesView(),
            StreamsView(),
            LogStatsView(),
            MeasureStatsView(),
            ThreadSpansView(),
            AsyncEventsView(),
            OtelSpansView(),
            SpanStatsView(),
            HistogramsView(),
        ]
    )
