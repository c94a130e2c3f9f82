"""The one module that owns the cffi ``ffi``/``lib`` of ``sirius.tracing._native``.

Every call into C goes through here: buffers are handed over with ``ffi.from_buffer`` (no
copies), capacities are computed so C can never write past a numpy array, and negative return
codes become ``TransitScanError`` in a single ``_check`` (python-practices.md §3, practice 14).
Importing this module checks the extension's ABI version, so a stale build fails loudly.

Two planes of the native tracer meet here. The control plane (init, flush, shutdown, the
delivery queue, stats, process identity) is plain cffi: rare calls, and releasing the GIL is
exactly right for ``next_item``'s blocking wait. The hot calls live in ``sirius.tracing._fast``,
C-API functions compiled into the same extension that keep the GIL (``fast_module``).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from ._exceptions import TracingError, TransitScanError
from ._native import ffi, lib

ABI_VERSION = 5
"""ABI version this binding was written for (``sirius_native_abi_version()``)."""

_MESSAGES: dict[int, str] = {
    lib.SIRIUS_SCAN_E_UNKNOWN_TYPE: "unknown type index",
    lib.SIRIUS_SCAN_E_TRUNCATED_HEADER: "truncated dynamic size header",
    lib.SIRIUS_SCAN_E_TRUNCATED_BODY: "body runs past the end of the buffer",
    lib.SIRIUS_SCAN_E_CAPACITY: "output capacity exceeded",
    lib.SIRIUS_SCAN_E_TOO_LARGE: "buffer too large for 32-bit offsets",
}

if lib.sirius_native_abi_version() != ABI_VERSION:  # pragma: no cover - only with a stale build
    _msg = (
        f"sirius.tracing._native has ABI {lib.sirius_native_abi_version()}, expected {ABI_VERSION}: "
        "rebuild with `pip install -e .`"
    )
    raise TracingError(_msg)


def abi_version() -> int:
    """Return the ABI version reported by the loaded native extension."""
    return int(lib.sirius_native_abi_version())


def _check(result: int, what: str, offset: int = -1) -> int:
    if result < 0:
        reason = _MESSAGES.get(result, f"error {result}")
        where = f" at offset {offset}" if offset >= 0 else ""
        msg = f"{what}: {reason}{where}"
        raise TransitScanError(msg, code=result, offset=offset)
    return result


def _type_size_table(type_sizes: Sequence[int] | npt.ArrayLike) -> np.ndarray:
    sizes = np.ascontiguousarray(np.asarray(type_sizes, dtype=np.int64).reshape(-1))
    if sizes.size > 256:
        msg = f"{sizes.size} type sizes given; a u8 type index addresses at most 256"
        raise ValueError(msg)
    return sizes


def scan_queue(
    buffer: bytes, type_sizes: Sequence[int] | npt.ArrayLike
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Split a decompressed transit queue into records.

    Args:
        buffer: the queue bytes ``[u8 type_index][u32 size if dynamic][body]...``.
        type_sizes: body size per type index: > 0 for POD, 0 for dynamic, -1 for an index that
            must not occur. Indexes past the end are unknown too.

    Returns:
        ``(types, offsets, sizes)``: per record, its type index, the offset of its body in
        ``buffer`` and the body size.

    Raises:
        TransitScanError: unknown type index, truncated size header or body past the end.
        ValueError: more than 256 type sizes.

    >>> scan_queue(bytes([1, 2, 0, 0, 0, 7, 7, 0, 9]), [1, 0])
    (array([1, 0], dtype=uint8), array([5, 8], dtype=uint32), array([2, 1], dtype=uint32))
    """
    sizes_table = _type_size_table(type_sizes)
    length = len(buffer)
    if length == 0:
        return np.empty(0, np.uint8), np.empty(0, np.uint32), np.empty(0, np.uint32)
    # Each record takes at least 1 + min(POD size, 4-byte dynamic header) bytes: that bounds the
    # record count, so the arrays are allocated once and the scan needs a single pass.
    valid = sizes_table[sizes_table >= 0]
    min_record = 1 + int(np.min(np.where(valid == 0, 4, valid))) if valid.size else 1
    capacity = length // min_record + 1
    types = np.empty(capacity, np.uint8)
    offsets = np.empty(capacity, np.uint32)
    sizes = np.empty(capacity, np.uint32)
    count = _transit_scan(buffer, sizes_table, (types, offsets, sizes), capacity)
    return types[:count], offsets[:count], sizes[:count]


def count_queue_records(buffer: bytes | memoryview, type_sizes: Sequence[int] | npt.ArrayLike) -> int:
    """Check a decompressed transit queue as ``scan_queue`` does and return its record count only.

    The same native walk without the per-record arrays: validating a block at ingestion needs
    the count and the errors, not the offsets (for a 1 MiB queue of 17-byte events the arrays
    are ~2 MB to allocate and fill).

    Raises:
        TransitScanError: unknown type index, truncated size header or body past the end.
        ValueError: more than 256 type sizes.

    >>> count_queue_records(bytes([1, 2, 0, 0, 0, 7, 7, 0, 9]), [1, 0])
    2
    """
    sizes_table = _type_size_table(type_sizes)
    length = len(buffer)
    if length == 0:
        return 0
    return _transit_scan(buffer, sizes_table, None, 0)


def _transit_scan(
    buffer: bytes | memoryview,
    sizes_table: np.ndarray,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    capacity: int,
) -> int:
    """Run the native scanner over a non-empty ``buffer``; return its record count.

    ``arrays`` (types, offsets, sizes) receive up to ``capacity`` records; None only counts and
    checks (the scanner accepts NULL output arrays for that).
    """
    if arrays is None:
        outputs = (ffi.NULL, ffi.NULL, ffi.NULL)
    else:
        types, offsets, sizes = arrays
        outputs = (
            ffi.from_buffer("uint8_t[]", types, require_writable=True),
            ffi.from_buffer("uint32_t[]", offsets, require_writable=True),
            ffi.from_buffer("uint32_t[]", sizes, require_writable=True),
        )
    error_offset = ffi.new("int64_t *")
    count = lib.sirius_transit_scan(
        ffi.from_buffer("uint8_t[]", buffer),
        len(buffer),
        ffi.from_buffer("int64_t[]", sizes_table) if sizes_table.size else ffi.NULL,
        sizes_table.size,
        *outputs,
        capacity,
        error_offset,
    )
    return _check(count, "transit queue", int(error_offset[0]))


def gather(buffer: bytes, starts: npt.ArrayLike, lengths: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Concatenate the windows ``buffer[starts[i] : starts[i] + lengths[i]]``.

    Raises:
        TransitScanError: when a window runs past the end of ``buffer``.

    >>> bytes(gather(b"hello world", [6, 0], [5, 1]))
    b'worldh'
    """
    starts_arr = np.ascontiguousarray(starts, dtype=np.uint32)
    lengths_arr = np.ascontiguousarray(lengths, dtype=np.uint32)
    if starts_arr.shape != lengths_arr.shape or starts_arr.ndim != 1:
        msg = "starts and lengths must be 1-D arrays of one length"
        raise ValueError(msg)
    total = int(lengths_arr.sum(dtype=np.uint64))
    out = np.empty(total, np.uint8)
    if total == 0:
        return out
    written = lib.sirius_transit_gather(
        ffi.from_buffer("uint8_t[]", buffer),
        len(buffer),
        ffi.from_buffer("uint32_t[]", starts_arr),
        ffi.from_buffer("uint32_t[]", lengths_arr),
        starts_arr.size,
        ffi.from_buffer("uint8_t[]", out, require_writable=True),
        total,
    )
    _check(written, "gather")
    return out


def gather_fixed(buffer: bytes, starts: npt.ArrayLike, width: int) -> npt.NDArray[np.uint8]:
    """Gather ``width`` bytes at each start into an ``(n, width)`` row-major byte matrix.

    Raises:
        TransitScanError: when a window runs past the end of ``buffer``.

    >>> gather_fixed(b"abcdef", [4, 0], 2).tolist()
    [[101, 102], [97, 98]]
    """
    starts_arr = np.ascontiguousarray(starts, dtype=np.uint32).reshape(-1)
    if not 0 <= width < 2**32:
        msg = f"width out of range: {width}"
        raise ValueError(msg)
    out = np.empty((starts_arr.size, width), np.uint8)
    if out.size == 0:
        return out
    written = lib.sirius_transit_gather_fixed(
        ffi.from_buffer("uint8_t[]", buffer),
        len(buffer),
        ffi.from_buffer("uint32_t[]", starts_arr),
        starts_arr.size,
        width,
        ffi.from_buffer("uint8_t[]", out, require_writable=True),
        out.size,
    )
    _check(written, "gather")
    return out


# ---------------------------------------------------------------------------------------------
# native tracer: control plane

ITEM_KINDS: dict[int, str] = {
    lib.SIRIUS_ITEM_PROCESS: "process",
    lib.SIRIUS_ITEM_STREAM: "stream",
    lib.SIRIUS_ITEM_BLOCK: "block",
}
"""``sirius_item_info.kind`` → the ingestion route's item kind (``TelemetrySink.send_encoded``)."""

CLOCKS: dict[str, int] = {
    "auto": lib.SIRIUS_CLOCK_AUTO,
    "tsc": lib.SIRIUS_CLOCK_TSC,
    "monotonic": lib.SIRIUS_CLOCK_MONOTONIC,
}

DESC_SPAN = lib.SIRIUS_DESC_SPAN
DESC_LOCATION = lib.SIRIUS_DESC_LOCATION
DESC_LOG = lib.SIRIUS_DESC_LOG
DESC_METRIC = lib.SIRIUS_DESC_METRIC

CLOSED = lib.SIRIUS_E_CLOSED

_TRACER_MESSAGES: dict[int, str] = {
    lib.SIRIUS_E_STATE: "the tracer is already running (or not running)",
    lib.SIRIUS_E_INVALID: "invalid argument",
    lib.SIRIUS_E_NOMEM: "out of memory",
    lib.SIRIUS_E_TIMEOUT: "timed out",
}


def fast_module() -> ModuleType:
    """Return ``sirius.tracing._fast`` (built on first use by the cffi-callable initialiser)."""
    module = sys.modules.get("sirius.tracing._fast")
    if module is None:
        if lib.sirius_py_fast_init() != 0:  # pragma: no cover - only on interpreter failure
            msg = "could not create sirius.tracing._fast"
            raise TracingError(msg)
        module = sys.modules["sirius.tracing._fast"]
    return module


@dataclass(frozen=True, slots=True)
class NativeIdentity:
    """What the process registers; None fields are computed by C."""

    exe: str | None = None
    username: str | None = None
    computer: str | None = None
    distro: str | None = None
    cpu_brand: str | None = None
    properties: Mapping[str, str] | None = None
    process_id: uuid.UUID | None = None
    parent_process_id: uuid.UUID | None = None


def _ms(seconds: float | None) -> int:
    if seconds is None:
        return -1
    return max(0, min(int(seconds * 1000), 2**31 - 1))


def tracer_init(
    *,
    chunk_size: int,
    chunks_per_thread: int,
    max_threads: int,
    block_size: int,
    flush_period: float,
    max_queue_bytes: int,
    clock: str,
    identity: NativeIdentity,
) -> None:
    """Start the native tracer.

    Raises:
        TracingError: already running, or the native side refused the configuration.
        ValueError: unknown clock name.
    """
    if clock not in CLOCKS:
        msg = f"clock must be one of {sorted(CLOCKS)}, got {clock!r}"
        raise ValueError(msg)
    cfg = ffi.new("sirius_config *")
    lib.sirius_config_default(cfg)
    cfg.chunk_size = chunk_size
    cfg.chunks_per_thread = chunks_per_thread
    cfg.max_threads = max_threads
    cfg.block_size = block_size
    cfg.flush_period_ms = max(1, int(flush_period * 1000))
    cfg.max_queue_bytes = max_queue_bytes
    cfg.clock = CLOCKS[clock]
    cfg.install_atexit = 0  # the Python layer shuts down at exit (and delivers)
    keep: list[Any] = []  # C copies everything during init; these only live until it returns

    def text(value: str | None) -> Any:
        if value is None:
            return ffi.NULL
        buf = ffi.new("char[]", value.encode("utf-8", "replace"))
        keep.append(buf)
        return buf

    cfg.exe = text(identity.exe)
    cfg.username = text(identity.username)
    cfg.realname = text(identity.username)
    cfg.computer = text(identity.computer)
    cfg.distro = text(identity.distro)
    cfg.cpu_brand = text(identity.cpu_brand)
    if identity.process_id is not None:
        pid = ffi.new("uint8_t[16]", identity.process_id.bytes)
        keep.append(pid)
        cfg.process_id = pid
    if identity.parent_process_id is not None:
        parent = ffi.new("uint8_t[16]", identity.parent_process_id.bytes)
        keep.append(parent)
        cfg.parent_process_id = parent
    if identity.properties:
        items = [text(part) for kv in identity.properties.items() for part in kv]
        array = ffi.new("const char *[]", [*items, ffi.NULL])
        keep.append(array)
        cfg.properties = array
    _check_tracer(lib.sirius_init(cfg), "init")


def _check_tracer(result: int, what: str) -> int:
    if result < 0:
        msg = f"native tracer {what}: {_TRACER_MESSAGES.get(result, f'error {result}')}"
        raise TracingError(msg)
    return result


def tracer_flush(timeout: float | None) -> bool:
    """Seal everything emitted so far into queued blocks; False if not running or too slow."""
    return lib.sirius_flush(_ms(timeout)) == 0


def tracer_shutdown(timeout: float | None) -> bool:
    """Flush, stop the sink thread and close the queue; False if not running or too slow."""
    return lib.sirius_shutdown(_ms(timeout)) == 0


def tracer_is_running() -> bool:
    """True between init and shutdown."""
    return bool(lib.sirius_is_running())


class ItemBuffer:
    """A growable buffer ``next_item`` copies bodies into (one per delivering thread)."""

    __slots__ = ("buf", "info")

    def __init__(self, size: int = 1 << 20) -> None:
        self.buf = ffi.new("uint8_t[]", size)
        self.info = ffi.new("sirius_item_info *")


def next_item(holder: ItemBuffer, timeout: float | None) -> tuple[str, int, bytes] | int | None:
    """Pop the next ingestion body: ``(kind, nb_objects, body)``, None on timeout, ``CLOSED``.

    Blocks with the GIL released (cffi), as a delivery thread should.
    """
    while True:
        n = lib.sirius_next_item(holder.buf, len(holder.buf), _ms(timeout), holder.info)
        if n == lib.SIRIUS_E_TOO_SMALL:
            holder.buf = ffi.new("uint8_t[]", int(holder.info.size) * 2)
            continue
        if n == CLOSED:
            return CLOSED
        if n <= 0:
            return None
        kind = ITEM_KINDS.get(holder.info.kind, "block")
        return kind, int(holder.info.nb_objects), bytes(ffi.buffer(holder.buf, n))


def tracer_stats() -> dict[str, int]:
    """The native counters (``sirius_stats``) as a dict."""
    stats = ffi.new("sirius_stats *")
    lib.sirius_get_stats(stats)
    return {name: int(getattr(stats, name)) for name in dir(stats)}


def tracer_process_id() -> uuid.UUID | None:
    """The tracer's process id, None before the first init."""
    out = ffi.new("uint8_t[16]")
    if lib.sirius_process_id(out) != 0:
        return None
    return uuid.UUID(bytes=bytes(ffi.buffer(out, 16)))


def tracer_process_info_cbor() -> bytes | None:
    """The ``insert_process`` body of this process (finishes calibration: may sleep ~20 ms)."""
    size = 4096
    while True:
        buf = ffi.new("uint8_t[]", size)
        n = lib.sirius_process_info(buf, size)
        if n == lib.SIRIUS_E_TOO_SMALL:
            size *= 4
            continue
        if n < 0:
            return None
        return bytes(ffi.buffer(buf, n))


def set_thread_untraced(untraced: bool) -> None:
    """Mark the calling thread untraced (delivery threads must not trace themselves)."""
    lib.sirius_set_thread_untraced(1 if untraced else 0)


def cffi_span_calls(address: int) -> tuple[Any, Any, Any]:
    """``(begin, end, desc_pointer)`` through plain cffi wrappers: the benchmark's baseline."""
    pointer = ffi.cast("const sirius_desc *", address)
    return lib.sirius_span_begin, lib.sirius_span_end, pointer


def lz4_frame_compress(data: bytes) -> bytes:
    """The native sink's LZ4 frame encoder (for tests; not thread-safe)."""
    cap = int(lib.sr_lz4_frame_bound(len(data)))
    out = ffi.new("uint8_t[]", cap)
    n = lib.sirius_test_lz4_frame(ffi.from_buffer("uint8_t[]", data) if data else ffi.NULL, len(data), out, cap)
    _check_tracer(n, "lz4")
    return bytes(ffi.buffer(out, n))
