"""View sets: what a view is made of, and the registry that names them.

A view set (``micromegas-query.md`` §2) is a named family of tables with one Arrow schema. Each
is one small module under ``sirius.lakehouse.views`` declaring a ``ViewSet`` subclass:

* its identity: ``name``, ``schema`` (column order is a public contract), ``file_schema_hash``;
* its instances: a global one when ``update_group`` is set (the daemon materialises it, in
  ascending group order), and/or JIT instances per process or per stream (``jit_instance``);
* its partitioning: ``max_partition_delta_ns`` and the event-time columns used both for the
  partition's ``min/max_event_time`` and for the query-range row filter (§7);
* its data: ``source_count`` (the number recorded as ``source_data_hash``), ``build`` (rows of
  one insert-time range from the source) and ``merge`` (rows of several partitions into one).

``BlockViewSet`` implements the source side for views fed by blocks; its subclasses only turn
a ``SourceBatch`` into a table, in a worker thread. ``log_entries`` and ``measures`` read OTLP
blocks through ``extra_formats``; ``otel_spans`` and ``histograms`` read OTLP blocks only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

import datafusion
import pyarrow as pa

from ..tracing.transit import TRANSIT_FORMAT
from ._block_source import BlockFilter, SourceBatch, count_source, fetch_source, insert_slices, load_payloads
from ._exceptions import ViewError
from ._parquet_files import ParquetStream
from ._time_range import NS_PER_HOUR, TimeRange

if TYPE_CHECKING:
    from ._lakehouse import Lakehouse

__all__ = [
    "GLOBAL_INSTANCE",
    "BlockViewSet",
    "InstanceKind",
    "ViewRegistry",
    "ViewSet",
    "ViewSetInfo",
    "schema_hash",
]

_log = logging.getLogger(__name__)

GLOBAL_INSTANCE = "global"
"""``view_instance_id`` of a global view."""

DICT_STR = pa.dictionary(pa.int32(), pa.string())
"""``Dictionary(Int32, Utf8)``."""
DICT_BIN = pa.dictionary(pa.int32(), pa.binary())
"""``Dictionary(Int32, Binary)`` holding JSONB."""
TIMESTAMP = pa.timestamp("ns", tz="+00:00")
"""``Timestamp(Nanosecond, "+00:00")``."""


def schema_hash(schema: pa.Schema) -> bytes:
    """8-byte hash of a schema, for SQL-batch views whose hash follows their schema."""
    return hashlib.sha256(str(schema).encode()).digest()[:8]


class InstanceKind(StrEnum):
    """What a non-global instance id names."""

    PROCESS = "process"
    STREAM = "stream"


@dataclass(frozen=True, slots=True)
class ViewSetInfo:
    """One row of ``list_view_sets()``."""

    view_set_name: str
    current_schema_hash: bytes
    schema: str
    has_view_maker: bool
    global_instance_available: bool


class ViewSet(ABC):
    """A family of tables sharing one schema; subclasses are stateless singletons."""

    name: ClassVar[str]
    schema: ClassVar[pa.Schema]
    file_schema_hash: ClassVar[bytes]
    update_group: ClassVar[int | None] = None
    jit_instance: ClassVar[InstanceKind | None] = None
    max_partition_delta_ns: ClassVar[int] = NS_PER_HOUR
    event_time_columns: ClassVar[tuple[str, str]] = ("time", "time")
    sort_order: ClassVar[tuple[str, ...]] = ("insert_time",)
    mergeable: ClassVar[bool] = True
    """False when partitions cannot be concatenated (thread_spans pairs events across blocks)."""
    replaces_overlapping: ClassVar[bool] = False
    """True when a rebuilt partition may retire overlapping ones that stick out of its range
    (thread_spans, whose insert ranges follow the queried blocks rather than fixed slices)."""
    row_group_rows: ClassVar[int | None] = None
    """Rows per Parquet row group of its partitions; None for the default (128 Ki). Smaller
    groups make row-group statistics prune finer (``otel_spans`` sorted by ``trace_id``)."""
    delta_columns: ClassVar[tuple[str, ...]] = ()
    """Integer or timestamp columns written ``DELTA_BINARY_PACKED`` (``encode_parquet``): ordered
    ids and times, where it is cheaper and smaller than plain values."""
    no_statistics: ClassVar[tuple[str, ...]] = ()
    """Columns written without min/max statistics: free text no query prunes on (``log_entries.msg``)."""

    @property
    def has_global(self) -> bool:
        """Whether a global instance exists (registered as a plain table)."""
        return self.update_group is not None

    def info(self) -> ViewSetInfo:
        """This view set as ``list_view_sets()`` shows it."""
        return ViewSetInfo(self.name, self.file_schema_hash, str(self.schema), True, self.has_global)

    def check_instance(self, instance: str) -> uuid.UUID | None:
        """Validate an instance id: ``global`` (None) or the UUID of a process/stream.

        Raises:
            ViewError: this view set has no such instance.
        """
        if instance == GLOBAL_INSTANCE:
            if not self.has_global:
                msg = f"view set {self.name!r} has no global instance; use view_instance('{self.name}', id)"
                raise ViewError(msg)
            return None
        if self.jit_instance is None:
            msg = f"view set {self.name!r} has only a global instance, not {instance!r}"
            raise ViewError(msg)
        try:
            return uuid.UUID(instance)
        except ValueError:
            msg = f"view set {self.name!r}: instance id must be a {self.jit_instance.value} id (UUID), got {instance!r}"
            raise ViewError(msg) from None

    def serve(self, frame: datafusion.DataFrame) -> datafusion.DataFrame:
        """What queries see of the global instance, given its (range-filtered) partitions' rows.

        Default: the rows as they are. ``processes`` and ``streams`` fold the rows that several
        partitions hold for one process or stream into one.
        """
        return frame

    def register_global(self, ctx: datafusion.SessionContext, frame: datafusion.DataFrame) -> None:
        """Register the global instance on ``ctx`` as table ``name``, given its partitions' rows."""
        ctx.register_view(self.name, self.serve(frame))

    async def fresh_global_rows(self, lake: Lakehouse, query_range: TimeRange) -> pa.Table | None:
        """Rows of the global instance not yet in partitions that a query over ``query_range`` must see.

        Default None: the global instance is what the daemon materialised. DDL-defined views
        compute the rows inserted since their last partitions (JIT) when their definition allows.
        Registering the view again on the same context must then replace it.
        """
        del lake, query_range
        return None

    def row_filter_bounds(self) -> tuple[str, str]:
        """Columns ``(lo, hi)`` of the query-range row filter ``lo <= end AND hi >= begin``."""
        return self.event_time_columns

    @abstractmethod
    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """Number of source items in ``insert_range`` (recorded as ``source_data_hash``)."""

    @abstractmethod
    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """Rows of ``insert_range`` from the source, and the source count they were computed from.

        The count may exceed an earlier ``source_count`` when data arrived in between.
        """

    async def build_file(
        self, lake: Lakehouse, instance: str, insert_range: TimeRange
    ) -> tuple[pa.Table, int, bytes | None]:
        """``build``, plus the rows already encoded as the partition's Parquet file (or None).

        With a file, the table may hold only the ``event_time_columns`` (what ``update_partition``
        reads besides the row count); without one, every column (``update_partition`` encodes it).

        Default: no file (``update_partition`` encodes the table). Block views encode while
        they transform (``BlockViewSet.transform_chunks``).
        """
        table, count = await self.build(lake, instance, insert_range)
        return table, count, None

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Rows of several partitions as one (default: concatenation in insert order)."""
        if not tables:
            return self.schema.empty_table()
        return pa.concat_tables(tables).cast(self.schema)

    async def jit_ranges(
        self, lake: Lakehouse, instance: str, query_range: TimeRange | None
    ) -> list[tuple[TimeRange, int | None]]:
        """Insert-time ranges of the partitions a JIT update must make current.

        Returns:
            ``(insert range, expected source count or None)`` pairs; with a count, a partition of
            exactly that range and count is known current without taking its lock.

        Raises:
            ViewError: this view set has no JIT instances.
        """
        del lake, instance, query_range
        msg = f"view set {self.name!r} is not materialised just in time"
        raise ViewError(msg)


TableMaker = Callable[[SourceBatch], pa.Table]
"""Turns the blocks of one format into rows (runs in a worker thread)."""


class BlockViewSet(ViewSet):
    """A view set fed by blocks (``blocks ⨝ streams ⨝ processes`` plus payloads).

    Subclasses set ``tag`` (the stream tag selecting source blocks) and implement
    ``transform`` for transit blocks; ``extra_formats`` maps other ``streams.format`` values
    (e.g. ``otlp/v1/logs``) to table makers. ``other_tags`` widens the source to streams of
    other tags, ``formats`` narrows it to some stream formats (both in the PostgreSQL query, so
    the source count describes exactly the blocks read), and ``prepare_batch`` may gather more
    input (asynchronously) before the table makers run.
    """

    tag: ClassVar[str | None] = None
    other_tags: ClassVar[tuple[str, ...]] = ()
    formats: ClassVar[tuple[str, ...]] = ()
    counts_blocks: ClassVar[bool] = False
    needs_payloads: ClassVar[bool] = True
    extra_formats: ClassVar[Mapping[str, TableMaker]] = {}

    def block_filter(self, instance: str) -> BlockFilter:
        """The blocks feeding ``instance``."""
        ident = self.check_instance(instance)
        by_stream = ident is not None and self.jit_instance is InstanceKind.STREAM
        return BlockFilter(
            tag=self.tag,
            process_id=None if by_stream else ident,
            stream_id=ident if by_stream else None,
            other_tags=self.other_tags,
            formats=self.formats,
        )

    async def prepare_batch(self, lake: Lakehouse, batch: SourceBatch) -> None:
        """Gather what the table makers need beyond the batch into ``batch.context`` (default: nothing)."""
        del lake, batch

    async def source_count(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> int:
        """Sum of ``nb_objects`` (or the block count) of the source blocks."""
        blocks, objects = await count_source(lake.pool, self.block_filter(instance), insert_range)
        return blocks if self.counts_blocks else objects

    async def _fetch_batch(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> SourceBatch:
        """The source blocks of ``insert_range`` with their payloads when the view reads them; counted."""
        batch = await fetch_source(lake.pool, self.block_filter(instance), insert_range)
        if self.needs_payloads:
            await load_payloads(lake.store, batch)
            await self.prepare_batch(lake, batch)
        lake.stats.blocks_processed += len(batch.blocks)
        lake.stats.events_processed += batch.nb_objects
        return batch

    async def build(self, lake: Lakehouse, instance: str, insert_range: TimeRange) -> tuple[pa.Table, int]:
        """Fetch and transform the source blocks of ``insert_range``."""
        batch = await self._fetch_batch(lake, instance, insert_range)
        table = await asyncio.to_thread(self.transform_batch, batch)
        return table, len(batch.blocks) if self.counts_blocks else batch.nb_objects

    async def build_file(
        self, lake: Lakehouse, instance: str, insert_range: TimeRange
    ) -> tuple[pa.Table, int, bytes | None]:
        """Fetch and transform the source blocks, encoding each chunk of rows as soon as it is made.

        The encoding thread works on one chunk while the transform computes the next: the file
        is ready about when the last chunk is (``ParquetStream``), rather than one encoding
        after the whole transform. Same file options as ``encode_parquet``. A subclass that
        overrides ``build`` gets it called instead (no file: ``update_partition`` encodes).
        With a file, the table returned holds only the ``event_time_columns`` (all rows).
        """
        if type(self).build is not BlockViewSet.build:
            return await super().build_file(lake, instance, insert_range)
        batch = await self._fetch_batch(lake, instance, insert_range)
        count = len(batch.blocks) if self.counts_blocks else batch.nb_objects
        stream = ParquetStream(
            self.schema, lake.settings.parquet_compression, self.row_group_rows, self.delta_columns, self.no_statistics
        )
        kept = list(dict.fromkeys(self.event_time_columns))

        def transform() -> pa.Table:
            chunks = []
            for rows in self.transform_chunks(batch):
                chunk = rows.cast(self.schema)
                stream.write(chunk)
                # Past the encoder, only the row count and event-time bounds are used: the
                # other columns of a chunk are freed once encoded, and their memory serves the
                # next chunks rather than fresh pages.
                chunks.append(chunk.select(kept))
            return pa.concat_tables(chunks) if chunks else self.schema.empty_table().select(kept)

        try:
            table = await asyncio.to_thread(transform)
        except BaseException:
            await asyncio.to_thread(stream.abort)
            raise
        data = await asyncio.to_thread(stream.finish)
        return table, count, data if table.num_rows else None

    def transform_chunks(self, batch: SourceBatch) -> Iterator[pa.Table]:
        """The rows of ``batch`` as consecutive chunks, in order (default: one ``transform_batch``)."""
        yield self.transform_batch(batch)

    def transform_batch(self, batch: SourceBatch) -> pa.Table:
        """Dispatch blocks by stream format and concatenate the results."""
        if not batch.blocks:
            return self.schema.empty_table()
        formats = {batch.streams[b.stream_id].format for b in batch.blocks}
        if formats <= {TRANSIT_FORMAT} or not self.needs_payloads:
            if self.needs_payloads:
                batch.decode_all()
            return self.transform(batch).cast(self.schema)
        tables: list[pa.Table] = []
        for fmt in sorted(formats):
            picked = [i for i, b in enumerate(batch.blocks) if batch.streams[b.stream_id].format == fmt]
            sub = batch.subset([batch.blocks[i] for i in picked], [batch.payloads[i] for i in picked])
            if fmt == TRANSIT_FORMAT:
                sub.decode_all()
            maker = self.transform if fmt == TRANSIT_FORMAT else self.extra_formats.get(fmt)
            if maker is None:
                _log.warning("%s: skipping %d blocks of unsupported format %r", self.name, len(picked), fmt)
                continue
            tables.append(maker(sub).cast(self.schema))
        return pa.concat_tables(tables) if tables else self.schema.empty_table()

    @abstractmethod
    def transform(self, batch: SourceBatch) -> pa.Table:
        """Rows of transit blocks (all blocks of ``batch``), in ``schema``."""

    async def jit_ranges(
        self, lake: Lakehouse, instance: str, query_range: TimeRange | None
    ) -> list[tuple[TimeRange, int | None]]:
        """Insert-time slices of ``max_partition_delta_ns`` holding blocks that overlap the query."""
        if self.jit_instance is None:
            return await super().jit_ranges(lake, instance, query_range)
        delta = self.max_partition_delta_ns
        slices = await insert_slices(lake.pool, self.block_filter(instance), query_range, delta)
        counts = slices if not self.counts_blocks else dict.fromkeys(slices)
        return [(TimeRange(begin, begin + delta), counts[begin]) for begin in sorted(slices)]


class ViewRegistry:
    """The view sets of a lakehouse, by name."""

    def __init__(self, view_sets: Iterable[ViewSet]) -> None:
        self._views: dict[str, ViewSet] = {}
        for view in view_sets:
            if view.name in self._views:
                msg = f"two view sets are called {view.name!r}"
                raise ValueError(msg)
            self._views[view.name] = view

    def __iter__(self) -> Iterator[ViewSet]:
        return iter(self._views.values())

    def __contains__(self, name: object) -> bool:
        return name in self._views

    def get(self, name: str) -> ViewSet:
        """The view set called ``name``.

        Raises:
            ViewError: there is none.
        """
        try:
            return self._views[name]
        except KeyError:
            msg = f"unknown view set {name!r}; known: {', '.join(sorted(self._views))}"
            raise ViewError(msg) from None

    def global_views(self) -> list[ViewSet]:
        """View sets with a global instance, in daemon update order."""
        views = [v for v in self._views.values() if v.update_group is not None]
        return sorted(views, key=lambda v: (v.update_group or 0, v.name))

    def with_view(self, view: ViewSet) -> ViewRegistry:
        """A registry with ``view`` added or replacing the one of the same name."""
        views = {v.name: v for v in self}
        views[view.name] = view
        return ViewRegistry(views.values())
