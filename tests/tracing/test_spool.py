"""The spool: entry format, atomic writes, corruption handling, claiming, and the sink's accounting."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.tracing import SpoolConfig, SpoolEntry, SpoolEntryError, decode_spool_entry, encode_spool_entry
from sirius.tracing._sink import SinkConfig, TelemetrySink, TransportResponse
from sirius.tracing._spool import LOCK_NAME, SpoolWriter, write_atomically
from sirius.tracing._spool_delivery import deliver_spool

PROCESS = SpoolEntry("process", b"process-body")
STREAM = SpoolEntry("stream", b"stream-body")


def _block(i: int, events: int = 10) -> SpoolEntry:
    return SpoolEntry("block", f"block-{i}".encode() * 8, events)


class Recorder:
    """A service that acknowledges everything and records what it got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, bytes]] = []

    def __call__(self, path: str, body: bytes) -> int:
        with self.lock:
            self.got.append((path, body))
        return 200


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.entry"))


# -- entry format ------------------------------------------------------------------------------


def test_entry_round_trip_and_damage_is_detected() -> None:
    data = encode_spool_entry(_block(1, 42))
    assert decode_spool_entry(data) == _block(1, 42)
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    for bad in (bytes(flipped), data[:-1], data + b"x", data[:10], b"", b"XXXX" + data[4:]):
        with pytest.raises(SpoolEntryError):
            decode_spool_entry(bad)


entries = st.builds(
    SpoolEntry,
    st.sampled_from(["process", "stream", "block"]),
    st.binary(max_size=512),
    st.integers(min_value=0, max_value=2**32 - 1),
)


@given(entries)
def test_decoder_inverts_the_encoder(entry: SpoolEntry) -> None:
    assert decode_spool_entry(encode_spool_entry(entry)) == entry


@settings(max_examples=300)
@given(st.binary(max_size=96), st.data())
def test_decoder_accepts_only_intact_entries(data: bytes, draw: st.DataObject) -> None:
    """Arbitrary bytes, or a valid entry with one byte changed: an entry back only when intact."""
    if draw.draw(st.booleans()):
        valid = encode_spool_entry(draw.draw(entries))
        index = draw.draw(st.integers(min_value=0, max_value=len(valid) - 1))
        data = valid[:index] + bytes([valid[index] ^ draw.draw(st.integers(1, 255))]) + valid[index + 1 :]
    try:
        entry = decode_spool_entry(data)
    except SpoolEntryError:
        return
    assert encode_spool_entry(entry) == data  # anything accepted is exactly a well-formed entry


# -- writing and delivering --------------------------------------------------------------------


def test_a_live_writer_holds_its_directory_and_metadata_precedes_blocks(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path / "spool")
    writer = SpoolWriter(config)
    assert writer.write(_block(1), [PROCESS, STREAM])
    assert writer.write(_block(2), [PROCESS, STREAM])  # metadata already there: not rewritten
    service = Recorder()
    stats, unreachable = deliver_spool(config, service)
    assert (stats.busy_directories, stats.delivered_items, unreachable) == (1, 0, False)
    writer.close()
    stats, _ = deliver_spool(config, service)
    assert [path for path, _ in service.got] == [
        "/ingestion/insert_process",
        "/ingestion/insert_stream",
        "/ingestion/insert_block",
        "/ingestion/insert_block",
    ]
    assert (stats.delivered_blocks, stats.delivered_events, stats.remaining_entries) == (2, 20, 0)
    assert list(config.directory.iterdir()) == []  # the session directory is gone


def test_crash_mid_write_leaves_no_entry_and_corrupt_entries_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SpoolConfig(tmp_path / "spool")
    writer = SpoolWriter(config)
    assert writer.write(_block(1), [PROCESS])
    session = writer.directory
    assert session is not None

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    assert not writer.write(_block(2))  # the rename never happened: only a temporary file
    monkeypatch.undo()
    assert writer.failures == 1
    assert [p.name for p in session.iterdir() if p.name.startswith(".tmp-")]
    # a damaged entry (e.g. a disk error after the rename) and a good one after it
    write_atomically(session, "000000000100.entry", encode_spool_entry(_block(3))[:-3])
    write_atomically(session, "000000000101.entry", encode_spool_entry(_block(4)))
    writer.close()
    service = Recorder()
    stats, _ = deliver_spool(config, service)
    assert stats.corrupt_entries == 1
    assert [body for path, body in service.got if path.endswith("block")] == [_block(1).body, _block(4).body]
    assert not session.exists()


def test_the_cap_bounds_the_whole_spool(tmp_path: Path) -> None:
    size = len(encode_spool_entry(_block(1)))
    config = SpoolConfig(tmp_path / "spool", max_bytes=3 * size)
    first, second = SpoolWriter(config), SpoolWriter(config)
    assert first.write(_block(1))
    assert first.write(_block(2))
    assert second.write(_block(3))
    assert not second.write(_block(4))
    first.close()
    second.close()
    assert len(_entries(config.directory)) == 3


def test_two_deliverers_never_deliver_an_entry_twice(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path / "spool")
    expected = []
    for s in range(6):
        writer = SpoolWriter(config)
        for i in range(20):
            entry = _block(s * 100 + i)
            expected.append(entry.body)
            assert writer.write(entry)
        writer.close()
    service = Recorder()
    start = threading.Barrier(2)

    def deliver() -> None:
        start.wait()
        deliver_spool(config, service)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deliver_spool(config, service)  # whatever a busy directory kept from one of them
    assert sorted(body for _, body in service.got) == sorted(expected)


def test_unreachable_service_keeps_entries_for_later(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path / "spool")
    writer = SpoolWriter(config)
    for i in range(3):
        assert writer.write(_block(i), [PROCESS])
    writer.close()

    def down(path: str, body: bytes) -> int:
        raise ConnectionRefusedError

    stats, unreachable = deliver_spool(config, down)
    assert unreachable
    assert stats.remaining_entries == 4
    assert (config.directory / writer.directory.name / LOCK_NAME).exists()  # type: ignore[union-attr]
    stats, unreachable = deliver_spool(config, lambda path, body: 503)
    assert unreachable
    assert stats.remaining_entries == 4
    stats, unreachable = deliver_spool(config, Recorder())
    assert not unreachable
    assert (stats.delivered_items, stats.remaining_entries) == (4, 0)


def test_spool_config_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SIRIUS_SPOOL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert SpoolConfig.resolve() == SpoolConfig(tmp_path / "sirius" / "spool", 256 * 1024 * 1024)
    monkeypatch.setenv("SIRIUS_SPOOL_DIR", "off")
    assert SpoolConfig.resolve() is None
    assert SinkConfig.resolve().spool is None
    monkeypatch.setenv("SIRIUS_SPOOL_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("SIRIUS_SPOOL_MAX_BYTES", "1000")
    assert SpoolConfig.resolve() == SpoolConfig(tmp_path / "s", 1000)
    assert SpoolConfig.resolve(tmp_path / "x", 5) == SpoolConfig(tmp_path / "x", 5)
    monkeypatch.setenv("SIRIUS_SPOOL_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="SIRIUS_SPOOL_MAX_BYTES"):
        SpoolConfig.resolve()


# -- the sink ----------------------------------------------------------------------------------


class Down:
    def post(self, path: str, body: bytes) -> TransportResponse:
        raise ConnectionRefusedError

    def close(self) -> None:
        pass


class Up:
    def __init__(self) -> None:
        self.record = Recorder()

    def post(self, path: str, body: bytes) -> TransportResponse:
        return TransportResponse(self.record(path, body))

    def close(self) -> None:
        pass


def _sink(transport: object, spool: SpoolConfig | None, **config: object) -> TelemetrySink:
    cfg = SinkConfig(url="http://127.0.0.1:9", initial_backoff=0.001, max_backoff=0.01, spool=spool, **config)  # type: ignore[arg-type]
    return TelemetrySink(cfg, transport_factory=lambda _c: transport)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("cap_blocks", [1000, 3])
def test_sink_accounts_for_every_event_and_the_next_sink_delivers_the_spool(tmp_path: Path, cap_blocks: int) -> None:
    body = b"b" * 200
    spool = SpoolConfig(tmp_path / "spool", max_bytes=cap_blocks * 300 + 100)
    sink = _sink(Down(), spool, max_queue_bytes=1000)  # the queue holds 5 blocks; the rest spills at once
    sink.send_encoded("process", b"p" * 20)
    sink.send_encoded("stream", b"s" * 20)
    given = 0
    for i in range(12):
        sink.send_encoded("block", body, i + 1)
        given += i + 1
    assert not sink.shutdown(timeout=5)  # the service never answered
    s = sink.stats()
    assert s.sent_events + s.dropped_events + s.spooled_events == given
    assert s.queued_events == s.queued_items == 0
    if cap_blocks == 3:
        assert s.dropped_blocks == 12 - s.spooled_blocks > 0
    else:
        assert (s.spooled_blocks, s.spooled_events, s.dropped_events) == (12, given, 0)
    # the next process's sink, with the same spool, delivers it (metadata first)
    up = Up()
    nxt = _sink(up, spool)
    assert nxt.wait_recovered(timeout=60)
    paths = [path for path, _ in up.record.got]
    assert paths[:2] == ["/ingestion/insert_process", "/ingestion/insert_stream"]
    assert paths.count("/ingestion/insert_block") == s.spooled_blocks
    r = nxt.stats()
    assert (r.recovered_blocks, r.recovered_events) == (s.spooled_blocks, s.spooled_events)
    assert nxt.shutdown(timeout=5)
    assert _entries(spool.directory) == []


def test_a_sink_without_spool_counts_what_it_loses(tmp_path: Path) -> None:
    sink = _sink(Down(), None)
    sink.send_encoded("process", b"p")
    sink.send_encoded("block", b"b" * 10, 7)
    assert not sink.shutdown(timeout=5)
    s = sink.stats()
    assert (s.dropped_blocks, s.dropped_events, s.spooled_events) == (1, 7, 0)


class Switch:
    """A service that is down until ``up`` is set, then acknowledges and records everything."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.record = Recorder()

    def post(self, path: str, body: bytes) -> TransportResponse:
        if not self.up.is_set():
            raise ConnectionRefusedError
        return TransportResponse(self.record(path, body))

    def close(self) -> None:
        pass


def test_a_live_sink_delivers_what_it_spooled_once_its_queue_drains(tmp_path: Path) -> None:
    spool = SpoolConfig(tmp_path / "spool")
    service = Switch()
    sink = _sink(service, spool, max_queue_bytes=1000)  # with the metadata, 4 blocks fit; 8 spill
    sink.send_encoded("process", b"p" * 20)
    sink.send_encoded("stream", b"s" * 20)
    given = 0
    for i in range(12):
        sink.send_encoded("block", bytes([i]) * 200, i + 1)
        given += i + 1
    spilled = sink.stats()
    assert (spilled.spooled_blocks, spilled.queued_items) == (8, 2 + 4)
    service.up.set()
    assert sink.flush(timeout=60)
    assert sink.wait_recovered(timeout=60)
    s = sink.stats()
    assert s.sent_events + s.recovered_events == given
    assert (s.recovered_blocks, s.recovered_events) == (s.spooled_blocks, s.spooled_events)
    blocks = [body for path, body in service.record.got if path.endswith("block")]
    assert sorted(blocks) == sorted(bytes([i]) * 200 for i in range(12))  # each exactly once
    assert sink.shutdown(timeout=5)
    assert _entries(spool.directory) == []
