"""auto_spans: every call in the selected package becomes a thread span (C profile hook on 3.11,
sys.monitoring C callbacks on 3.12+), excluded modules stay silent, and stopping stops."""

from __future__ import annotations

import asyncio
import threading

import pytest
from auto_sample import work
from tracer_helpers import decode_sink, summary

from sirius import tracing

B, E = "BeginThreadSpanEvent", "EndThreadSpanEvent"


def test_auto_spans_of_a_sample_package(tracer_sink):
    tracing.auto_spans(include=["auto_sample"], exclude=["auto_sample.skipped"])
    assert tracing.auto_spans_active()
    assert work.outer(1) == 5
    assert list(work.numbers(2)) == [0, 1]
    with pytest.raises(ValueError, match="boom"):
        work.fails()
    assert work.Greeter().greet("x") == "hello x"
    assert asyncio.run(work.coro(3)) == 4
    worker_ids = []

    def in_thread():
        worker_ids.append(threading.get_native_id())
        work.inner(0)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    tracing.stop_auto_spans()
    assert not tracing.auto_spans_active()
    work.outer(1)  # not recorded any more
    assert tracing.flush(20)
    decoded = decode_sink(tracer_sink)
    main = summary(decoded.thread_events(threading.get_native_id()))
    assert main == [
        (B, "outer"),
        (B, "inner"),
        (E, "inner"),
        (E, "outer"),
        *[(B, "numbers"), (E, "numbers")] * 3,
        (B, "fails"),
        (B, "inner"),
        (E, "inner"),
        (E, "fails"),
        (B, "Greeter.greet"),
        (E, "Greeter.greet"),
        (B, "coro"),
        (B, "inner"),
        (E, "inner"),
        (E, "coro"),
    ]
    assert summary(decoded.thread_events(worker_ids[0])) == [(B, "inner"), (E, "inner")]
    (event,) = [e for e in decoded.thread_events(threading.get_native_id()) if e["type"] == B][:1]
    desc = event["thread_span_desc"]
    assert (desc["target"], desc["module_path"]) == ("auto_sample.work", "auto_sample.work")
    assert desc["file"] == work.__file__
    assert desc["line"] == work.outer.__code__.co_firstlineno


def test_reconfiguring_changes_the_selection(tracer_sink):
    tracing.auto_spans(include=["auto_sample.skipped"])
    work.outer(1)
    tracing.auto_spans(include=["auto_sample"], exclude=["auto_sample.skipped"])
    work.outer(1)
    tracing.stop_auto_spans()
    assert tracing.flush(20)
    events = summary(decode_sink(tracer_sink).thread_events(threading.get_native_id()))
    assert events == [(B, "helper"), (E, "helper"), (B, "outer"), (B, "inner"), (E, "inner"), (E, "outer")]


def test_empty_module_names_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        tracing.auto_spans(include=[""])
