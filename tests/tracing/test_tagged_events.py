"""Tagged metrics and logs from Python: ``properties=`` on ``metric``/``log``/``info``/…, the property
set cache, bad input, threads, and sets recurring across blocks. Blocks are decoded with the
lakehouse transit reader."""

from __future__ import annotations

import collections
import threading

import pytest
from tracer_helpers import decode_sink

from sirius import tracing
from sirius.tracing import Level


def _flush_and_decode(sink):
    assert tracing.flush(timeout=20)
    return decode_sink(sink)


def _metrics(decoded):
    return [
        (e["type"], e["desc"]["name"], e["desc"]["unit"], e["value"], e.get("properties"))
        for e in decoded.tagged_events("metrics")
    ]


def _logs(decoded):
    return [
        (e["type"], e["msg"], e["desc"]["level"], e["desc"]["target"], e.get("properties"))
        for e in decoded.tagged_events("log")
    ]


def test_metrics_with_properties_are_tagged_events(tracer_sink):
    tracing.metric("query_denied", 1, properties={"rule_id": "r1"})
    tracing.metric("query_denied", 2, unit="count", target="app", properties={"rule_id": "r2", "db": "main"})
    tracing.metric("load", 0.5, properties={"core": "1"})
    tracing.metric("huge", 2**70, properties={"k": "v"})
    tracing.metric("plain", 3)
    tracing.metric("empty", 4, properties={})
    assert _metrics(_flush_and_decode(tracer_sink)) == [
        ("TaggedIntegerMetricEvent", "query_denied", "", 1, {"rule_id": "r1"}),
        ("TaggedIntegerMetricEvent", "query_denied", "count", 2, {"db": "main", "rule_id": "r2"}),
        ("TaggedFloatMetricEvent", "load", "", 0.5, {"core": "1"}),
        ("TaggedFloatMetricEvent", "huge", "", float(2**70), {"k": "v"}),
        ("IntegerMetricEvent", "plain", "", 3, None),
        ("TaggedIntegerMetricEvent", "empty", "", 4, {}),
    ]


def test_logs_with_properties_are_tagged_events(tracer_sink):
    tracing.info("hello", properties={"k": "v"})
    tracing.warn("careful", target="app.db", properties={"k": "w"})
    tracing.error("bad", properties={"k": "x"})
    tracing.debug("detail", properties={"k": "y"})
    tracing.trace("noise", properties={"k": "z"})
    tracing.fatal("dead", properties={"k": "0"})
    tracing.log(Level.INFO, 42, properties={"n": "1"})
    tracing.info("ünïcødé \ud800", properties={"ключ": "значение \ud800"})  # repaired, not raised
    tracing.info("override", properties={"target": "elsewhere", "level": "error"})
    tracing.info("untagged")
    assert _logs(_flush_and_decode(tracer_sink)) == [
        ("TaggedLogString", "hello", 4, "python", {"k": "v"}),
        ("TaggedLogString", "careful", 3, "app.db", {"k": "w"}),
        ("TaggedLogString", "bad", 2, "python", {"k": "x"}),
        ("TaggedLogString", "detail", 5, "python", {"k": "y"}),
        ("TaggedLogString", "noise", 6, "python", {"k": "z"}),
        ("TaggedLogString", "dead", 1, "python", {"k": "0"}),
        ("TaggedLogString", "42", 4, "python", {"n": "1"}),
        ("TaggedLogString", "ünïcødé ?", 4, "python", {"ключ": "значение ?"}),
        ("TaggedLogString", "override", 4, "python", {"level": "error", "target": "elsewhere"}),
        ("LogStringEventV2", "untagged", 4, "python", None),
    ]


def test_property_sets_are_interned_once_and_cached_by_items():
    a = tracing.property_set({"x": "1", "y": "2"})
    assert tracing.property_set({"y": "2", "x": "1"}) is a  # same items, any order: the cached set
    assert tracing.property_set(a) is a
    assert len(a) == 2
    assert isinstance(a, tracing.PropertySet)
    assert tracing.property_set({"x": "1"}) is not a


def test_property_set_cache_is_bounded(monkeypatch):
    from sirius.tracing import _api

    monkeypatch.setattr(_api, "PROPERTY_SET_CACHE_SIZE", 8)
    monkeypatch.setattr(_api, "_property_sets", {})
    for i in range(50):
        tracing.property_set({"bounded": str(i)})
        assert len(_api._property_sets) <= 8
    # the oldest are forgotten, the newest kept
    assert set(_api._property_sets) == {frozenset({("bounded", str(i))}) for i in range(42, 50)}


@pytest.mark.parametrize(
    ("properties", "error", "match"),
    [
        ({"a": 1}, TypeError, "property value must be str, got int"),
        ({1: "a"}, TypeError, "property name must be str, got int"),
        ({"a": ["x"]}, TypeError, "mapping of str to str"),
        ("a=b", TypeError, "mapping of str to str, got str"),
        ([("a", "b")], TypeError, "mapping of str to str, got list"),
        ({str(i): "v" for i in range(1025)}, ValueError, "at most 1024 properties"),
    ],
)
def test_bad_properties_raise_and_record_nothing(tracer_sink, properties, error, match):
    with pytest.raises(error, match=match):
        tracing.metric("m", 1, properties=properties)
    with pytest.raises(error, match=match):
        tracing.info("line", properties=properties)
    tracing.info("sentinel")
    decoded = _flush_and_decode(tracer_sink)
    assert decoded.tagged_events("metrics") == []
    assert [e["msg"] for e in decoded.tagged_events("log")] == ["sentinel"]


def test_threads_record_their_own_properties(tracer_sink):
    threads, n = 4, 500

    def run(i: int) -> None:
        for j in range(n):
            tracing.metric("per_thread", j, properties={"thread": str(i), "parity": str(j % 2)})
            tracing.info(f"{i} {j}", properties={"thread": str(i)})

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    decoded = _flush_and_decode(tracer_sink)
    by_thread = collections.defaultdict(list)
    for event in decoded.tagged_events("metrics"):
        props = event["properties"]
        assert props["parity"] == str(event["value"] % 2)
        by_thread[props["thread"]].append(event["value"])
    assert by_thread == {str(i): list(range(n)) for i in range(threads)}
    logs = collections.defaultdict(list)
    for event in decoded.tagged_events("log"):
        thread, j = event["msg"].split()
        assert event["properties"] == {"thread": thread}
        logs[thread].append(int(j))
    assert logs == {str(i): list(range(n)) for i in range(threads)}


def test_a_set_recurs_in_later_blocks(tracer_sink):
    rule = tracing.property_set({"rule_id": "r7"})
    tracing.metric("query_denied", 1, properties=rule)
    tracing.warn("denied", properties=rule)
    assert tracing.flush(timeout=20)
    tracing.metric("query_denied", 2, properties=rule)
    tracing.warn("denied again", properties=rule)
    decoded = _flush_and_decode(tracer_sink)
    metric_blocks = [b for b in decoded.blocks if "metrics" in decoded.streams[b.stream_id].tags]
    assert len(metric_blocks) == 2  # each block carries the set it uses
    assert [(e["value"], e["properties"]) for e in decoded.tagged_events("metrics")] == [
        (1, {"rule_id": "r7"}),
        (2, {"rule_id": "r7"}),
    ]
    assert [(e["msg"], e["properties"]) for e in decoded.tagged_events("log")] == [
        ("denied", {"rule_id": "r7"}),
        ("denied again", {"rule_id": "r7"}),
    ]
    assert tracing.stats().intern_overflows == 0


def test_tagged_calls_before_init_are_ignored():
    assert not tracing.is_running()
    tracing.metric("ignored", 1, properties={"k": "v"})
    tracing.info("ignored", properties={"k": "v"})
