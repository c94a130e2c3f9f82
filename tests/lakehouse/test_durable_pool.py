"""The C writer pool of the local object store: results, create-only races, group commit, cancellation, close."""

from __future__ import annotations

import asyncio
import importlib.util
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sirius.lakehouse import LocalObjectStore, _durable_pool, _durable_write
from sirius.lakehouse._durable_pool import DurablePool, loop_pool

pytestmark = pytest.mark.skipif(not _durable_write._Tmpfile.supported, reason="O_TMPFILE is not available here")

_T = TypeVar("_T")
Run = Callable[[Coroutine[Any, Any, _T]], _T]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """``asyncio.run`` on asyncio's loop or on uvloop (the services' loop when installed): add_reader on both."""
    if request.param == "asyncio":
        return asyncio.run
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    import uvloop

    def run_on_uvloop(main: Coroutine[Any, Any, _T]) -> _T:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    return run_on_uvloop


def test_many_writes_to_several_directories(tmp_path: Path, run: Run[Any]) -> None:
    directories = [tmp_path / f"d{i}" for i in range(3)]
    for directory in directories:
        directory.mkdir()

    async def main() -> list[bool | None]:
        pool = DurablePool(asyncio.get_running_loop(), threads=4)
        try:
            return await asyncio.gather(
                *(
                    pool.write_new_file(directories[i % 3] / f"o{i}", memoryview(bytes([i]) * (1000 + i)), durable=True)
                    for i in range(90)
                )
            )
        finally:
            pool.close()

    assert run(main()) == [True] * 90
    for i in range(90):
        assert (directories[i % 3] / f"o{i}").read_bytes() == bytes([i]) * (1000 + i)


@pytest.mark.parametrize("durable", [True, False])
def test_racing_writers_of_one_name_exactly_one_wins(tmp_path: Path, durable: bool) -> None:
    async def main() -> list[bool | None]:
        pool = DurablePool(asyncio.get_running_loop(), threads=8)
        try:
            return await asyncio.gather(
                *(pool.write_new_file(tmp_path / "obj", f"writer {i}".encode(), durable=durable) for i in range(16))
            )
        finally:
            pool.close()

    results = asyncio.run(main())
    assert results.count(True) == 1
    assert results.count(False) == 15
    assert (tmp_path / "obj").read_bytes() == f"writer {results.index(True)}".encode()
    assert os.listdir(tmp_path) == ["obj"]


def test_errors_come_back_as_oserror(tmp_path: Path) -> None:
    async def main() -> None:
        pool = DurablePool(asyncio.get_running_loop(), threads=1)
        try:
            with pytest.raises(FileNotFoundError):
                await pool.write_new_file(tmp_path / "missing" / "obj", b"x", durable=True)
            (tmp_path / "file").write_bytes(b"")
            with pytest.raises(NotADirectoryError):
                await pool.write_new_file(tmp_path / "file" / "obj", b"x", durable=True)
            assert await pool.write_new_file(Path("/proc/sirius-never-created"), b"x", durable=True) is None
        finally:
            pool.close()

    asyncio.run(main())


def test_a_cancelled_write_still_completes_with_its_bytes(tmp_path: Path, run: Run[Any]) -> None:
    """Cancelling the awaiting task does not free the data the C thread is writing."""

    async def main() -> None:
        pool = DurablePool(asyncio.get_running_loop(), threads=2)
        try:
            tasks = [
                asyncio.create_task(pool.write_new_file(tmp_path / f"o{i}", bytes([i]) * 200_000, durable=True))
                for i in range(20)
            ]
            await asyncio.sleep(0)  # let every task submit its job
            for task in tasks[::2]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            pool.close()  # waits for whatever is still queued

    run(main())
    for i in range(20):
        assert (tmp_path / f"o{i}").read_bytes() == bytes([i]) * 200_000


def test_close_finishes_queued_writes_and_completes_their_futures(tmp_path: Path, run: Run[Any]) -> None:
    async def main() -> list[bool | None]:
        pool = DurablePool(asyncio.get_running_loop(), threads=1)
        tasks = [
            asyncio.create_task(pool.write_new_file(tmp_path / f"o{i}", b"x" * 50_000, durable=True)) for i in range(8)
        ]
        await asyncio.sleep(0)
        pool.close()
        return await asyncio.gather(*tasks)

    assert run(main()) == [True] * 8
    assert sorted(os.listdir(tmp_path)) == sorted(f"o{i}" for i in range(8))


def test_one_pool_per_loop_shared_by_stores_and_dropped_with_its_loop(tmp_path: Path, run: Run[Any]) -> None:
    stores = [LocalObjectStore(tmp_path / f"lake{i}") for i in range(3)]

    async def put_all(key: str) -> tuple[list[bool], DurablePool]:
        created = [await store.put_if_absent(key, b"payload") for store in stores]
        return created, loop_pool()

    created, first = run(put_all("blobs/p/s/a"))
    assert created == [True] * 3
    assert _durable_pool._loop_pools == {first.loop: first}  # one pool for the three stores
    created, second = run(put_all("blobs/p/s/a"))  # a new loop: the closed loop's pool is stopped
    assert created == [False] * 3  # create-only through the pool too
    assert second is not first
    assert _durable_pool._loop_pools == {second.loop: second}
    assert first._pool is None  # stopped and freed


def _put_in_child(root: str) -> None:
    # a new loop in the child: its pool must be its own, made without the parent's lock or threads
    assert asyncio.run(LocalObjectStore(root).put_if_absent("blobs/p/s/child", b"child"))


def test_a_forked_child_writes_through_a_pool_of_its_own(tmp_path: Path) -> None:
    """multiprocessing forks on Linux: the child must not use (or stop) the parent's pool threads."""
    store = LocalObjectStore(tmp_path / "lake")
    assert asyncio.run(store.put_if_absent("blobs/p/s/parent", b"parent"))  # a pool of a (closed) loop
    child = multiprocessing.get_context("fork").Process(target=_put_in_child, args=(str(tmp_path / "lake"),))
    # Another thread may hold the pools' lock at the fork (here this one does): the child has its own.
    with _durable_pool._loop_pools_lock:
        child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in its first write (a lock or thread of the parent's)")
    assert child.exitcode == 0
    assert (tmp_path / "lake" / "blobs" / "p" / "s" / "child").read_bytes() == b"child"
    assert asyncio.run(store.put_if_absent("blobs/p/s/after", b"after"))  # the parent's pools still work


_EXIT_WITH_QUEUED_WRITES = """
import asyncio, sys
from sirius.lakehouse import LocalObjectStore
async def main():
    store = LocalObjectStore(sys.argv[1])
    await store.put_if_absent("blobs/p/s/first", b"y")
    loop = asyncio.get_running_loop()
    for i in range(3000):
        loop.create_task(store.put_if_absent(f"blobs/p/s/o{i}", bytes([i % 251]) * 3000))
    await asyncio.sleep(0)  # every write queued; asyncio.run then cancels the tasks, the interpreter exits
asyncio.run(main())
"""


def test_interpreter_exit_waits_for_the_queued_writes(tmp_path: Path) -> None:
    """The C threads finish before finalization frees the buffers they read (ASan saw a use-after-free)."""
    run = subprocess.run(
        [sys.executable, "-c", _EXIT_WITH_QUEUED_WRITES, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    directory = tmp_path / "store" / "blobs" / "p" / "s"
    for i in range(3000):
        assert (directory / f"o{i}").read_bytes() == bytes([i % 251]) * 3000


_TRACED = """
import asyncio, sys
from sirius.lakehouse import LocalObjectStore
async def main():
    store = LocalObjectStore(sys.argv[1])
    await store.put_if_absent("blobs/p/s/first", b"y")  # creates the directories
    print("BEGIN", flush=True)
    await store.put_if_absent("blobs/p/s/obj", b"z" * 70_000)
    print("END", flush=True)
    await store.close()
asyncio.run(main())
"""


_STRACE = ("strace", "-ff", "-ttt", "-T", "-e", "trace=openat,write,writev,fsync,linkat", "-o")


def _calls(log_dir: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of every traced syscall of every thread (``strace -ff -ttt -T``)."""
    calls = []
    for path in log_dir.iterdir():
        pending: dict[str, tuple[float, str]] = {}
        for line in path.read_text().splitlines():
            match = re.match(r"(\d+\.\d+) (.*)", line)
            if not match:
                continue
            start, text = float(match.group(1)), match.group(2)
            if text.endswith("<unfinished ...>"):
                pending[text.split("(")[0]] = (start, text)
                continue
            resumed = re.match(r"<\.\.\. (\w+) resumed>(.*)", text)
            if resumed and resumed.group(1) in pending:
                start, head = pending.pop(resumed.group(1))
                text = head.removesuffix("<unfinished ...>") + resumed.group(2)
            took = re.search(r"<(\d+\.\d+)>$", text)
            calls.append((start, float(match.group(1)) + (float(took.group(1)) if took else 0.0), text))
    return sorted(calls)


_TRACED_RETRY = """
import asyncio, sys
from sirius.lakehouse import LocalObjectStore
async def main():
    store = LocalObjectStore(sys.argv[1])
    await store.put_if_absent("blobs/p/s/obj", b"z")
    print("BEGIN", flush=True)
    assert await store.put_if_absent("blobs/p/s/obj", b"z") is False
    print("END", flush=True)
asyncio.run(main())
"""


def _strace(tmp_path: Path, script: str) -> tuple[list[tuple[float, float, str]], Path]:
    logs = tmp_path / "strace"
    logs.mkdir()
    store = tmp_path / "store"
    run = subprocess.run(
        [*_STRACE, str(logs / "t"), sys.executable, "-c", script, str(store)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    return _calls(logs), store / "blobs" / "p" / "s"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_pool_syncs_the_directory_of_a_name_that_exists(tmp_path: Path) -> None:
    """A retry that finds the object answers only after a directory fsync that started after its linkat."""
    calls, directory = _strace(tmp_path, _TRACED_RETRY)
    begin = next(c for c in calls if 'write(1, "BEGIN' in c[2])
    end = next(c for c in calls if 'write(1, "END' in c[2])
    after = [c for c in calls if begin[1] <= c[0] <= end[0]]
    linked = next(c for c in after if c[2].startswith("linkat(") and str(directory / "obj") in c[2])
    assert "EEXIST" in linked[2]
    opened = next(c for c in after if "O_DIRECTORY" in c[2] and f'"{directory}"' in c[2] and c[0] >= linked[1])
    dir_fd = re.search(r"= (\d+) <", opened[2]).group(1)  # type: ignore[union-attr]
    dir_synced = next(c for c in after if c[2].startswith(f"fsync({dir_fd})") and c[0] >= opened[1])
    assert dir_synced[1] <= end[0]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_pool_syscall_order_across_threads(tmp_path: Path) -> None:
    """The file's bytes, its fsync, the link, then the directory fsync, all before the store answers."""
    calls, directory = _strace(tmp_path, _TRACED)
    begin = next(c for c in calls if 'write(1, "BEGIN' in c[2])
    end = next(c for c in calls if 'write(1, "END' in c[2])
    after = [c for c in calls if c[0] >= begin[1]]
    tmpfile = next(c for c in after if "O_TMPFILE" in c[2] and f'"{directory}"' in c[2])
    fd = re.search(r"= (\d+) <", tmpfile[2]).group(1)  # type: ignore[union-attr]
    wrote = next(c for c in after if re.match(rf"writev?\({fd},", c[2]) and c[0] >= tmpfile[1])
    synced = next(c for c in after if c[2].startswith(f"fsync({fd})") and c[0] >= wrote[1])
    linked = next(c for c in after if c[2].startswith("linkat(") and str(directory / "obj") in c[2])
    opened = next(c for c in after if "O_DIRECTORY" in c[2] and f'"{directory}"' in c[2] and c[0] >= linked[1])
    dir_fd = re.search(r"= (\d+) <", opened[2]).group(1)  # type: ignore[union-attr]
    dir_synced = next(c for c in after if c[2].startswith(f"fsync({dir_fd})") and c[0] >= opened[1])
    assert wrote[1] <= synced[0]
    assert synced[1] <= linked[0]  # data durable before the name exists
    assert linked[1] <= dir_synced[0]
    assert dir_synced[1] <= end[0]  # the name durable before the store answers
    assert "= 0 <" in linked[2]
    assert "= 0 <" in dir_synced[2]
    assert (directory / "obj").read_bytes() == b"z" * 70_000


def test_a_store_writes_on_worker_threads_when_no_pool_can_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The OS refusing the pool's threads or eventfd (limits reached) must not fail the writes.
    from sirius.lakehouse import _object_store

    def refused() -> DurablePool:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(_object_store, "loop_pool", refused)
    monkeypatch.setattr(_object_store, "_pool_refused", False)

    async def main() -> list[bool]:
        store = LocalObjectStore(tmp_path, durable=True)
        return [await store.put_if_absent(f"s/o{i}", b"x" * i) for i in range(3)] + [
            await store.put_if_absent("s/o1", b"other")
        ]

    with caplog.at_level("WARNING", logger="sirius.lakehouse._object_store"):
        assert asyncio.run(main()) == [True, True, True, False]
    assert [(tmp_path / "s" / f"o{i}").read_bytes() for i in range(3)] == [b"", b"x", b"xx"]
    assert sum("writer pool unavailable" in r.getMessage() for r in caplog.records) == 1
