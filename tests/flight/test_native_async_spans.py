"""Named async spans of the native tracer, ingested by a real stack and read from ``async_events``.

A separate process (the tracer is process-wide) traces an asyncio program with
``tracing.async_span(name)`` and delivers to the stack's ingestion service; the unmodified
``micromegas`` client then reads the JIT ``async_events`` view instance of that process.
"""

from __future__ import annotations

import subprocess
import sys

import micromegas

PRODUCER = """
import asyncio, sys
from sirius import tracing

async def fetch(url):
    async with tracing.async_span(f"fetch {url}"):
        await asyncio.sleep(0)
        with tracing.async_span("decode", target="app.codec"):
            await asyncio.sleep(0)

@tracing.span
async def handler():
    await asyncio.gather(fetch("/users/7"), fetch("/orders/9"))

pid = tracing.init(sys.argv[1], exe="async-span-producer", spool_dir="off")
asyncio.run(handler())
assert tracing.shutdown(30)
print(pid)
"""


def test_named_async_spans_appear_in_async_events(lake_flight) -> None:
    stack, uri = lake_flight
    produced = subprocess.run(
        [sys.executable, "-c", PRODUCER, stack.url], capture_output=True, text=True, timeout=60, check=False
    )
    assert produced.returncode == 0, produced.stderr
    process_id = produced.stdout.strip().splitlines()[-1]
    client = micromegas.connect(uri)
    events = client.query(
        "SELECT event_type, name, target, span_id, parent_span_id, depth "
        f"FROM view_instance('async_events', '{process_id}') ORDER BY time"
    )
    by_name = dict(tuple(events.groupby("name")))
    assert set(by_name) == {"handler", "fetch /users/7", "fetch /orders/9", "decode"}, set(by_name)
    for name, group in by_name.items():
        spans = 2 if name == "decode" else 1  # a begin and an end per span
        assert sorted(group["event_type"]) == ["begin"] * spans + ["end"] * spans, name
    (handler_id,) = set(by_name["handler"]["span_id"])
    for url in ("/users/7", "/orders/9"):
        fetch = by_name[f"fetch {url}"]
        assert set(fetch["parent_span_id"]) == {handler_id}
        assert set(fetch["depth"]) == {1}
    fetch_ids = set(by_name["fetch /users/7"]["span_id"]) | set(by_name["fetch /orders/9"]["span_id"])
    assert set(by_name["decode"]["parent_span_id"]) == fetch_ids
    assert set(by_name["decode"]["depth"]) == {2}
    assert set(by_name["decode"]["target"]) == {"app.codec"}
