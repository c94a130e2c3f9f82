"""The one module that owns the cffi ``ffi``/``lib`` of ``sirius.tracing._native``.

Every call into C goes through here: buffers are handed over with ``ffi.from_buffer`` (no
copies), capacities are computed so C can never write past a numpy array, and negative return
codes become ``TransitScanError`` in a single ``_check`` (python-practices.md §3, practice 14).
Importing this module checks the extension's ABI version, so a stale build fails loudly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._exceptions import TracingError, TransitScanError
from ._native import ffi, lib

ABI_VERSION = 2
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
    error_offset = ffi.new("int64_t *")
    count = lib.sirius_transit_scan(
        ffi.from_buffer("uint8_t[]", buffer),
        length,
        ffi.from_buffer("int64_t[]", sizes_table) if sizes_table.size else ffi.NULL,
        sizes_table.size,
        ffi.from_buffer("uint8_t[]", types, require_writable=True),
        ffi.from_buffer("uint32_t[]", offsets, require_writable=True),
        ffi.from_buffer("uint32_t[]", sizes, require_writable=True),
        capacity,
        error_offset,
    )
    _check(count, "transit queue", int(error_offset[0]))
    return types[:count], offsets[:count], sizes[:count]


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
