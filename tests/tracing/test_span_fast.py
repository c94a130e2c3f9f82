"""``tracing.span`` from C: the string form answered from the descriptor cache, every other shape
through the Python implementation, and ``with`` binding without allocating."""

from __future__ import annotations

import gc

import pytest
from tracer_helpers import decode_sink, span_name

from sirius import tracing
from sirius.tracing import _api


def test_the_string_form_returns_one_cached_descriptor_per_name(tracer_sink) -> None:
    first = tracing.span("fast-path")
    assert tracing.span("fast-path") is first
    assert _api._span_by_name["fast-path"] is first
    assert tracing.span(name="fast-path") is first  # keyword form: Python path, same descriptor
    other = tracing.span("fast-path", target="elsewhere")
    assert other is not first
    assert _api._span_by_name["fast-path"] is first  # a target is never cached by name alone


def test_with_and_decorator_forms_record_spans(tracer_sink) -> None:
    with tracing.span("outer") as entered:
        assert entered is tracing.span("outer")
        with pytest.raises(ValueError, match="boom"), tracing.span("inner"):
            raise ValueError("boom")

    @tracing.span("named")
    def named() -> int:
        return 1

    @tracing.span
    def bare() -> int:
        return 2

    assert named() + bare() == 3
    assert tracing.flush(30)
    names = [span_name(e) for e in decode_sink(tracer_sink).tagged_events("cpu")]
    assert [n.rsplit(".", 1)[-1] for n in names] == ["outer", "inner", "inner", "outer"] + ["named"] * 2 + ["bare"] * 2


def test_a_bound_enter_outlives_its_descriptor(tracer_sink) -> None:
    desc = tracing.span_desc("short-lived", target="t-short")
    enter, leave = desc.__enter__, desc.__exit__
    assert enter is desc.__enter__  # cached: no allocation per `with`
    _api._span_descs.pop(("short-lived", "t-short"))
    del desc
    gc.collect()
    assert enter() is None  # its Descriptor is gone: the span still begins, nothing to return
    assert leave(None, None, None) is False


def test_bad_arguments_still_raise_type_errors() -> None:
    with pytest.raises(TypeError):
        tracing.span(42)
    with pytest.raises(TypeError):
        tracing.span("a", "b")
