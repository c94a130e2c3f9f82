"""Storing OTLP export requests: process, stream and block rows plus the payload objects.

Each request is split into one block per resource with uuid5 ids (``micromegas-wire.md`` §9):
a protobuf request straight from its bytes by ``sirius.otel_bridge.split_request_bytes`` (the C
wire scanner) when it vouches for them, else parsed by upb and split by ``split_request``.
For each block, as the Rust ingester does: the process row and the stream row (``ON CONFLICT DO
NOTHING``; remembered in a bounded cache so a busy producer
costs one block insert per request), then the payload object create-only, then the block row.
A retried request therefore finds the same ids and changes nothing: one object, one row.

Each export is the writer's: its process and stream rows are stamped with the caller's write
audience (which also scopes the derived ids), and a block for a process of another audience is
refused with 403 / PERMISSION_DENIED before anything of it is stored (``_ownership.py``).

The in-flight budget that bounds what the receivers hold in memory lives in ``_admission.py``.

Block rows of concurrent exports are inserted together (``BlockRowBatcher``): once the request
is no longer parsed in Python, a row's PostgreSQL round trip (socket writes and reads, wake-ups)
is the largest server-side cost of a 512-item request. Exports that reach their row while an
insert is in flight queue theirs; one task inserts the queue with ``DataLake.insert_blocks`` (one
transaction) and wakes each export, which answers only once its own row is committed. A failed
batch fails every export in it (each client retries; rows and objects are idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ..identity import Principal, write_audience
from ..lakehouse import DataLake, LakehouseError, ObjectStore, block_object_key
from ..otel_bridge import OtlpBlock, Signal, SplitRequest, split_request, split_request_bytes
from ..tracing import Block
from ._admission import DEFAULT_RETRY_AFTER_SECONDS
from ._arrivals import log_new_process
from ._exceptions import AudienceOwnershipError, OtlpPermissionDeniedError, OtlpUnavailableError
from ._otlp_codec import PROTOBUF, parse_request
from ._ownership import ProcessOwnership

__all__ = ["BlockRowBatcher", "OtlpWriter", "otlp_payload_cbor"]

_LOG = logging.getLogger(__name__)

ExportWrapper = Callable[[str, Callable[[], Awaitable[SplitRequest]]], Awaitable[SplitRequest]]
"""Runs one OTLP export (signal name, the export) around something, e.g. a span."""


# ``cbor2.dumps({"dependencies": b"", "objects": objects})`` (``payload_to_cbor``) is this head,
# the byte-string head of ``objects`` (RFC 8949 §3.1, major type 2), then ``objects``: framing
# it here costs one copy of the payload where cbor2 needs ``bytes`` first (two copies).
_CBOR_PAYLOAD_HEAD = b"\xa2\x6cdependencies\x40\x67objects"


def _cbor_byte_string_head(length: int) -> bytes:
    if length < 24:
        return bytes((0x40 | length,))
    for marker, width in ((0x58, 1), (0x59, 2), (0x5A, 4), (0x5B, 8)):
        if length < 1 << (8 * width):
            return bytes((marker,)) + length.to_bytes(width, "big")
    msg = f"payload of {length} bytes is too large for CBOR"
    raise ValueError(msg)


def otlp_payload_cbor(objects: bytes | memoryview) -> bytes:
    """The stored object of an OTLP block: ``payload_to_cbor`` of ``{dependencies: b"", objects}``."""
    return b"".join((_CBOR_PAYLOAD_HEAD, _cbor_byte_string_head(len(objects)), objects))


class _Seen:
    """A bounded set of ids (or id, audience pairs) already written (least recently used evicted)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[object, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        if key in self._ids:
            self._ids.move_to_end(key)
            return True
        return False

    def add(self, key: object) -> None:
        self._ids[key] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)


class BlockRowBatcher:
    """Coalesces ``insert_block`` calls made while a batch is being inserted.

    Args:
        lake: where the rows go.
        max_batch: most rows in one statement batch.
    """

    def __init__(self, lake: DataLake, max_batch: int = 256) -> None:
        self._lake = lake
        self._max_batch = max_batch
        self._pending: list[tuple[Block, int, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def insert(self, block: Block, payload_size: int) -> None:
        """Insert the row of ``block`` (its object already stored); return once it is committed.

        Raises:
            LakehouseError: PostgreSQL failed (the whole batch is rolled back).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((block, payload_size, done))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    await self._lake.insert_blocks([(block, size) for block, size, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every waiting export
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._drainer = None
            for _, _, done in self._pending:  # only left when the drainer itself was cancelled
                if not done.done():
                    done.cancel()
            self._pending = []


class OtlpWriter:
    """Writes the blocks of OTLP requests to the data lake and the object store.

    Args:
        lake: process, stream and block rows.
        store: payload objects.
        audience: the write audience of exports made without a principal; None for none.
        clock: Unix-ns wall clock for blocks whose records carry no time.
        retry_after: seconds clients are asked to wait when storage fails.
        cache_size: how many process and stream ids to remember as already registered.
    """

    def __init__(
        self,
        lake: DataLake,
        store: ObjectStore,
        *,
        audience: str | None = None,
        clock: Callable[[], int] = time.time_ns,
        retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
        cache_size: int = 10_000,
    ) -> None:
        self._lake = lake
        self._store = store
        self._audience = audience
        self._clock = clock
        self._retry_after = retry_after
        self._ownership = ProcessOwnership(lake, cache_size)
        self._processes = _Seen(cache_size)  # (process id, audience) pairs registered and owned
        self._streams = _Seen(cache_size)
        self._rows = BlockRowBatcher(lake)
        self.export_wrapper: ExportWrapper | None = None
        """Runs each export (signal name, the export) around something: self-telemetry's spans."""

    async def export(
        self, signal: Signal, request: Any, *, extra_hash_input: bytes = b"", principal: Principal | None = None
    ) -> SplitRequest:
        """Store every resource of ``request`` as a block; return the split (for partial success).

        ``extra_hash_input`` is folded into the block ids (the webhook route's canonical headers);
        ``principal`` is the authenticated writer, whose write audience the rows are stamped with.

        Raises:
            OtlpUnavailableError: PostgreSQL or the object store failed (the client should retry).
            OtlpPermissionDeniedError: a resource's process belongs to another audience.
        """
        audience = self._audience if principal is None else write_audience(principal)
        if self.export_wrapper is not None:
            run = functools.partial(self._export, signal, request, extra_hash_input, audience)
            return await self.export_wrapper(signal.name, run)
        return await self._export(signal, request, extra_hash_input, audience)

    async def export_protobuf(self, signal: Signal, data: bytes, *, principal: Principal | None = None) -> SplitRequest:
        """``export`` of a request still in its protobuf bytes (the receivers' path).

        The C wire scanner splits it without parsing it when it can (``split_request_bytes``);
        otherwise upb parses it, with the usual ``OtlpInvalidRequestError`` when it is malformed.
        """
        audience = self._audience if principal is None else write_audience(principal)
        if self.export_wrapper is not None:
            run = functools.partial(self._export_protobuf, signal, data, audience)
            return await self.export_wrapper(signal.name, run)
        return await self._export_protobuf(signal, data, audience)

    async def _export_protobuf(self, signal: Signal, data: bytes, audience: str | None) -> SplitRequest:
        split = split_request_bytes(signal, data, audience=audience, clock=self._clock)
        if split is None:
            split = split_request(signal, parse_request(signal, data, PROTOBUF), audience=audience, clock=self._clock)
        return await self._store_split(signal, split, audience)

    async def _export(
        self, signal: Signal, request: Any, extra_hash_input: bytes, audience: str | None
    ) -> SplitRequest:
        split = split_request(signal, request, audience=audience, clock=self._clock, extra_hash_input=extra_hash_input)
        return await self._store_split(signal, split, audience)

    async def _store_split(self, signal: Signal, split: SplitRequest, audience: str | None) -> SplitRequest:
        for item in split.blocks:
            try:
                await self._write(item, audience)
            except AudienceOwnershipError as exc:
                raise OtlpPermissionDeniedError(str(exc)) from None
            except LakehouseError as exc:
                _LOG.warning("storing OTLP %s block %s failed: %s", signal.name, item.block.block_id, exc)
                msg = f"storage unavailable: {exc}"
                raise OtlpUnavailableError(msg, retry_after=self._retry_after) from exc
        return split

    async def _write(self, item: OtlpBlock, audience: str | None) -> None:
        process, stream, block = item.process, item.stream, item.block
        owned = (process.process_id, audience)
        if owned not in self._processes:
            if await self._ownership.register(process, audience):
                log_new_process(process, f"OTLP {item.signal.name.lower()}")
            self._processes.add(owned)
        if stream.stream_id not in self._streams:
            await self._lake.insert_stream(stream, format=item.signal.format, audience=audience)
            self._streams.add(stream.stream_id)
        payload = otlp_payload_cbor(block.payload.objects)
        # Object first, create-only, then the row: a crash in between leaves an object that the
        # retried request finds and keeps (micromegas-wire.md §3).
        await self._store.put_if_absent(block_object_key(block.process_id, block.stream_id, block.block_id), payload)
        await self._rows.insert(block, len(payload))
