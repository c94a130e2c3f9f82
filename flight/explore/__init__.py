"""Sirius Explore: a web UI over the lake, served by the HTTP gateway, and its terminal companions.

Every screen is a view over the same SQL lake: the JSON API (``/explore/api/*``) builds SQL
from validated parameters (``_*_queries``), runs it through the gateway's FlightSQL client and
answers the data with the exact SQL it ran. The pages (``static/``) are plain ES modules with
no build step. ``sirius trace``, ``sirius tail``, ``sirius services`` and ``sirius perfetto``
run the same SQL from a terminal.
"""

from __future__ import annotations

from ._api import ExploreApi, mount_explore
from ._errors import ExploreError
from ._terminal_commands import TailOptions, run_perfetto, run_services, run_tail, run_trace

__all__ = [
    "ExploreApi",
    "ExploreError",
    "TailOptions",
    "mount_explore",
    "run_perfetto",
    "run_services",
    "run_tail",
    "run_trace",
]
