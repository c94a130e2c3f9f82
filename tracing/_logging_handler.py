"""A ``logging.Handler`` that records Python log records in the native tracer's log stream.

Level mapping (Micromegas numbering): CRITICAL → Fatal (1), ERROR → Error (2), WARNING → Warn
(3), INFO → Info (4), DEBUG → Debug (5), anything below DEBUG → Trace (6); levels between two
named ones map to the lower named one. The log target is the logger's name, the message the
formatted record (``record.getMessage()`` when no formatter is set).
"""

from __future__ import annotations

import logging
from typing import Any

from ._api import log_desc
from ._binding import fast_module
from .transit import Level

_log = fast_module().log


def level_from_python(levelno: int) -> int:
    """Map a ``logging`` level number to a Micromegas level.

    >>> [level_from_python(n) for n in (50, 40, 30, 20, 10, 5)]
    [1, 2, 3, 4, 5, 6]
    """
    if levelno >= logging.CRITICAL:
        return int(Level.FATAL)
    if levelno >= logging.ERROR:
        return int(Level.ERROR)
    if levelno >= logging.WARNING:
        return int(Level.WARN)
    if levelno >= logging.INFO:
        return int(Level.INFO)
    if levelno >= logging.DEBUG:
        return int(Level.DEBUG)
    return int(Level.TRACE)


class TracingHandler(logging.Handler):
    """Sends log records through ``sirius.tracing``'s log stream (never blocks, never raises).

    >>> logging.getLogger("doc").addHandler(TracingHandler())
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._descs: dict[tuple[str, int], Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Record one log record."""
        try:
            key = (record.name, record.levelno)
            desc = self._descs.get(key)
            if desc is None:
                desc = self._descs[key] = log_desc(level_from_python(record.levelno), record.name)
            _log(desc, self.format(record) if self.formatter else record.getMessage())
        except Exception:  # noqa: BLE001 - logging's own error policy
            self.handleError(record)
