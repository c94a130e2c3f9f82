"""The native tracer from Python: spans (sync, async, generators, exceptions), logs, metrics,
thread streams, times, identity, lifecycle, drops. Blocks are decoded with the lakehouse reader."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from tracer_helpers import WatchedSink, decode_sink, hammer_spans, is_internal, span_name, summary

from sirius import tracing
from sirius.tracing import Level, TracingError, level_from_python


def _flush_and_decode(sink):
    assert tracing.flush(timeout=20)
    return decode_sink(sink)


def test_thread_spans_nest_and_name_the_stream(tracer_sink):
    @tracing.span
    def inner():
        return 1

    class Service:
        @tracing.span(name="Service.call")
        def call(self, x):
            return inner() + x

    with tracing.span("outer"):
        assert Service().call(1) == 2
    out = tracing.span("outer")
    with out:
        pass
    decoded = _flush_and_decode(tracer_sink)
    events = decoded.thread_events(threading.get_native_id())
    assert summary(events) == [
        ("BeginThreadSpanEvent", "outer"),
        ("BeginThreadSpanEvent", "Service.call"),
        ("BeginThreadSpanEvent", "test_thread_spans_nest_and_name_the_stream.<locals>.inner"),
        ("EndThreadSpanEvent", "test_thread_spans_nest_and_name_the_stream.<locals>.inner"),
        ("EndThreadSpanEvent", "Service.call"),
        ("EndThreadSpanEvent", "outer"),
        ("BeginThreadSpanEvent", "outer"),
        ("EndThreadSpanEvent", "outer"),
    ]
    (stream,) = [
        s for s in decoded.streams_tagged("cpu") if s.properties["thread-id"] == str(threading.get_native_id())
    ]
    assert stream.properties["thread-name"] == threading.current_thread().name
    desc = events[2]["thread_span_desc"]
    assert desc["target"] == __name__
    assert desc["file"] == __file__
    times = [e["time"] for e in events]
    assert times == sorted(times)


def test_exceptions_end_the_span_and_propagate(tracer_sink):
    @tracing.span
    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        boom()
    with pytest.raises(ValueError, match="inside"), tracing.span("guarded"):
        raise ValueError("inside")
    events = _flush_and_decode(tracer_sink).thread_events(threading.get_native_id())
    assert [t for t, _ in summary(events)] == ["BeginThreadSpanEvent", "EndThreadSpanEvent"] * 2
    assert [n for _, n in summary(events)][2:] == ["guarded", "guarded"]


def test_generators_get_a_span_per_resumption(tracer_sink):
    @tracing.span
    def numbers(n):
        for i in range(n):
            received = yield i
            if received:
                yield received

    gen = numbers(2)
    assert next(gen) == 0
    assert gen.send("echo") == "echo"
    assert list(gen) == [1]
    thrower = numbers(5)
    next(thrower)
    with pytest.raises(RuntimeError):
        thrower.throw(RuntimeError("stop"))
    events = _flush_and_decode(tracer_sink).thread_events(threading.get_native_id())
    kinds = [t for t, _ in summary(events)]
    assert kinds == ["BeginThreadSpanEvent", "EndThreadSpanEvent"] * (len(kinds) // 2)
    assert len(kinds) == 2 * (4 + 2)  # 4 resumptions of gen (incl. exhaustion), 2 of thrower


def test_async_functions_get_async_spans_with_parents(tracer_sink):
    @tracing.span
    async def leaf(i):
        await asyncio.sleep(0)
        return i

    @tracing.span
    async def root():
        return sum(await asyncio.gather(leaf(1), leaf(2)))

    @tracing.span
    async def failing():
        await asyncio.sleep(0)
        raise OSError("no")

    async def main():
        assert await root() == 3
        with pytest.raises(OSError, match="no"):
            await failing()

    asyncio.run(main())
    events = [e for e in _flush_and_decode(tracer_sink).tagged_events("cpu") if "span_desc" in e]
    begins = {e["span_id"]: e for e in events if e["type"] == "BeginAsyncSpanEvent"}
    ends = {e["span_id"]: e for e in events if e["type"] == "EndAsyncSpanEvent"}
    assert begins.keys() == ends.keys()
    assert len(begins) == 4
    roots = [e for e in begins.values() if e["span_desc"]["name"].endswith("root")]
    leaves = [e for e in begins.values() if e["span_desc"]["name"].endswith("leaf")]
    (root_event,) = roots
    assert (root_event["parent_span_id"], root_event["depth"]) == (0, 0)
    assert {(e["parent_span_id"], e["depth"]) for e in leaves} == {(root_event["span_id"], 1)}
    for span_id, begin in begins.items():
        assert ends[span_id]["time"] >= begin["time"]
        assert (ends[span_id]["parent_span_id"], ends[span_id]["depth"]) == (begin["parent_span_id"], begin["depth"])


def test_async_generators_get_an_async_span_per_step(tracer_sink):
    @tracing.span
    async def ticker(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main():
        return [i async for i in ticker(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    events = [e for e in _flush_and_decode(tracer_sink).tagged_events("cpu") if "span_desc" in e]
    assert len(events) == 2 * 4
    assert len({e["span_id"] for e in events}) == 4


def test_async_span_names_spans_at_run_time(tracer_sink):
    async def fetch(url):
        async with tracing.async_span(f"fetch {url}") as outer:
            assert isinstance(outer, tracing.AsyncSpan)
            await asyncio.sleep(0)
            with tracing.async_span("parse", target="app.parse"):
                await asyncio.sleep(0)

    @tracing.span
    async def handler():
        await asyncio.gather(fetch("/a"), fetch("/b"))

    line = fetch.__code__.co_firstlineno + 1
    asyncio.run(handler())
    cpu_events = _flush_and_decode(tracer_sink).tagged_events("cpu")
    events = [e for e in cpu_events if "span_location" in e]
    begins = {e["span_id"]: e for e in events if e["type"] == "BeginAsyncNamedSpanEvent"}
    ends = {e["span_id"]: e for e in events if e["type"] == "EndAsyncNamedSpanEvent"}
    assert begins.keys() == ends.keys()
    assert sorted(e["name"] for e in begins.values()) == ["fetch /a", "fetch /b", "parse", "parse"]
    (handler_begin,) = [
        e for e in cpu_events if e["type"] == "BeginAsyncSpanEvent" and e["span_desc"]["name"].endswith("handler")
    ]
    fetches = {e["name"]: e for e in begins.values() if e["name"].startswith("fetch")}
    for fetch_begin in fetches.values():
        assert (fetch_begin["parent_span_id"], fetch_begin["depth"]) == (handler_begin["span_id"], 1)
        assert fetch_begin["span_location"]["file"] == __file__
        assert fetch_begin["span_location"]["line"] == line
        assert fetch_begin["span_location"]["target"] == __name__
    parses = [e for e in begins.values() if e["name"] == "parse"]
    assert {(e["parent_span_id"], e["depth"]) for e in parses} == {(f["span_id"], 2) for f in fetches.values()}
    assert {e["span_location"]["target"] for e in parses} == {"app.parse"}
    for span_id, begin in begins.items():
        end = ends[span_id]
        assert end["time"] >= begin["time"]
        assert (end["name"], end["parent_span_id"], end["depth"]) == (
            begin["name"],
            begin["parent_span_id"],
            begin["depth"],
        )


def test_logs_levels_targets_and_metrics(tracer_sink):
    tracing.info("hello")
    tracing.warn("careful", target="app.db")
    tracing.error("bad")
    tracing.debug("detail")
    tracing.trace("noise")
    tracing.fatal("dead")
    tracing.log(Level.INFO, 42)
    tracing.info("ünïcødé \ud800")  # a lone surrogate is repaired, not raised
    tracing.metric("requests", 7, unit="count")
    tracing.metric("latency", 1.5, unit="ms")
    tracing.metric("huge", 2**70)
    tracing.metric("negative", -3)
    decoded = _flush_and_decode(tracer_sink)
    logs = decoded.tagged_events("log")
    got = [(e["msg"], e["desc"]["level"], e["desc"]["target"]) for e in logs]
    assert got == [
        ("hello", 4, "python"),
        ("careful", 3, "app.db"),
        ("bad", 2, "python"),
        ("detail", 5, "python"),
        ("noise", 6, "python"),
        ("dead", 1, "python"),
        ("42", 4, "python"),
        ("ünïcødé ?", 4, "python"),
    ]
    metrics = decoded.tagged_events("metrics")
    got_metrics = [(e["type"], e["desc"]["name"], e["desc"]["unit"], e["value"]) for e in metrics]
    assert got_metrics[:3] == [
        ("IntegerMetricEvent", "requests", "count", 7),
        ("FloatMetricEvent", "latency", "ms", 1.5),
        ("FloatMetricEvent", "huge", "", float(2**70)),
    ]
    # u64 on the wire: a negative integer arrives as its two's complement
    assert got_metrics[3][3] == 2**64 - 3


def test_logging_handler_maps_levels(tracer_sink):
    logger = logging.getLogger("sirius.test.app")
    logger.setLevel(1)
    logger.propagate = False
    handler = tracing.TracingHandler()
    logger.addHandler(handler)
    try:
        logger.critical("c")
        logger.error("e %s", "arg")
        logger.warning("w")
        logger.info("i")
        logger.debug("d")
        logger.log(5, "t")
    finally:
        logger.removeHandler(handler)
    logs = _flush_and_decode(tracer_sink).tagged_events("log")
    assert [(e["msg"], e["desc"]["level"], e["desc"]["target"]) for e in logs] == [
        ("c", 1, "sirius.test.app"),
        ("e arg", 2, "sirius.test.app"),
        ("w", 3, "sirius.test.app"),
        ("i", 4, "sirius.test.app"),
        ("d", 5, "sirius.test.app"),
        ("t", 6, "sirius.test.app"),
    ]
    assert [level_from_python(n) for n in (60, 45, 35, 25, 15, 1)] == [1, 2, 3, 4, 5, 6]


def test_event_times_match_the_wall_clock(tracer_sink):
    brackets = []
    for i in range(20):
        before = time.time_ns()
        tracing.info(f"t{i}")
        brackets.append((before, time.time_ns()))
    decoded = _flush_and_decode(tracer_sink)
    process = tracing.process_info()
    assert decoded.processes == [process]
    converter = decoded.converter()
    logs = decoded.tagged_events("log")
    times = converter.ticks_to_ns([e["time"] for e in logs]).tolist()
    for (before, after), at in zip(brackets, times, strict=True):
        assert before - 1_000_000 <= at <= after + 1_000_000
    # blocks contain their events
    (block,) = [b for b in decoded.blocks if decoded.streams[b.stream_id].tags == ("log",)]
    begin, end = converter.delta_ticks_to_ns([block.begin_ticks, block.end_ticks]).tolist()
    assert begin <= min(times)
    assert max(times) <= end + 1_000


def test_threads_get_their_own_streams_and_exit_drains(tracer_sink):
    ids: dict[str, int] = {}

    def work(name):
        ids[name] = threading.get_native_id()
        for _ in range(3):
            with tracing.span(name):
                tracing.metric("n", 1)

    threads = [threading.Thread(target=work, args=(f"w{i}",), name=f"worker-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # no flush: each exited thread's last events are sealed by the sink on its own
    def cpu_streams_with_blocks():
        cpu = {s.stream_id for s in tracer_sink.streams if s.tags == ("cpu",)}
        return len({b.stream_id for b in tracer_sink.blocks} & cpu)

    assert tracer_sink.wait_for(lambda: cpu_streams_with_blocks() >= 4)
    decoded = decode_sink(tracer_sink)
    for i in range(4):
        events = decoded.thread_events(ids[f"w{i}"])
        assert summary(events) == [("BeginThreadSpanEvent", f"w{i}"), ("EndThreadSpanEvent", f"w{i}")] * 3
        (stream,) = [s for s in decoded.streams_tagged("cpu") if s.properties["thread-id"] == str(ids[f"w{i}"])]
        assert stream.properties["thread-name"] == f"worker-{i}"


def test_flush_on_period_without_an_explicit_flush():
    sink = WatchedSink()
    tracing.init(sink=sink, flush_period=0.05)
    try:
        tracing.info("periodic")
        assert sink.wait_for(lambda: any(s.tags == ("log",) for s in sink.streams) and sink.blocks)
        logs = decode_sink(sink).tagged_events("log")
        assert [e["msg"] for e in logs] == ["periodic"]
    finally:
        tracing.shutdown(10)


def test_identity_and_lifecycle():
    assert not tracing.is_running()
    tracing.info("ignored before init")
    with tracing.span("ignored"):
        pass
    sink = WatchedSink()
    first = tracing.init(sink=sink, properties={"role": "first"})
    try:
        with pytest.raises(TracingError, match="already"):
            tracing.init(sink=sink)
        info = tracing.process_info()
        assert info.process_id == first == tracing.process_id()
        assert info.properties["role"] == "first"
        assert info.properties["pid"]
        assert info.tsc_frequency > 0
        tracing.info("first")
    finally:
        assert tracing.shutdown(10)
    assert not tracing.is_running()
    assert tracing.shutdown(1)  # idempotent
    assert not tracing.flush(1)
    tracing.info("ignored after shutdown")
    second_sink = WatchedSink()
    second = tracing.init(sink=second_sink)
    try:
        assert second != first
        tracing.info("second")
        assert tracing.flush(20)
    finally:
        tracing.shutdown(10)
    assert [e["msg"] for e in decode_sink(sink).tagged_events("log")] == ["first"]
    assert [e["msg"] for e in decode_sink(second_sink).tagged_events("log")] == ["second"]
    assert {b.process_id for b in second_sink.blocks} == {second}


def test_stats_count_events_and_blocks(tracer_sink):
    for _ in range(10):
        with tracing.span("s"):
            pass
    assert tracing.flush(20)
    stats = tracing.stats()
    assert stats.events_recorded == 20
    assert stats.events_dropped == 0
    assert stats.events_emitted == 20
    assert stats.blocks_produced == stats.blocks_sent == len(tracer_sink.blocks) == 1  # one cpu block
    assert stats.threads_attached == 1


def test_descriptors_reject_foreign_objects():
    from sirius.tracing._binding import fast_module

    fast = fast_module()
    with pytest.raises(TypeError):
        fast.begin(object())
    with pytest.raises(TypeError):
        fast.log("not a descriptor", "x")
    with pytest.raises(TypeError):
        tracing.span("x")(1, 2)


def test_stress_small_buffers_received_plus_dropped_equals_emitted():
    sink = WatchedSink()
    tracing.init(sink=sink, chunk_size=1024, chunks_per_thread=2, block_size=64 * 1024)
    threads, per_thread = 6, 20_000
    try:
        hammer_spans(threads, per_thread // 2)
        assert tracing.flush(30)
        stats = tracing.stats()
    finally:
        tracing.shutdown(10)
    decoded = decode_sink(sink)
    received = sum(1 for e in decoded.tagged_events("cpu") if span_name(e) == "hot")
    emitted = threads * per_thread
    assert received + stats.events_dropped == emitted
    assert stats.events_recorded == received
    # the loss is visible in the data: a warning per report and a dropped-events metric
    reported = sum(e["value"] for e in decoded.tagged_events("metrics") if is_internal(e))
    assert reported == stats.events_dropped
    warnings = [e for e in decoded.tagged_events("log") if is_internal(e)]
    assert bool(warnings) == (stats.events_dropped > 0)


def test_doctests():
    import doctest

    from sirius.tracing import _api, _logging_handler

    for module in (_api, _logging_handler):
        assert doctest.testmod(module).failed == 0
