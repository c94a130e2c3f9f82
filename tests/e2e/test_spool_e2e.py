"""Nothing the sink could keep is lost: an app that exits while the ingestion service is down spools
its blocks, and the next process's sink (or ``sirius spool flush``) delivers every event exactly
once into the lake (real processes, a real ingestion service and PostgreSQL)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

# Exits through the tracer's own atexit shutdown; the report handler is registered first, so it
# runs after that shutdown (atexit runs handlers last-in, first-out).
APP = textwrap.dedent(
    """
    import atexit, json, sys
    from sirius import tracing

    url, spool, cap, spans = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def report():
        s = tracing.stats()
        fields = {name: getattr(s, name) for name in s.__slots__}
        print(json.dumps({"process_id": str(tracing.process_id()), "emitted": s.events_emitted, **fields}))

    atexit.register(report)
    tracing.init(url=url, spool_dir=spool, spool_max_bytes=cap, chunk_size=1 << 22, block_size=64 * 1024,
                 flush_period=60)
    desc = tracing.span_desc("work")
    for _ in range(spans):
        with desc:
            pass
    tracing.info("exiting")
    """
)

# The next process: a sink over the same spool delivers what the first one left.
NEXT = textwrap.dedent(
    """
    import json, sys
    from sirius.tracing import SinkConfig, TelemetrySink

    sink = TelemetrySink(SinkConfig.resolve(url=sys.argv[1], spool_dir=sys.argv[2]))
    assert sink.wait_recovered(timeout=120)
    sink.shutdown(5)
    s = sink.stats()
    print(json.dumps({"blocks": s.recovered_blocks, "events": s.recovered_events, "corrupt": s.corrupt_spool_entries}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python(script: str, *args: object) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _app_exits_while_down(spool: Path, spans: int, cap: int = 256 << 20) -> tuple[int, dict]:
    port = _free_port()  # nothing listens there
    stats = _python(APP, f"http://127.0.0.1:{port}", spool, cap, spans)
    assert stats["emitted"] == 2 * spans + 1
    assert stats["events_delivered"] == stats["events_pending"] == stats["events_lost"] == 0
    return port, stats


def _lake_events(stack, process_id: str) -> tuple[int, int, int]:
    async def query():
        pool = stack.stack.lake.pool
        blocks, events = await pool.fetchrow(
            "SELECT count(DISTINCT block_id), coalesce(sum(nb_objects), 0) FROM blocks WHERE process_id = $1",
            uuid.UUID(process_id),
        )
        streams = await pool.fetchval("SELECT count(*) FROM streams WHERE process_id = $1", uuid.UUID(process_id))
        return int(blocks), int(events), int(streams)

    return stack.call(query())


def test_the_next_process_delivers_what_an_app_spooled_exactly_once(stack_factory, tmp_path) -> None:
    spool = tmp_path / "spool"
    port, app = _app_exits_while_down(spool, spans=50_000)
    assert app["events_spooled"] == app["emitted"]
    assert app["events_dropped"] == 0
    stack = stack_factory(ingestion_port=port)
    url = f"http://127.0.0.1:{port}"
    first = _python(NEXT, url, spool)
    assert (first["blocks"], first["events"], first["corrupt"]) == (app["blocks_spooled"], app["emitted"], 0)
    again = _python(NEXT, url, spool)  # a third process finds nothing left: nothing twice
    assert (again["blocks"], again["events"]) == (0, 0)
    blocks, events, streams = _lake_events(stack, app["process_id"])
    assert (blocks, events) == (app["blocks_spooled"], app["emitted"])
    assert streams == 2  # the cpu stream of the main thread and the log stream
    assert list(spool.rglob("*.entry")) == []


def test_sirius_spool_flush_delivers_a_spool(stack_factory, tmp_path) -> None:
    spool = tmp_path / "spool"
    port, app = _app_exits_while_down(spool, spans=20_000)
    stack = stack_factory(ingestion_port=port)
    cli = [sys.executable, "-m", "sirius.admin.cli", "spool", "flush", "--spool-dir", str(spool)]
    done = subprocess.run(
        [*cli, "--url", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    table = dict(line.rsplit(None, 1) for line in done.stdout.splitlines())
    assert int(table["delivered events"]) == app["emitted"]
    assert int(table["delivered blocks"]) == app["blocks_spooled"]
    assert _lake_events(stack, app["process_id"])[:2] == (app["blocks_spooled"], app["emitted"])
    again = subprocess.run(
        [*cli, "--url", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    assert _lake_events(stack, app["process_id"])[:2] == (app["blocks_spooled"], app["emitted"])


def test_with_the_spool_full_emitted_is_delivered_plus_dropped(stack_factory, tmp_path) -> None:
    spool = tmp_path / "spool"
    port, app = _app_exits_while_down(spool, spans=50_000, cap=64 * 1024)
    assert app["events_dropped"] > 0
    assert app["events_spooled"] > 0
    assert app["emitted"] == app["events_spooled"] + app["events_dropped"]
    stack = stack_factory(ingestion_port=port)
    delivered = _python(NEXT, f"http://127.0.0.1:{port}", spool)
    _, lake_events, _ = _lake_events(stack, app["process_id"])
    assert delivered["events"] == lake_events == app["events_spooled"]
    assert app["emitted"] == lake_events + app["events_dropped"]
