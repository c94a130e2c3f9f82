"""Durable create-only writes: unnamed temporary files, the named fallback, and the directory group commit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sirius.lakehouse import LocalObjectStore, _durable_write
from sirius.lakehouse._durable_write import DirectorySync, write_new_file


@pytest.fixture(params=["native", "unnamed", "named"])
def tmpfile_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """native: the one-call C write (the default); unnamed: the same in Python; named: the fallback."""
    if request.param == "named":
        monkeypatch.setattr(_durable_write._Tmpfile, "supported", False)
    elif not _durable_write._Tmpfile.supported:
        pytest.skip("O_TMPFILE is not available here")
    if request.param != "native":
        monkeypatch.setattr(_durable_write._Native, "enabled", False)
    return str(request.param)


@pytest.mark.parametrize("durable", [True, False])
def test_create_only_same_file_either_way(tmp_path: Path, tmpfile_mode: str, durable: bool) -> None:
    path = tmp_path / "obj"
    syncer = DirectorySync()
    assert write_new_file(path, memoryview(b"first"), durable=durable, syncer=syncer)
    assert not write_new_file(path, b"second", durable=durable, syncer=syncer)
    assert path.read_bytes() == b"first"
    assert path.stat().st_mode & 0o777 == 0o600  # what mkstemp made before: same stored files
    assert os.listdir(tmp_path) == ["obj"]  # no temporary file left behind


def test_missing_directory_is_file_not_found(tmp_path: Path, tmpfile_mode: str) -> None:
    with pytest.raises(FileNotFoundError):
        write_new_file(tmp_path / "gone" / "obj", b"x", durable=True, syncer=None)


def _wait_for(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.001)


def test_group_commit_covers_every_caller_with_a_later_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sync returns after an fsync that started after the call; callers arriving during one share the next."""
    events: list[tuple[str, int]] = []  # ("call"/"start"/"end"/"return", caller or sync number)
    lock = threading.Lock()
    release_first = threading.Event()
    real = _durable_write.fsync_directory
    syncs = [0]

    def recording(directory: Path | str) -> None:
        with lock:
            syncs[0] += 1
            number = syncs[0]
            events.append(("start", number))
        if number == 1:
            release_first.wait(10)
        real(directory)
        with lock:
            events.append(("end", number))

    monkeypatch.setattr(_durable_write, "fsync_directory", recording)
    syncer = DirectorySync()

    def caller(index: int) -> None:
        with lock:
            events.append(("call", index))
        syncer.sync(str(tmp_path))
        with lock:
            events.append(("return", index))

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    _wait_for(lambda: ("start", 1) in events)
    others = [threading.Thread(target=caller, args=(i,)) for i in range(1, 6)]
    for thread in others:
        thread.start()
    _wait_for(lambda: sum(kind == "call" for kind, _ in events) == 6)
    release_first.set()
    for thread in [first, *others]:
        thread.join(10)
    assert syncs[0] == 2  # five callers that arrived during the first fsync shared one
    for index in range(6):
        called = events.index(("call", index))
        returned = events.index(("return", index))
        assert any(
            kind == "start" and called < at and events.index(("end", n)) < returned
            for at, (kind, n) in enumerate(events)
        )
    assert syncer._directories == {}  # nothing kept once no one waits


def test_failed_sync_fails_its_caller_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _durable_write.fsync_directory
    failures = [1]

    def failing_once(directory: Path | str) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OSError(5, "I/O error")
        real(directory)

    monkeypatch.setattr(_durable_write, "fsync_directory", failing_once)
    syncer = DirectorySync()
    with pytest.raises(OSError, match="I/O error"):
        syncer.sync(str(tmp_path))
    syncer.sync(str(tmp_path))  # the next caller syncs for itself
    assert syncer._directories == {}


_WRITER = """
import asyncio, sys
from sirius.lakehouse import LocalObjectStore

async def main():
    store = LocalObjectStore(sys.argv[1])
    async def one(i):
        await store.put_if_absent(f"blobs/p/s/{i:06d}", bytes([i % 251]) * 50_000)
        print(i, flush=True)
    i = 0
    while True:
        await asyncio.gather(*(one(i + k) for k in range(8)))
        i += 8

asyncio.run(main())
"""


def test_acknowledged_objects_survive_kill_9(tmp_path: Path) -> None:
    root = tmp_path / "store"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= 200:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    assert len(acknowledged) >= 200
    for i in acknowledged:
        assert (root / "blobs" / "p" / "s" / f"{i:06d}").read_bytes() == bytes([i % 251]) * 50_000
    # Every name present holds whole data (none half-written), acknowledged or not.
    for path in (root / "blobs" / "p" / "s").iterdir():
        if not path.name.startswith("."):
            i = int(path.name)
            assert path.read_bytes() == bytes([i % 251]) * 50_000


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories fsynced during the test, in order (the real fsync still runs)."""
    calls: list[Path] = []
    real = _durable_write.fsync_directory

    def recording(directory: Path | str) -> None:
        calls.append(Path(directory))
        real(directory)

    monkeypatch.setattr(_durable_write, "fsync_directory", recording)
    return calls


@pytest.mark.parametrize("durable", [True, False])
def test_new_directories_are_fsynced_into_their_parents(tmp_path: Path, synced: list[Path], durable: bool) -> None:
    """A stream's first object creates directories: each new name is made durable in its parent."""
    (tmp_path / "blobs").mkdir()
    target = tmp_path / "blobs" / "p1" / "s1"
    _durable_write.make_directories(target, durable=durable)
    assert target.is_dir()
    # blobs existed: its parent is not synced; p1 and s1 are new, each synced into its parent.
    assert synced == ([tmp_path / "blobs", tmp_path / "blobs" / "p1"] if durable else [])
    synced.clear()
    _durable_write.make_directories(target, durable=durable)  # nothing missing, nothing synced
    assert synced == []


@pytest.mark.parametrize("writer", ["C pool", "Python threads"])
def test_local_store_first_object_of_a_stream_syncs_the_new_directories(
    tmp_path: Path, synced: list[Path], writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the store: the object, its new directory and the directory's name in the parent."""
    if writer == "Python threads":
        monkeypatch.setattr(_durable_write._Native, "enabled", False)
    store = LocalObjectStore(tmp_path / "lake")
    root = store.root

    async def put() -> bool:
        try:
            return await store.put_if_absent("blobs/p1/s1/b1", b"payload")
        finally:
            await store.close()

    assert asyncio.run(put()) is True
    # The new directories' names are synced into their parents by make_directories, either way.
    assert {root, root / "blobs", root / "blobs" / "p1"} <= set(synced)
    if writer == "Python threads":  # the C pool syncs the object's directory in C (strace test)
        assert root / "blobs" / "p1" / "s1" in synced
    assert (root / "blobs" / "p1" / "s1" / "b1").read_bytes() == b"payload"


def test_a_name_that_exists_is_synced_before_returning(tmp_path: Path, tmpfile_mode: str, synced: list[Path]) -> None:
    """A retry finding the object (its first writer maybe not yet synced) still syncs the directory."""
    assert write_new_file(tmp_path / "obj", b"first", durable=True, syncer=None)
    synced.clear()
    assert not write_new_file(tmp_path / "obj", b"retry", durable=True, syncer=None)
    assert synced == [tmp_path]
    assert not write_new_file(tmp_path / "obj", b"retry", durable=False, syncer=None)
    assert synced == [tmp_path]  # not durable: no sync


@pytest.mark.parametrize("writer", ["C pool", "Python threads"])
def test_an_object_in_a_directory_being_created_waits_for_the_directory_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """A second writer linking into a directory the first has just made answers only after its parent fsync.

    The second writer's own fsyncs (its file's, the new directory's) do not make the directory's
    name in its parent durable: a power cut could drop the directory with the acknowledged object.
    """
    if writer == "Python threads":
        monkeypatch.setattr(_durable_write._Native, "enabled", False)
    store = LocalObjectStore(tmp_path / "lake")
    (store.root / "blobs").mkdir()
    stream = store.root / "blobs" / "p1" / "s1"
    naming = threading.Event()  # the first writer syncs the stream directory's name into p1
    release = threading.Event()
    real = _durable_write.fsync_directory

    def held(directory: Path | str) -> None:
        if Path(directory) == stream.parent:
            naming.set()
            release.wait(30)
        real(directory)

    monkeypatch.setattr(_durable_write, "fsync_directory", held)
    answered = threading.Event()

    def put(key: str, done: threading.Event | None) -> None:
        assert asyncio.run(store.put_if_absent(key, key.encode()))
        if done is not None:
            done.set()

    first = threading.Thread(target=put, args=("blobs/p1/s1/a", None))
    first.start()
    try:
        assert naming.wait(30)
        second = threading.Thread(target=put, args=("blobs/p1/s1/b", answered))
        second.start()
        _wait_for(lambda: answered.is_set() or _durable_write._NewDirectories.waiting > 0)
        assert not answered.is_set()  # b is linked and synced, s1's name is not durable yet
    finally:
        release.set()
        first.join(30)
    second.join(30)
    assert answered.is_set()
    assert (stream / "b").read_bytes() == b"blobs/p1/s1/b"
