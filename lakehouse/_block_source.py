"""Source blocks of the block-based views: selection in PostgreSQL, payloads, decoding.

Every block-based view (``blocks``, ``log_entries``, ``measures``, ``thread_spans``,
``async_events``) reads ``blocks ⨝ streams ⨝ processes`` for an insert-time range, narrowed by a
``BlockFilter`` (stream tag, process, stream). Unlike Micromegas, which finds JIT blocks through
the ``blocks`` view, this reads PostgreSQL directly (``micromegas-query.md`` §14), so JIT never
waits for the daemon. The inner joins are the same in the count and the fetch, so the source
count recorded in a partition (``source_data_hash``) always describes the blocks it was built
from. Decoding runs in a worker thread: one ``decode_block`` per block, no per-event Python.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from ..tracing.transit import UserDefinedType, WireFormatError, datetime_to_ns, decode_udts, payload_from_cbor
from ._exceptions import CorruptBlockError
from ._object_store import ObjectStore
from ._pool import pg_errors
from ._tick_converter import TickConverter
from ._time_range import TimeRange, to_datetime
from ._transit_reader import DecodedBlock, DependencyCache, decode_block

__all__ = [
    "BlockFilter",
    "SourceBatch",
    "SourceBlock",
    "SourceProcess",
    "SourceStream",
    "block_object_key",
    "count_source",
    "fetch_source",
    "insert_slices",
]

_log = logging.getLogger(__name__)

_FETCH_CONCURRENCY = 8
_DECODE_WORKERS = min(4, os.cpu_count() or 1)
DECODE_AHEAD_OBJECTS = 256 * 1024
"""Objects ``SourceBatch.decoded_chunks`` decodes past the chunk in use (16 blocks of 16 Ki events)."""


def block_object_key(process_id: uuid.UUID, stream_id: uuid.UUID, block_id: uuid.UUID) -> str:
    """Object key of a block payload: ``blobs/{process_id}/{stream_id}/{block_id}``."""
    return f"blobs/{process_id}/{stream_id}/{block_id}"


@dataclass(frozen=True, slots=True)
class BlockFilter:
    """Which blocks feed a view instance; unset fields do not filter.

    Attributes:
        tag: keep blocks whose stream has this tag (``log``, ``metrics``, ``cpu``).
        process_id: keep the blocks of one process.
        stream_id: keep the blocks of one stream.
        other_tags: with ``tag``, also keep blocks whose stream has one of these tags
            (``log_entries`` reads ``trace`` streams for their exception events).
        formats: keep blocks whose stream has one of these ``streams.format`` values.
    """

    tag: str | None = None
    process_id: uuid.UUID | None = None
    stream_id: uuid.UUID | None = None
    other_tags: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()

    def where(self, first_param: int) -> tuple[str, list[Any]]:
        """SQL conditions (``AND …``) on aliases ``b``/``s`` and their parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(template: str, value: Any) -> None:
            clauses.append(template.replace("$?", f"${first_param + len(params)}"))
            params.append(value)

        if self.tag is not None:
            if self.other_tags:
                add("s.tags && $?::text[]", [self.tag, *self.other_tags])
            else:
                add("$? = ANY(s.tags)", self.tag)
        if self.process_id is not None:
            add("b.process_id = $?", self.process_id)
        if self.stream_id is not None:
            add("b.stream_id = $?", self.stream_id)
        if self.formats:
            add("s.format = ANY($?::text[])", list(self.formats))
        return "".join(f" AND {c}" for c in clauses), params


@dataclass(frozen=True, slots=True)
class SourceProcess:
    """The ``processes`` row of source blocks, with the tick frequency to use."""

    process_id: uuid.UUID
    exe: str
    username: str
    realname: str
    computer: str
    distro: str
    cpu_brand: str
    tsc_frequency: int
    start_time_ns: int
    start_ticks: int
    insert_time_ns: int
    parent_process_id: str
    properties: dict[str, str]
    frequency: int  # tsc_frequency, or an estimate from the last block when it is 0

    def converter(self) -> TickConverter:
        """Tick → ns conversion of this process."""
        return TickConverter(self.start_time_ns, self.start_ticks, max(self.frequency, 1))


@dataclass(frozen=True, slots=True)
class SourceStream:
    """The ``streams`` row of source blocks (metadata decoded lazily, once per batch)."""

    stream_id: uuid.UUID
    process_id: uuid.UUID
    dependencies_metadata: bytes
    objects_metadata: bytes
    tags: tuple[str, ...]
    properties: dict[str, str]
    insert_time_ns: int
    format: str


@dataclass(frozen=True, slots=True)
class SourceBlock:
    """A ``blocks`` row."""

    block_id: uuid.UUID
    stream_id: uuid.UUID
    process_id: uuid.UUID
    begin_time_ns: int
    begin_ticks: int
    end_time_ns: int
    end_ticks: int
    nb_objects: int
    object_offset: int
    payload_size: int
    insert_time_ns: int

    @property
    def key(self) -> str:
        """The payload's object key."""
        return block_object_key(self.process_id, self.stream_id, self.block_id)


@dataclass(slots=True)
class SourceBatch:
    """Blocks (ordered by insert time, block id) with their streams, processes and payloads."""

    blocks: list[SourceBlock]
    streams: dict[uuid.UUID, SourceStream]
    processes: dict[uuid.UUID, SourceProcess]
    payloads: list[bytes] = field(default_factory=list)
    _decoded: dict[int, DecodedBlock] = field(default_factory=dict)
    _metadata: dict[uuid.UUID, tuple[tuple[UserDefinedType, ...], tuple[UserDefinedType, ...]]] = field(
        default_factory=dict
    )
    context: dict[str, Any] = field(default_factory=dict)
    """What a view's ``prepare_batch`` step gathered for its table makers (shared with subsets)."""
    _dependencies: dict[uuid.UUID, DependencyCache] = field(default_factory=dict)
    """Per stream, its blocks' decoded dependency queues (shared with subsets, see ``decode_block``)."""

    @property
    def nb_objects(self) -> int:
        """Sum of the blocks' ``nb_objects``."""
        return sum(b.nb_objects for b in self.blocks)

    def subset(self, blocks: Sequence[SourceBlock], payloads: Sequence[bytes]) -> SourceBatch:
        """The same streams and processes over a subset of the blocks."""
        return SourceBatch(
            list(blocks),
            self.streams,
            self.processes,
            list(payloads),
            {},
            self._metadata,
            self.context,
            self._dependencies,
        )

    def chunks(self, max_objects: int) -> Iterator[SourceBatch]:
        """Consecutive sub-batches of at most ``max_objects`` objects (at least one block each).

        Blocks already decoded move to their sub-batch (each block is decoded once).
        """
        start, total = 0, 0
        for index, block in enumerate(self.blocks):
            if index > start and total + block.nb_objects > max_objects:
                yield self._part(start, index)
                start, total = index, 0
            total += block.nb_objects
        if start < len(self.blocks):
            yield self._part(start, len(self.blocks))

    def _part(self, begin: int, end: int) -> SourceBatch:
        decoded = {i - begin: self._decoded.pop(i) for i in range(begin, end) if i in self._decoded}
        payloads = self.payloads[begin:end]
        return SourceBatch(
            self.blocks[begin:end],
            self.streams,
            self.processes,
            payloads,
            decoded,
            self._metadata,
            self.context,
            self._dependencies,
        )

    def decoded_chunks(
        self, max_objects: int, workers: int = _DECODE_WORKERS, ahead_objects: int = DECODE_AHEAD_OBJECTS
    ) -> Iterator[SourceBatch]:
        """``chunks`` with their blocks decoded, decoding ahead while the caller uses a chunk.

        Blocks are queued on ``workers`` threads in order, up to ``ahead_objects`` objects past
        the chunk the caller holds (at least one chunk): the first chunk is ready soonest, later
        ones decode while the caller transforms the earlier ones, and the decoded blocks waiting
        stay few, so the memory of the blocks already used serves the next ones instead of
        fresh pages (a 1 M-event partition decoded all at once held ~80 MB of decoded blocks).
        Blocking; call from a worker thread.

        Raises:
            CorruptBlockError: a block cannot be decoded.
        """
        for stream_id in {b.stream_id for b in self.blocks}:
            self.metadata(stream_id)  # decode shared metadata once, before the threads
        parts = list(self.chunks(max_objects))
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sirius-decode")
        futures: list[dict[int, Future[DecodedBlock]]] = []
        queued_objects = 0  # objects of the parts queued so far

        def queue_up_to(limit: int) -> None:
            nonlocal queued_objects
            while len(futures) < len(parts) and (len(futures) == 0 or queued_objects < limit):
                part = parts[len(futures)]
                pending = [i for i in range(len(part.blocks)) if i not in part._decoded]
                futures.append({i: pool.submit(part._decode_uncached, i) for i in pending})
                queued_objects += part.nb_objects

        try:
            used = 0
            for index, part in enumerate(parts):
                queue_up_to(used + part.nb_objects + ahead_objects)
                for block, future in futures[index].items():
                    part._decoded[block] = future.result()
                futures[index] = {}
                used += part.nb_objects
                yield part
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def decode_all(self, workers: int = _DECODE_WORKERS) -> None:
        """Decode every block ahead of ``decode`` calls, on a few threads.

        LZ4 and numpy release the GIL for most of the work. Blocking; call from a worker thread.

        Raises:
            CorruptBlockError: a block cannot be decoded.
        """
        for stream_id in {b.stream_id for b in self.blocks}:
            self.metadata(stream_id)  # decode shared metadata once, before the threads
        pending = [i for i in range(len(self.blocks)) if i not in self._decoded]
        if len(pending) < 2 or workers < 2:
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sirius-decode") as pool:
            for index, decoded in zip(pending, pool.map(self._decode_uncached, pending), strict=True):
                self._decoded[index] = decoded

    def metadata(self, stream_id: uuid.UUID) -> tuple[tuple[UserDefinedType, ...], tuple[UserDefinedType, ...]]:
        """The stream's decoded ``(dependencies_metadata, objects_metadata)``.

        Raises:
            CorruptBlockError: the metadata is not valid CBOR UDTs.
        """
        cached = self._metadata.get(stream_id)
        if cached is None:
            stream = self.streams[stream_id]
            try:
                cached = (decode_udts(stream.dependencies_metadata), decode_udts(stream.objects_metadata))
            except WireFormatError as exc:
                msg = f"stream {stream_id}: {exc}"
                raise CorruptBlockError(msg) from exc
            self._metadata[stream_id] = cached
        return cached

    def decode(self, index: int) -> DecodedBlock:
        """Decode block ``index`` (blocking; call from a worker thread); each block once.

        Raises:
            CorruptBlockError: the payload or the stream metadata cannot be decoded.
        """
        decoded = self._decoded.pop(index, None)
        return decoded if decoded is not None else self._decode_uncached(index)

    def _decode_uncached(self, index: int) -> DecodedBlock:
        block = self.blocks[index]
        deps_meta, objs_meta = self.metadata(block.stream_id)
        try:
            payload = payload_from_cbor(self.payloads[index])
        except WireFormatError as exc:
            msg = f"block {block.block_id}: {exc}"
            raise CorruptBlockError(msg) from exc
        cache = self._dependencies.setdefault(block.stream_id, {})
        return decode_block(deps_meta, objs_meta, payload, cache)


# ---------------------------------------------------------------------------------------------
# PostgreSQL

_JOIN = "FROM blocks b JOIN streams s ON s.stream_id = b.stream_id JOIN processes p ON p.process_id = b.process_id"


def _ns(value: datetime | None) -> int:
    return 0 if value is None else datetime_to_ns(value)


def _props(value: Sequence[Any] | None) -> dict[str, str]:
    return {str(item[0]): "" if item[1] is None else str(item[1]) for item in value or ()}


async def count_source(pool: asyncpg.Pool, flt: BlockFilter, insert_range: TimeRange) -> tuple[int, int]:
    """Return ``(number of blocks, sum of nb_objects)`` feeding ``flt`` in ``insert_range``.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    where, params = flt.where(3)
    sql = (
        f"SELECT count(*), coalesce(sum(b.nb_objects), 0) {_JOIN}"
        f" WHERE b.insert_time >= $1 AND b.insert_time < $2{where}"
    )
    with pg_errors("counting source blocks"):
        row = await pool.fetchrow(sql, insert_range.begin, insert_range.end, *params)
    return int(row[0]), int(row[1])


async def insert_slices(
    pool: asyncpg.Pool, flt: BlockFilter, event_range: TimeRange | None, slice_ns: int
) -> dict[int, int]:
    """Insert-time slices holding blocks whose events overlap ``event_range``.

    Returns:
        ``slice begin ns → sum of nb_objects`` of *all* the filter's blocks inserted in that
        slice (the source of a partition keyed by the slice), for every slice between the
        first and last insert time of the overlapping blocks that holds any block.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    where, params = flt.where(3)
    event_range = event_range or TimeRange(0, 2**62)
    bounds_sql = (
        f"SELECT min(b.insert_time), max(b.insert_time) {_JOIN} WHERE b.begin_time <= $2 AND b.end_time >= $1{where}"
    )
    args = [event_range.begin, event_range.end, *params]
    with pg_errors("finding source blocks"):
        low, high = await pool.fetchrow(bounds_sql, *args)
        if low is None:
            return {}
        seconds = slice_ns // 1_000_000_000
        begin_ns = _ns(low) - _ns(low) % slice_ns
        end_ns = _ns(high) - _ns(high) % slice_ns + slice_ns
        rows = await pool.fetch(
            f"SELECT floor(extract(epoch FROM b.insert_time) / {seconds})::bigint AS slot,"  # noqa: S608
            f" sum(b.nb_objects) {_JOIN} WHERE b.insert_time >= $1 AND b.insert_time < $2{where} GROUP BY slot",
            to_datetime(begin_ns),
            to_datetime(end_ns),
            *params,
        )
    return {int(r[0]) * slice_ns: int(r[1]) for r in rows}


async def _frequencies(pool: asyncpg.Pool, processes: dict[uuid.UUID, dict[str, Any]]) -> None:
    # Rust estimates the frequency of a process reporting 0 from its last block (§6).
    for pid, row in processes.items():
        if row["tsc_frequency"] > 0:
            row["frequency"] = row["tsc_frequency"]
            continue
        last = await pool.fetchrow(
            "SELECT end_time, end_ticks FROM blocks WHERE process_id = $1 ORDER BY end_time DESC LIMIT 1", pid
        )
        frequency = 0
        if last is not None:
            seconds = (_ns(last[0]) - row["start_time_ns"]) / 1e9
            if seconds > 0 and last[1] > 0:
                frequency = round(last[1] / seconds)
        if frequency <= 0:
            _log.warning("process %s: tsc_frequency 0 and no usable block to estimate it from", pid)
        row["frequency"] = frequency


async def fetch_source(
    pool: asyncpg.Pool, flt: BlockFilter, insert_range: TimeRange, *, limit_to: TimeRange | None = None
) -> SourceBatch:
    """Read the source blocks of ``flt`` in ``insert_range`` with their streams and processes.

    Args:
        pool: the lakehouse pool.
        flt: which blocks.
        insert_range: ``[begin, end)`` over ``blocks.insert_time``.
        limit_to: optionally keep only blocks whose event range overlaps this range.

    Raises:
        MetadataStoreError: PostgreSQL failed.
    """
    where, params = flt.where(3)
    if limit_to is not None:
        where += f" AND b.begin_time <= ${3 + len(params)} AND b.end_time >= ${4 + len(params)}"
        params += [limit_to.end, limit_to.begin]
    sql = (
        "SELECT b.block_id, b.stream_id, b.process_id, b.begin_time, b.begin_ticks, b.end_time, b.end_ticks,"
        " b.nb_objects, b.object_offset, b.payload_size, b.insert_time,"
        " s.dependencies_metadata, s.objects_metadata, s.tags, s.properties AS stream_properties,"
        " s.insert_time AS stream_insert_time, s.format,"
        " p.exe, p.username, p.realname, p.computer, p.distro, p.cpu_brand, p.tsc_frequency, p.start_time,"
        " p.start_ticks, p.insert_time AS process_insert_time, p.parent_process_id,"
        f" p.properties AS process_properties {_JOIN}"
        f" WHERE b.insert_time >= $1 AND b.insert_time < $2{where} ORDER BY b.insert_time, b.block_id"
    )
    blocks: list[SourceBlock] = []
    streams: dict[uuid.UUID, SourceStream] = {}
    process_rows: dict[uuid.UUID, dict[str, Any]] = {}
    with pg_errors("reading source blocks"):
        rows = await pool.fetch(sql, insert_range.begin, insert_range.end, *params)
        for r in rows:
            blocks.append(
                SourceBlock(
                    block_id=r["block_id"],
                    stream_id=r["stream_id"],
                    process_id=r["process_id"],
                    begin_time_ns=_ns(r["begin_time"]),
                    begin_ticks=r["begin_ticks"] or 0,
                    end_time_ns=_ns(r["end_time"]),
                    end_ticks=r["end_ticks"] or 0,
                    nb_objects=r["nb_objects"] or 0,
                    object_offset=r["object_offset"] or 0,
                    payload_size=r["payload_size"] or 0,
                    insert_time_ns=_ns(r["insert_time"]),
                )
            )
            if r["stream_id"] not in streams:
                streams[r["stream_id"]] = SourceStream(
                    stream_id=r["stream_id"],
                    process_id=r["process_id"],
                    dependencies_metadata=bytes(r["dependencies_metadata"] or b""),
                    objects_metadata=bytes(r["objects_metadata"] or b""),
                    tags=tuple(r["tags"] or ()),
                    properties=_props(r["stream_properties"]),
                    insert_time_ns=_ns(r["stream_insert_time"]),
                    format=r["format"] or "",
                )
            if r["process_id"] not in process_rows:
                parent = r["parent_process_id"]
                process_rows[r["process_id"]] = {
                    "process_id": r["process_id"],
                    "exe": r["exe"] or "",
                    "username": r["username"] or "",
                    "realname": r["realname"] or "",
                    "computer": r["computer"] or "",
                    "distro": r["distro"] or "",
                    "cpu_brand": r["cpu_brand"] or "",
                    "tsc_frequency": r["tsc_frequency"] or 0,
                    "start_time_ns": _ns(r["start_time"]),
                    "start_ticks": r["start_ticks"] or 0,
                    "insert_time_ns": _ns(r["process_insert_time"]),
                    "parent_process_id": "" if parent is None else str(parent),
                    "properties": _props(r["process_properties"]),
                }
        await _frequencies(pool, process_rows)
    processes = {pid: SourceProcess(**row) for pid, row in process_rows.items()}
    return SourceBatch(blocks, streams, processes)


async def load_payloads(store: ObjectStore, batch: SourceBatch) -> None:
    """Fetch every block payload of ``batch`` (bounded concurrency) into ``batch.payloads``.

    Raises:
        ObjectStoreError: a payload is missing or the store failed.
    """
    semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)

    async def get(key: str) -> bytes:
        async with semaphore:
            return await store.get(key)

    batch.payloads = list(await asyncio.gather(*(get(b.key) for b in batch.blocks)))
