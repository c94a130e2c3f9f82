"""``tracing.stats()`` accounts for every event exactly once: delivered, dropped, spooled or pending."""

from __future__ import annotations

from pathlib import Path

from tracer_helpers import WatchedSink, hammer_spans

from sirius import tracing
from sirius.tracing import TracerStats


def _balance(s: TracerStats) -> tuple[int, int]:
    return (
        s.events_emitted + s.events_internal,
        s.events_delivered + s.events_dropped + s.events_spooled + s.events_pending,
    )


def test_losses_in_thread_buffers_are_counted_once() -> None:
    sink = WatchedSink()
    tracing.init(sink=sink, chunk_size=1024, chunks_per_thread=2, block_size=64 * 1024, flush_period=60)
    try:
        hammer_spans(threads=4, spans=20_000)
        assert tracing.flush(30)
        quiet = tracing.stats()  # nothing moves after a flush: the identity holds before shutdown too
    finally:
        assert tracing.shutdown(10)
    s = tracing.stats()
    assert quiet == s
    assert s.events_emitted == 4 * 20_000 * 2  # not recorded + dropped-again (the old double count)
    assert s.events_lost > 0
    assert s.events_internal > 0  # each loss report is a log and a metric in the data
    assert s.events_pending == 0
    assert s.events_delivered == sum(b.nb_objects for b in sink.blocks)
    assert _balance(s) == (s.events_emitted + s.events_internal,) * 2


def test_an_unreachable_service_at_exit_spools_every_event(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    tracing.init(url="http://127.0.0.1:9", spool_dir=spool, chunk_size=1 << 20, flush_period=60)
    try:
        hammer_spans(threads=1, spans=5_000)
    finally:
        assert not tracing.shutdown(10)  # nothing could be delivered
    s = tracing.stats()
    assert (s.events_emitted, s.events_lost, s.events_delivered, s.events_pending) == (10_000, 0, 0, 0)
    assert s.events_spooled == 10_000
    assert s.blocks_spooled == s.blocks_produced
    assert _balance(s) == (10_000, 10_000)
    assert list(spool.rglob("*.entry"))


def test_a_full_spool_drops_and_counts(tmp_path: Path) -> None:
    tracing.init(
        url="http://127.0.0.1:9",
        spool_dir=tmp_path / "spool",
        spool_max_bytes=4096,  # the process and stream bodies fit, blocks do not all fit
        chunk_size=1 << 20,
        block_size=16 * 1024,
        flush_period=60,
    )
    try:
        hammer_spans(threads=1, spans=20_000)
    finally:
        tracing.shutdown(10)
    s = tracing.stats()
    assert s.events_dropped > 0
    assert s.events_emitted == 40_000
    assert s.events_emitted == s.events_delivered + s.events_dropped + s.events_spooled
    assert s.events_pending == 0
