"""The view sets Sirius serves, one module each (``micromegas-query.md`` §2-3).

``default_view_sets()`` is the registry a ``Lakehouse`` uses unless given another; a new view
set (``otel_spans`` in the OTel issue) is one module with a ``ViewSet`` subclass, added here.
"""

from __future__ import annotations

from .._view_set import ViewRegistry
from ._async_events import ASYNC_EVENTS_SCHEMA, AsyncEventsView
from ._blocks import BLOCKS_SCHEMA, BlocksView
from ._log_entries import LOG_ENTRIES_SCHEMA, LogEntriesView
from ._log_stats import LOG_STATS_SCHEMA, LogStatsView
from ._measures import MEASURES_SCHEMA, MeasuresView
from ._processes import PROCESSES_SCHEMA, ProcessesView
from ._streams import STREAMS_SCHEMA, StreamsView
from ._thread_spans import THREAD_SPANS_SCHEMA, ThreadSpansView

__all__ = [
    "ASYNC_EVENTS_SCHEMA",
    "BLOCKS_SCHEMA",
    "LOG_ENTRIES_SCHEMA",
    "LOG_STATS_SCHEMA",
    "MEASURES_SCHEMA",
    "PROCESSES_SCHEMA",
    "STREAMS_SCHEMA",
    "THREAD_SPANS_SCHEMA",
    "AsyncEventsView",
    "BlocksView",
    "LogEntriesView",
    "LogStatsView",
    "MeasuresView",
    "ProcessesView",
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
            ThreadSpansView(),
            AsyncEventsView(),
        ]
    )
