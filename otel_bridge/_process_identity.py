"""The one process identity shared by the native tracer and the in-process OTel exporters.

Micromegas keys everything by ``process_id``; when an application runs both the native tracer
and the ``sirius`` OTel exporters, their spans, logs and metrics must land in **one** process so
they join without a mapping table (``otlp.md`` §11). Resolution order, on each call:

1. an identity set explicitly with ``set_process_info`` (e.g. by ``tracing.init`` glue, or a test);
2. the native tracer's, when ``sirius.tracing`` exposes ``current_process()`` returning the
   ``ProcessInfo`` of an initialised tracer (None otherwise);
3. one generated for this process on first use (``current_process_info()``, a new UUIDv4),
   carrying the OTel resource of the first export as ``otel.resource.*`` properties, and
   regenerated in a forked child (which is another process).

Initialise the native tracer before the first export (or hand it ``bridge_process_info()``):
an identity already used by an exporter is not migrated.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from .. import tracing
from ..tracing import ProcessInfo, current_process_info

__all__ = ["bridge_process_info", "set_process_info"]

_LOCK = threading.Lock()
_explicit: ProcessInfo | None = None
_generated: ProcessInfo | None = None


def set_process_info(info: ProcessInfo | None) -> None:
    """Make ``info`` the identity of every in-process exporter (None returns to automatic).

    Args:
        info: the ``ProcessInfo`` the native tracer registered, or None.
    """
    global _explicit  # noqa: PLW0603 - one identity per process is the point of this module
    with _LOCK:
        _explicit = info


def _tracer_process_info() -> ProcessInfo | None:
    current = getattr(tracing, "current_process", None)
    if not callable(current):
        return None
    try:
        info = current()
    except Exception:  # noqa: BLE001 - the tracer's hook must not break an export
        return None
    return info if isinstance(info, ProcessInfo) else None


def bridge_process_info(resource_attributes: Mapping[str, Any] | None = None) -> ProcessInfo:
    """The identity in-process exporters write under (see the module docstring for the order).

    Args:
        resource_attributes: the OTel resource of the export asking, recorded as
            ``otel.resource.*`` properties if this call generates the identity.
    """
    global _generated  # noqa: PLW0603
    with _LOCK:
        if _explicit is not None:
            return _explicit
    traced = _tracer_process_info()
    if traced is not None:
        return traced
    with _LOCK:
        if _generated is None:
            properties = {f"otel.resource.{k}": _text(v) for k, v in (resource_attributes or {}).items()}
            _generated = current_process_info(properties)
        return _generated


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _forget_generated_in_child() -> None:
    # The child is another process: new identity, and a fresh lock (another thread of the
    # parent may have held this one at fork time).
    global _generated, _LOCK  # noqa: PLW0603
    _LOCK = threading.Lock()
    _generated = None


os.register_at_fork(after_in_child=_forget_generated_in_child)
