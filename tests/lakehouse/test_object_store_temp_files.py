"""The local store removes the temporary files of writes a crash interrupted, and only those."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sirius.lakehouse._object_store import LocalObjectStore

BLOCK = "blobs/p1/s1/b1"


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, durable=False)
    asyncio.run(store.put_if_absent(BLOCK, b"payload"))
    cutoff = time.time()
    stale = [tmp_path / "blobs" / "p1" / "s1" / ".sirius-tmp-a1", tmp_path / "blobs" / "p2" / "s9" / ".sirius-tmp-b2"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a block")
        os.utime(path, (cutoff - 10, cutoff - 10))
    in_flight = tmp_path / "blobs" / "p1" / "s1" / ".sirius-tmp-c3"  # a live writer's, newer than the cutoff
    in_flight.write_bytes(b"being written")
    os.utime(in_flight, (cutoff + 1, cutoff + 1))

    assert asyncio.run(store.remove_stale_temp_files(cutoff)) == 2
    assert not any(path.exists() for path in stale)
    assert in_flight.exists()
    assert not (tmp_path / "blobs" / "p2").exists(), "directories left empty are pruned"
    assert asyncio.run(store.get(BLOCK)) == b"payload", "objects are untouched"
    assert asyncio.run(store.remove_stale_temp_files(cutoff)) == 0
