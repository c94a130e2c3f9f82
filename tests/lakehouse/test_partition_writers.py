"""Partition writers never starve the pool: passes and JIT together always finish.

A partition writer holds one connection for its partition lock and borrows another to register
its file. Before ``Lakehouse.partition_writers`` each daemon pass bounded only its own writers, so
a second pass and an hour pass running at once in ``sirius up`` (one pool, each pass holding a
lease connection) could take every connection with writers that all waited for their second one.
Here the leases are held, many writers start at once, and each build waits until the test has
seen the writers fill their slots: without the bound they would all be inside holding their lock
connections and none could register its file.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from sirius.lakehouse import Lakehouse, TimeRange, list_partitions, update_partition
from sirius.lakehouse.views import LogEntriesView, default_view_sets

WRITERS = 8
LEASES = 4  # one per pass kind: second, minute, hour, day


class _Gated(LogEntriesView):
    """log_entries under another name whose build counts its writers and waits for the gate."""

    in_build: ClassVar[int] = 0
    most: ClassVar[int] = 0
    gate: ClassVar[asyncio.Event]

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc] - one partition lock and file per writer

    async def build(self, lake: Any, instance: str, insert_range: Any) -> Any:
        cls = type(self)
        cls.in_build += 1
        cls.most = max(cls.most, cls.in_build)
        try:
            await cls.gate.wait()
            return await super().build(lake, instance, insert_range)
        finally:
            cls.in_build -= 1


def test_concurrent_writers_with_every_lease_held_all_finish(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        _Gated.gate = asyncio.Event()
        views = default_view_sets()
        gated = [_Gated(f"gated_{i}") for i in range(WRITERS)]
        for view in gated:
            views = views.with_view(view)
        lake = Lakehouse(h.lake.pool, h.lake.store, clock=h.clock, views=views)
        free_without_leases = lake.pool.get_max_size() - LEASES
        assert free_without_leases < WRITERS  # enough writers to starve an unbounded pool
        leases = [await lake.pool.acquire() for _ in range(LEASES)]
        try:
            target = TimeRange(h.T0_NS, h.T0_NS + 3600 * 10**9)
            tasks = [asyncio.create_task(update_partition(lake, view, "global", target)) for view in gated]
            while not lake.partition_writers.locked() or _Gated.in_build == 0:
                await asyncio.sleep(0)  # yield until the writers hold every slot
            for _ in range(100):  # give the others every chance to get in (they must not)
                await asyncio.sleep(0)
            inside = _Gated.in_build
            _Gated.gate.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks), 60)  # a starved pool never ends
        finally:
            for conn in leases:
                await lake.pool.release(conn)
        assert inside == _Gated.most
        assert 2 * _Gated.most + LEASES <= lake.pool.get_max_size()
        assert all(r.partition is not None and r.partition.num_rows == 5 for r in results)
        written = {p.view_set_name for p in await list_partitions(lake.pool)}
        assert written >= {view.name for view in gated}

    local_lake_env(scenario)
