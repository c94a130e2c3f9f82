"""Automatic function spans: a thread span for every Python call in the selected modules.

Recorded from C: on CPython 3.12+ with ``sys.monitoring`` C callbacks (PY_START/PY_RESUME
begin, PY_RETURN/PY_YIELD/PY_UNWIND end, PY_THROW begins); a code location outside the selection
answers ``DISABLE`` the first time and then costs nothing. On 3.11 with a C ``PyEval_SetProfile``
hook, installed on the calling thread and, through ``threading.setprofile``, on threads started
later (threads already running elsewhere are not covered); code outside the selection costs one
cached lookup per call. The decision per code object is cached in its co_extra slot; each
descriptor is ``co_qualname`` at ``co_filename:co_firstlineno`` with the module as target.
Generators and coroutines get a span per resumption, which keeps thread spans nested.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

from . import _binding

_fast = _binding.fast_module()

ALWAYS_EXCLUDED = ("sirius.tracing",)
"""The tracer never traces itself."""

_TOOL_NAME = "sirius"
_tool_id: int | None = None
_active = False


def _prefixes(names: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    out = tuple(str(n).strip().rstrip(".") for n in names)
    if any(not n for n in out):
        msg = "module prefixes must be non-empty"
        raise ValueError(msg)
    return out


def _monitoring_available() -> bool:
    return bool(_fast.HAVE_MONITORING) and hasattr(sys, "monitoring")


def _install_monitoring() -> None:
    global _tool_id  # noqa: PLW0603 - one tool registration per process
    mon = sys.monitoring  # type: ignore[attr-defined]
    if _tool_id is None:
        for tool in (mon.PROFILER_ID, 3, 4, 5):
            try:
                mon.use_tool_id(tool, _TOOL_NAME)
            except ValueError:
                continue
            _tool_id = tool
            break
        else:
            msg = "no free sys.monitoring tool id"
            raise RuntimeError(msg)
    events = mon.events
    _fast.set_disable(mon.DISABLE)
    callbacks = {
        events.PY_START: _fast.mon_start,
        events.PY_RESUME: _fast.mon_start,
        events.PY_RETURN: _fast.mon_return,
        events.PY_YIELD: _fast.mon_return,
        events.PY_UNWIND: _fast.mon_unwind,
        events.PY_THROW: _fast.mon_throw,
    }
    mask = 0
    for event, callback in callbacks.items():
        mon.register_callback(_tool_id, event, callback)
        mask |= event
    mon.set_events(_tool_id, mask)
    mon.restart_events()  # re-enable locations a previous selection DISABLEd


def _uninstall_monitoring() -> None:
    global _tool_id  # noqa: PLW0603
    if _tool_id is None:
        return
    mon = sys.monitoring  # type: ignore[attr-defined]
    mon.set_events(_tool_id, 0)
    mon.free_tool_id(_tool_id)
    _tool_id = None


def auto_spans(include: Iterable[str] | str, exclude: Iterable[str] | str = ()) -> None:
    """Record a thread span for every call of a function defined in ``include``'s modules.

    Args:
        include: module or package names; ``pkg`` selects ``pkg`` and ``pkg.*``.
        exclude: module or package names taken out of the selection (``sirius.tracing`` always is).

    Raises:
        ValueError: an empty module name.

    Calling it again replaces the selection; ``stop_auto_spans()`` turns it off.
    """
    global _active  # noqa: PLW0603
    inc = _prefixes(include)
    exc = (*_prefixes(exclude), *ALWAYS_EXCLUDED)
    _fast.auto_configure(inc, exc, True)
    if _monitoring_available():
        _install_monitoring()
    else:
        _fast.profile_install(True)
        threading.setprofile(_fast.profile_bootstrap)
    _active = True


def stop_auto_spans() -> None:
    """Stop automatic spans (on 3.11, threads keep a hook that now records nothing)."""
    global _active  # noqa: PLW0603
    _fast.auto_configure((), (), False)
    if _monitoring_available():
        _uninstall_monitoring()
    else:
        threading.setprofile(None)  # type: ignore[arg-type]
        _fast.profile_install(False)
    _fast.auto_reset_depth()
    _active = False


def auto_spans_active() -> bool:
    """True while ``auto_spans`` is in effect."""
    return _active
