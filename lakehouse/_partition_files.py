"""Partition files as DataFrames: how a session reads a view's Parquet partitions from its store.

A local directory and the cloud stores (S3/MinIO, GCS, Azure) are read by DataFusion itself (the
bucket registered as an object store of the session by the store that knows its credentials);
the in-memory store of tests and demos has no path DataFusion can read, so its files are loaded
and concatenated. Query sessions and the ETL sessions of SQL-defined views both read partitions
this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import datafusion
import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import SessionContext

from ._cloud_store import CloudObjectStore
from ._object_store import LocalObjectStore, ObjectStore

if TYPE_CHECKING:
    from ._partitions import Partition
    from ._view_set import ViewSet

__all__ = ["PartitionFiles"]


class PartitionFiles:
    """Turns partition files into DataFrames for one store kind."""

    def __init__(self, ctx: SessionContext, store: ObjectStore) -> None:
        self._ctx = ctx
        self._store = store
        self._prefix: str | None = None
        if isinstance(store, LocalObjectStore):
            self._prefix = f"{store.root}/"
        elif isinstance(store, CloudObjectStore):
            store.register_on(ctx)
            self._prefix = store.parquet_url_prefix

    async def frame(self, view: ViewSet, partitions: Sequence[Partition]) -> datafusion.DataFrame:
        keys = [p.file_path for p in partitions if p.file_path]
        if not keys:
            return self._ctx.from_arrow(view.schema.empty_table())
        if self._prefix is None:  # in-memory store: load the files (tests, demos)
            blobs = await asyncio.gather(*(self._store.get(k) for k in keys))
            tables = [pq.read_table(pa.BufferReader(b)).cast(view.schema) for b in blobs]
            return self._ctx.from_arrow(pa.concat_tables(tables))
        frames = [self._ctx.read_parquet(self._prefix + k, schema=view.schema) for k in keys]
        # Balanced unions keep the plan shallow for views with many partitions.
        while len(frames) > 1:
            frames = [
                frames[i].union(frames[i + 1]) if i + 1 < len(frames) else frames[i] for i in range(0, len(frames), 2)
            ]
        return frames[0]
