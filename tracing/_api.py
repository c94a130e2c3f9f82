"""The instrumentation API: spans, logs and metrics through the native tracer's fast path.

Every hot call is a C-API function of ``sirius.tracing._fast`` that keeps the GIL. Descriptors
(name, target, file, line) are registered once and cached; the hot call passes only the
descriptor object. Calls before ``init`` or after ``shutdown`` are ignored, and none of these
functions raises into the application for telemetry reasons.

Spans:

* ``@span`` / ``@span("name")`` on a function: a thread span around each call (a C vectorcall
  wrapper); on an ``async def``: an async span (``BeginAsyncSpanEvent``) from start to finish,
  parented through a context variable; on a generator: a thread span around each resumption;
  on an async generator: an async span per step. Exceptions end the span and propagate.
* ``with span("name"):`` — a thread span; ``span("name")`` is a C function returning the cached
  descriptor (one dict probe), so the idiomatic form costs about what ``S = span("name")`` once
  and ``with S:`` in the loop does.
* ``async with async_span(f"fetch {url}"):`` — an async span whose name is chosen at run time
  (``BeginAsyncNamedSpanEvent`` with a ``SpanLocationRecord`` of the call site), parented like
  the ``async def`` spans; plain ``with`` works too.

Logs and metrics take ``properties={"name": "value", ...}`` (str to str): the event is then a
tagged one (``TaggedLogString``, ``TaggedIntegerMetricEvent``, ``TaggedFloatMetricEvent``) whose
properties land in the ``properties`` column of ``log_entries`` / ``measures``. A property set is
interned once in the tracer (a process-lifetime id) and cached here by its items, so a set that
recurs costs a dict probe; ``property_set(mapping)`` interns one ahead for the hottest loops.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import sys
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, TypeAlias, TypeVar

from . import _binding
from .transit import Level

_fast = _binding.fast_module()
Descriptor = _fast.Descriptor
"""A registered call site (``sirius.tracing._fast.Descriptor``): a context manager for spans."""

_begin = _fast.begin
_end = _fast.end
_begin_async = _fast.begin_async
_end_async = _fast.end_async
_new_span_id = _fast.new_span_id
_begin_async_named = _fast.begin_async_named
_end_async_named = _fast.end_async_named
_log = _fast.log
_metric = _fast.metric
_log_tagged = _fast.log_tagged
_metric_tagged = _fast.metric_tagged
PropertySet = _fast.PropertySet
"""An interned property set (``sirius.tracing._fast.PropertySet``), made by :func:`property_set`."""

DEFAULT_TARGET = "python"

F = TypeVar("F", bound=Callable[..., Any])

_span_descs: dict[tuple[str, str], Any] = {}
_log_descs: dict[tuple[int, str], Any] = {}
_metric_descs: dict[tuple[str, str, str], Any] = {}
_location_descs: dict[tuple[str, str, int], Any] = {}

# (span_id, depth) of the innermost async span of the running task; depth -1 = none
_current_async: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar(
    "sirius_tracing_async_span", default=(0, -1)
)


def span_desc(name: str, *, target: str = DEFAULT_TARGET, file: str = "", line: int = 0) -> Any:
    """Return the (cached) thread-span descriptor called ``name``.

    >>> with span_desc("doc-example"):
    ...     pass
    """
    key = (name, target)
    desc = _span_descs.get(key)
    if desc is None:
        desc = _fast.desc(_binding.DESC_SPAN, name, target, target, file, line, 0, None)
        _span_descs[key] = desc
    return desc


def _code_desc(func: Callable[..., Any], name: str | None) -> Any:
    code = getattr(func, "__code__", None)
    module = getattr(func, "__module__", None) or DEFAULT_TARGET
    return _fast.desc(
        _binding.DESC_SPAN,
        name or getattr(func, "__qualname__", None) or repr(func),
        module,
        module,
        code.co_filename if code else "",
        code.co_firstlineno if code else 0,
        0,
        None,
    )


def _enter_async(desc: Any) -> tuple[int, int, int, contextvars.Token[tuple[int, int]]]:
    parent, parent_depth = _current_async.get()
    span_id = _new_span_id()
    depth = parent_depth + 1
    token = _current_async.set((span_id, depth))
    _begin_async(desc, span_id, parent, depth)
    return span_id, parent, depth, token


def _exit_async(desc: Any, span_id: int, parent: int, depth: int, token: contextvars.Token[tuple[int, int]]) -> None:
    _end_async(desc, span_id, parent, depth)
    with contextlib.suppress(ValueError):  # closed from another context (a collected coroutine)
        _current_async.reset(token)


def _wrap_coroutine(desc: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        span_id, parent, depth, token = _enter_async(desc)
        try:
            return await func(*args, **kwargs)
        finally:
            _exit_async(desc, span_id, parent, depth, token)

    return traced


def _traced_generator(desc: Any, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    value: Any = None
    error: BaseException | None = None
    while True:
        _begin(desc)
        try:
            item = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            _end(desc)
            return stop.value
        except BaseException:
            _end(desc)
            raise
        _end(desc)
        value, error = None, None
        try:
            value = yield item
        except GeneratorExit:
            gen.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: forward it
            error = exc


def _wrap_generator(desc: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def traced(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        return _traced_generator(desc, func(*args, **kwargs))

    return traced


async def _traced_async_generator(desc: Any, agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    value: Any = None
    error: BaseException | None = None
    while True:
        span_id, parent, depth, token = _enter_async(desc)
        try:
            item = await (agen.asend(value) if error is None else agen.athrow(error))
        except StopAsyncIteration:
            _exit_async(desc, span_id, parent, depth, token)
            return
        except BaseException:
            _exit_async(desc, span_id, parent, depth, token)
            raise
        _exit_async(desc, span_id, parent, depth, token)
        value, error = None, None
        try:
            value = yield item
        except GeneratorExit:
            await agen.aclose()
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: forward it
            error = exc


def _wrap_async_generator(desc: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def traced(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        return _traced_async_generator(desc, func(*args, **kwargs))

    return traced


def _decorate(desc: Any, func: F) -> F:
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(desc, func)  # type: ignore[return-value]
    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(desc, func)  # type: ignore[return-value]
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(desc, func)  # type: ignore[return-value]
    wrapper = _fast.wrap(desc, func)
    functools.update_wrapper(wrapper, func)
    return wrapper  # type: ignore[no-any-return]


_fast.set_decorator(_decorate)


_span_by_name: dict[str, Any] = {}
"""Descriptors of ``span("name")`` with the default target, looked up by ``_fast.span`` in C."""


def _span_py(name_or_func: Any = None, /, *, name: str | None = None, target: str | None = None) -> Any:
    """Return a span decorator or context manager (decorate bare, decorate by name, or use in with).

    ``span`` is ``_fast.span``: a C function that answers ``span("name")`` from ``_span_by_name``
    (one dict probe, no Python frame) and calls this function for every other shape.

    Args:
        name_or_func: the function to decorate, or the span name.
        name: span name for a decorated function (default its ``__qualname__``).
        target: span target (default the function's module, or ``"python"``).

    Returns:
        The wrapped function, or a descriptor usable as ``with`` context and as a decorator.

    >>> @span
    ... def add(a, b):
    ...     return a + b
    >>> add(1, 2)
    3
    """
    if callable(name_or_func) and not isinstance(name_or_func, str):
        return _decorate(_code_desc(name_or_func, name), name_or_func)
    if name_or_func is None and name is None:
        return lambda func: _decorate(_code_desc(func, None), func)
    span_name = name_or_func if name_or_func is not None else name
    desc = span_desc(span_name, target=target or DEFAULT_TARGET)
    if type(span_name) is str and target in (None, DEFAULT_TARGET):
        _span_by_name[span_name] = desc
    return desc


_fast.set_span_fallback(_span_by_name, _span_py)
span = _fast.span
"""``span(name_or_func=None, /, *, name=None, target=None)``: see ``_span_py`` (C fast path for a name)."""


begin_span = _begin
"""``begin_span(desc)``: begin a thread span of ``desc`` (from ``span_desc``): one C call."""
end_span = _end
"""``end_span(desc)``: end the thread span of ``desc`` on the calling thread: one C call."""


def _location_desc(target: str, file: str, line: int) -> Any:
    key = (target, file, line)
    desc = _location_descs.get(key)
    if desc is None:
        desc = _fast.desc(_binding.DESC_LOCATION, "", target, target, file, line, 0, None)
        _location_descs[key] = desc
    return desc


class AsyncSpan:
    """An async span named at run time: ``Begin/EndAsyncNamedSpanEvent`` around a ``with`` block.

    Made by :func:`async_span`; parented through the running task's context, like the spans of
    ``@span`` on an ``async def``. Use each object for one ``with`` (it holds that span's id).
    """

    __slots__ = ("_location", "_name", "_span")

    def __init__(self, location: Any, name: str) -> None:
        self._location = location
        self._name = name
        self._span: tuple[int, int, int, contextvars.Token[tuple[int, int]]] | None = None

    def __enter__(self) -> AsyncSpan:
        parent, parent_depth = _current_async.get()
        span_id = _new_span_id()
        depth = parent_depth + 1
        self._span = (span_id, parent, depth, _current_async.set((span_id, depth)))
        _begin_async_named(self._location, self._name, span_id, parent, depth)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._span is None:
            return
        span_id, parent, depth, token = self._span
        self._span = None
        _end_async_named(self._location, self._name, span_id, parent, depth)
        with contextlib.suppress(ValueError):  # left from another context
            _current_async.reset(token)

    async def __aenter__(self) -> AsyncSpan:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


def async_span(name: str, *, target: str | None = None) -> AsyncSpan:
    """Return an async span called ``name`` (any text, e.g. with an id) for ``async with``.

    The call site (file, line) and ``target`` (default the caller's module) describe it.

    >>> async def fetch(url: str) -> None:
    ...     async with async_span(f"fetch {url}"):
    ...         pass
    """
    frame = sys._getframe(1)  # the call site
    module = target or frame.f_globals.get("__name__") or DEFAULT_TARGET
    return AsyncSpan(_location_desc(str(module), frame.f_code.co_filename, frame.f_lineno), str(name))


# ---------------------------------------------------------------------------------------------
# property sets

PROPERTY_SET_CACHE_SIZE = 4096
"""Property sets remembered by their items; past it the oldest is forgotten (the tracer keeps it)."""

_property_sets: dict[frozenset[tuple[str, str]], Any] = {}

Properties: TypeAlias = Mapping[str, str] | PropertySet
"""What ``properties=`` takes: a mapping of str to str, or a :data:`PropertySet`."""


def property_set(properties: Properties) -> Any:
    """Return the interned :data:`PropertySet` of ``properties`` (cached by its items).

    Pass the result as ``properties=`` to skip even the cache lookup in a hot loop.

    Raises:
        TypeError: ``properties`` is not a mapping of str to str.
        ValueError: more than 1024 properties.

    >>> rule = property_set({"rule_id": "r42"})
    >>> metric("query_denied", 1, properties=rule)
    """
    if type(properties) is PropertySet:
        return properties
    try:
        key = frozenset(properties.items())
    except (AttributeError, TypeError):
        msg = f"properties must be a mapping of str to str, got {type(properties).__name__}"
        raise TypeError(msg) from None
    interned = _property_sets.get(key)
    if interned is None:
        interned = _fast.property_set(dict(properties))  # checks names and values are str
        if len(_property_sets) >= PROPERTY_SET_CACHE_SIZE:
            # another thread may evict at the same time: losing that race only costs a re-intern
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del _property_sets[next(iter(_property_sets))]
        _property_sets[key] = interned
    return interned


# ---------------------------------------------------------------------------------------------
# logs


def log_desc(level: int, target: str = DEFAULT_TARGET) -> Any:
    """Return the (cached) log descriptor of ``level`` and ``target``."""
    key = (int(level), target)
    desc = _log_descs.get(key)
    if desc is None:
        desc = _fast.desc(_binding.DESC_LOG, "", target, target, "", 0, int(level), None)
        _log_descs[key] = desc
    return desc


_FATAL = log_desc(Level.FATAL)
_ERROR = log_desc(Level.ERROR)
_WARN = log_desc(Level.WARN)
_INFO = log_desc(Level.INFO)
_DEBUG = log_desc(Level.DEBUG)
_TRACE = log_desc(Level.TRACE)


def log(level: int, msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record ``msg`` (``str(msg)``) at ``level`` (``Level``: 1 fatal … 6 trace).

    With ``properties``, a ``TaggedLogString``: its properties are queryable per line
    (``property_get(properties, 'k')`` in ``log_entries``); ``target`` and ``level`` properties
    override the call's, as in Micromegas.
    """
    desc = log_desc(level, target or DEFAULT_TARGET)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


def fatal(msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record a fatal log entry."""
    desc = _FATAL if target is None else log_desc(Level.FATAL, target)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


def error(msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record an error log entry."""
    desc = _ERROR if target is None else log_desc(Level.ERROR, target)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


def warn(msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record a warning log entry."""
    desc = _WARN if target is None else log_desc(Level.WARN, target)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


def info(msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record an info log entry.

    >>> info("hello")  # ignored unless the tracer runs
    """
    desc = _INFO if target is None else log_desc(Level.INFO, target)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


def debug(msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record a debug log entry."""
    desc = _DEBUG if target is None else log_desc(Level.DEBUG, target)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


def trace(msg: object, target: str | None = None, *, properties: Properties | None = None) -> None:
    """Record a trace log entry."""
    desc = _TRACE if target is None else log_desc(Level.TRACE, target)
    if properties is None:
        _log(desc, msg)
    else:
        _log_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), msg)


# ---------------------------------------------------------------------------------------------
# metrics


def metric_desc(name: str, unit: str = "", target: str = DEFAULT_TARGET) -> Any:
    """Return the (cached) metric descriptor."""
    key = (name, unit, target)
    desc = _metric_descs.get(key)
    if desc is None:
        desc = _fast.desc(_binding.DESC_METRIC, name, target, target, "", 0, 0, unit)
        _metric_descs[key] = desc
    return desc


def metric(
    name: str, value: float, unit: str = "", target: str | None = None, *, properties: Properties | None = None
) -> None:
    """Record a metric: an ``int`` → ``IntegerMetricEvent``, anything else → ``FloatMetricEvent``.

    With ``properties``, the tagged events (``TaggedIntegerMetricEvent`` /
    ``TaggedFloatMetricEvent``): ``property_get(properties, 'k')`` in ``measures``.

    >>> metric("queue.length", 3, unit="items")
    >>> metric("query_denied", 1, properties={"rule_id": "r42"})
    """
    key = (name, unit, target or DEFAULT_TARGET)
    desc = _metric_descs.get(key)
    if desc is None:
        desc = metric_desc(*key)
    if properties is None:
        _metric(desc, value)
    else:
        _metric_tagged(desc, properties if type(properties) is PropertySet else property_set(properties), value)
