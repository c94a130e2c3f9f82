"""Tagged events through the C API without Python: a C program built with `cc` from the public
header and the static library interns property sets and records tagged metrics and logs from
several threads (and the edge cases: NULL descriptor, set 0, NULL message, a long message); its
blocks decode with the lakehouse transit reader to exactly those events and properties."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from c_programs import build_program, run_program
from test_c_program import decode


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return build_program("emit_tagged", tmp_path_factory.mktemp("ctagged"))


def run_tagged(exe: Path, tmp_path: Path, threads: int, iterations: int):
    """Run the program; return its stdout pairs and the items it pulled."""
    return run_program(exe, tmp_path / "items.bin", threads, iterations)


def expected_worker_events(threads: int, iterations: int):
    """What each worker of emit_tagged.c records, as comparable tuples."""
    metrics, logs = [], []
    for i in range(threads):
        for j in range(iterations):
            props = (("rule_id", f"r{j % 3}"), ("worker", f"w{i}"))
            metrics.append(("TaggedIntegerMetricEvent", "query_denied", "count", j, props))
            metrics.append(("TaggedFloatMetricEvent", "latency", "ms", j / 4.0, props))
            logs.append((f"denied {i} {j}", 3, "emit_tagged", (("k", f"v{j % 2}"),)))
    return metrics, logs


def _metric_tuple(event):
    desc = event["desc"]
    return (event["type"], desc["name"], desc["unit"], event["value"], tuple(sorted(event["properties"].items())))


def _log_tuple(event):
    desc = event["desc"]
    return (event["msg"], desc["level"], desc["target"], tuple(sorted(event["properties"].items())))


def test_property_set_api_contract(program, tmp_path):
    report, _items = run_tagged(program, tmp_path, threads=1, iterations=1)
    checks = {k: v for k, v in report.items() if k not in {"rc", "emitted", "recorded", "dropped", "blocks"}}
    made, refused = checks.pop("cap_sets_made"), checks.pop("cap_sets_refused")
    # 65,536 distinct sets per process (a few were made before): the rest are 0 and counted
    assert 65_500 < made < 65_536
    assert made + refused == 300 * 300
    assert checks.pop("cap_overflows_counted") == refused
    assert checks == {
        "cap_keeps_old_sets": 1,
        "same_id_any_order": 1,
        "distinct_sets_differ": 1,
        "repeated_name_keeps_last": 1,
        "null_kv_is_0": 1,
        "empty_is_a_set": 1,
        "too_many_is_0": 1,
        "lengths_cut_strings": 1,
        "null_string_is_empty": 1,
    }


def test_tagged_events_decode_exactly(program, tmp_path):
    threads, iterations = 4, 300
    report, items = run_tagged(program, tmp_path, threads, iterations)
    assert report["rc"] == 0
    assert report["dropped"] == 0
    assert report["recorded"] == report["emitted"] == threads * iterations * 3 + 5
    decoded = decode(items)
    metric_blocks = [b for b in decoded.blocks if "metrics" in decoded.streams[b.stream_id].tags]
    # the workers flush halfway: their sets recur in later blocks, each of which must carry them
    assert len(metric_blocks) >= 2
    metrics = [_metric_tuple(e) for e in decoded.tagged_events("metrics")]
    logs = [_log_tuple(e) for e in decoded.tagged_events("log")]
    want_metrics, want_logs = expected_worker_events(threads, iterations)
    edge_metrics = [
        ("TaggedIntegerMetricEvent", "query_denied", "count", 2**64 - 1, ()),  # set 0 → empty; u64 on the wire
        ("TaggedFloatMetricEvent", "edge_float", "ms", 0.25, (("a", "2"),)),
    ]
    edge_logs = [
        ("", 3, "emit_tagged", ()),
        ("overridden", 4, "emit_tagged", (("level", "error"), ("target", "overridden.target"))),
        ("x" * 4000, 3, "emit_tagged", ()),
    ]
    assert collections.Counter(metrics) == collections.Counter(want_metrics + edge_metrics)
    assert collections.Counter(logs) == collections.Counter(want_logs + edge_logs)
    # one thread's events keep their order in the process-wide streams
    for i in range(threads):
        mine = [m[3] for m in metrics if m[0] == "TaggedIntegerMetricEvent" and ("worker", f"w{i}") in m[4]]
        assert mine == list(range(iterations))
        lines = [m[0] for m in logs if m[0].startswith(f"denied {i} ")]
        assert lines == [f"denied {i} {j}" for j in range(iterations)]
    # the edge cases come after the workers (joined first), in call order
    assert metrics[-2:] == edge_metrics
    assert logs[-3:] == edge_logs
