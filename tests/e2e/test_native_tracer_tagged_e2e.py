"""Tagged metrics and logs of the native tracer, through the real ingestion service into PostgreSQL
and the object store, read back with SQL: ``property_get(properties, …)`` in ``measures`` and
``log_entries`` (JIT ``view_instance`` and the global views after a daemon pass) returns exactly
the values and properties recorded, from a Python process and from a C program."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

TRACING_TESTS = str(Path(__file__).resolve().parents[1] / "tracing")
if TRACING_TESTS not in sys.path:
    sys.path.insert(0, TRACING_TESTS)

from c_programs import build_program, send_items  # noqa: E402
from test_c_tagged import expected_worker_events, run_tagged  # noqa: E402

from sirius import tracing  # noqa: E402
from sirius.lakehouse import MaintenanceDaemon, PassKind, QueryRange, SessionFactory  # noqa: E402
from sirius.tracing import process_info_from_cbor  # noqa: E402

DENIED = [("r1", 1), ("r2", 2), ("r1", 3), ("r3", 40)]


async def _sql(stack, sql: str, query_range: QueryRange | None = None) -> dict[str, list]:
    session = await SessionFactory(stack.stack.lakehouse).create(query_range)
    return (await session.sql(sql)).to_arrow_table().to_pydict()


def test_python_tagged_events_are_queryable_by_property(stack_factory):
    stack = stack_factory(daemon=False)
    process_id = tracing.init(url=stack.url, properties={"test": "e2e-tagged"})
    try:
        for rule, value in DENIED:
            tracing.metric("query_denied", value, unit="count", properties={"rule_id": rule, "db": "main"})
        tracing.metric("query_latency", 2.5, unit="ms", properties={"rule_id": "r1"})
        tracing.metric("query_denied_total", 4)  # untagged: an empty properties column
        tracing.info("denied a query", properties={"k": "v", "rule_id": "r1"})
        tracing.warn("overridden", properties={"k": "w", "target": "audit", "level": "error"})
        tracing.info("plain line")
        assert tracing.flush(timeout=60)
        assert tracing.stats().blocks_sent == tracing.stats().blocks_produced
    finally:
        assert tracing.shutdown(timeout=30)

    measures = stack.call(
        _sql(
            stack,
            "SELECT name, value, property_get(properties, 'rule_id') AS rule_id, "
            "property_get(properties, 'db') AS db "
            f"FROM view_instance('measures', '{process_id}') ORDER BY time",
        )
    )
    assert list(zip(measures["name"], measures["value"], measures["rule_id"], measures["db"], strict=True)) == [
        *[("query_denied", float(v), rule, "main") for rule, v in DENIED],
        ("query_latency", 2.5, "r1", None),
        ("query_denied_total", 4.0, None, None),
    ]
    logs = stack.call(
        _sql(
            stack,
            "SELECT msg, level, target, property_get(properties, 'k') AS k, "
            "property_get(properties, 'rule_id') AS rule_id "
            f"FROM view_instance('log_entries', '{process_id}') ORDER BY time",
        )
    )
    assert list(zip(logs["msg"], logs["level"], logs["target"], logs["k"], logs["rule_id"], strict=True)) == [
        ("denied a query", 4, "python", "v", "r1"),
        ("overridden", 2, "audit", "w", None),  # target and level properties override the call's
        ("plain line", 4, "python", None, None),
    ]

    async def global_views():
        lake = stack.stack.lakehouse
        # A minute pass scheduled a minute from now covers every insert made so far.
        await MaintenanceDaemon(lake).run_pass(PassKind.MINUTE, lake.now_ns() + 120 * 1_000_000_000)
        everything = QueryRange(None, None)
        measures = await _sql(
            stack,
            "SELECT name, value, property_get(properties, 'rule_id') AS rule_id FROM measures "
            f"WHERE name = 'query_denied' AND process_id = '{process_id}' ORDER BY time",
            everything,
        )
        logs = await _sql(
            stack,
            "SELECT msg, property_get(properties, 'k') AS k FROM log_entries "
            f"WHERE process_id = '{process_id}' AND property_get(properties, 'k') IS NOT NULL ORDER BY time",
            everything,
        )
        return measures, logs

    measures, logs = stack.call(global_views())
    assert list(zip(measures["name"], measures["value"], measures["rule_id"], strict=True)) == [
        ("query_denied", float(v), rule) for rule, v in DENIED
    ]
    assert list(zip(logs["msg"], logs["k"], strict=True)) == [("denied a query", "v"), ("overridden", "w")]


def test_c_program_tagged_events_are_queryable_by_property(stack_factory, tmp_path):
    exe = build_program("emit_tagged", tmp_path)
    threads, iterations = 3, 100
    report, items = run_tagged(exe, tmp_path, threads, iterations)
    assert report["dropped"] == 0
    stack = stack_factory(daemon=False)
    send_items(stack.url, items)
    (process_id,) = [process_info_from_cbor(body).process_id for kind, _nb, body in items if kind == "process"]

    measures = stack.call(
        _sql(
            stack,
            "SELECT name, value, property_get(properties, 'rule_id') AS rule_id, "
            "property_get(properties, 'worker') AS worker "
            f"FROM view_instance('measures', '{process_id}') WHERE name = 'query_denied'",
        )
    )
    want_metrics, want_logs = expected_worker_events(threads, iterations)
    expected = collections.Counter(
        ("query_denied", float(value), dict(props)["rule_id"], dict(props)["worker"])
        for _type, name, _unit, value, props in want_metrics
        if name == "query_denied"
    )
    expected[("query_denied", float(2**64 - 1), None, None)] += 1  # the set-0 edge case: no properties
    got = collections.Counter(
        zip(measures["name"], measures["value"], measures["rule_id"], measures["worker"], strict=True)
    )
    assert got == expected
    logs = stack.call(
        _sql(
            stack,
            "SELECT msg, level, property_get(properties, 'k') AS k "
            f"FROM view_instance('log_entries', '{process_id}') WHERE msg LIKE 'denied %'",
        )
    )
    assert collections.Counter(zip(logs["msg"], logs["level"], logs["k"], strict=True)) == collections.Counter(
        (msg, level, dict(props)["k"]) for msg, level, _target, props in want_logs
    )
