"""LZ4 frame decompression straight into one buffer, so validating a block costs its output once.

python-lz4 decompresses into a scratch buffer and then copies the result into the ``bytes`` it
returns: measured on an 8 MiB transit queue, the peak was 16 MiB (one-shot) to 24 MiB (the
streaming decompressor with a size limit, as ``decompress_queue`` uses it). Validation reads a
queue once and drops it, so here the reference decoder, ``LZ4F_decompress`` of the system
liblz4 (through cffi's ABI mode; ``liblz4.so.1`` ships with every Debian-based image, the
service image's base included), writes into an anonymous buffer as large as the largest accepted
output. Pages the decoder never writes are never resident, so the peak is the output itself.

Concatenated and skippable frames, linked blocks and checksums are the library's business, as
for python-lz4. Without liblz4 the python-lz4 path (``decompress_queue``) is used.
"""

from __future__ import annotations

import functools
import mmap
from typing import Any

import cffi

from ..tracing import MAX_DECOMPRESSED_QUEUE_BYTES, WireFormatError, decompress_queue

__all__ = ["decompress_queue_into"]

_CDEF = """
typedef struct LZ4F_dctx_s LZ4F_dctx;
unsigned LZ4F_isError(size_t code);
const char* LZ4F_getErrorName(size_t code);
size_t LZ4F_createDecompressionContext(LZ4F_dctx** dctxPtr, unsigned version);
size_t LZ4F_freeDecompressionContext(LZ4F_dctx* dctx);
size_t LZ4F_decompress(LZ4F_dctx* dctx, void* dstBuffer, size_t* dstSizePtr,
                       const void* srcBuffer, size_t* srcSizePtr, const void* dOptPtr);
"""
_LZ4F_VERSION = 100  # the frame API version every liblz4 since 1.7 implements


@functools.cache
def _liblz4() -> tuple[cffi.FFI, Any] | None:
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    try:
        return ffi, ffi.dlopen("liblz4.so.1")
    except OSError:
        return None


def decompress_queue_into(data: bytes | memoryview, max_size: int = MAX_DECOMPRESSED_QUEUE_BYTES) -> bytes | memoryview:
    """Decompress one queue (LZ4 frames, possibly concatenated), refusing more than ``max_size`` bytes.

    Returns:
        The decompressed bytes: a view of an anonymous mapping that lives as long as the view
        (or ``bytes`` from the fallback path).

    Raises:
        WireFormatError: on a truncated or corrupt frame, trailing bytes, or too much output.
    """
    binding = _liblz4()
    if binding is None or not data:
        return decompress_queue(data, max_size)
    ffi, lib = binding
    try:
        out = mmap.mmap(-1, max_size + 1)  # reserved, not resident: only written pages count
    except OSError:  # address space refused (strict overcommit): the copying path still works
        return decompress_queue(data, max_size)
    dctx_ptr = ffi.new("LZ4F_dctx **")
    if lib.LZ4F_isError(lib.LZ4F_createDecompressionContext(dctx_ptr, _LZ4F_VERSION)):
        msg = "cannot create an LZ4 decompression context"
        raise MemoryError(msg)
    try:
        written = _decompress(binding, dctx_ptr[0], data, out, max_size)
    finally:
        lib.LZ4F_freeDecompressionContext(dctx_ptr[0])
    return memoryview(out)[:written]


def _decompress(
    binding: tuple[cffi.FFI, Any], dctx: Any, data: bytes | memoryview, out: mmap.mmap, max_size: int
) -> int:
    """Run ``LZ4F_decompress`` over ``data`` into ``out``; return the number of bytes written."""
    ffi, lib = binding
    src = ffi.from_buffer(data)
    dst = ffi.from_buffer(out, require_writable=True)
    src_size = ffi.new("size_t *")
    dst_size = ffi.new("size_t *")
    src_pos = dst_pos = 0
    while True:
        src_size[0] = len(src) - src_pos
        dst_size[0] = len(dst) - dst_pos
        hint = lib.LZ4F_decompress(dctx, dst + dst_pos, dst_size, src + src_pos, src_size, ffi.NULL)
        if lib.LZ4F_isError(hint):
            reason = ffi.string(lib.LZ4F_getErrorName(hint)).decode(errors="replace")
            msg = f"payload is not a valid LZ4 frame: {reason}"
            raise WireFormatError(msg)
        src_pos += src_size[0]
        dst_pos += dst_size[0]
        if dst_pos > max_size:
            msg = f"payload decompresses to more than {max_size} bytes"
            raise WireFormatError(msg)
        if src_pos == len(src):
            if hint != 0:  # the frame wants more input than the payload holds
                msg = "payload is not a valid LZ4 frame: truncated"
                raise WireFormatError(msg)
            return dst_pos
        if src_size[0] == 0 and dst_size[0] == 0:  # no progress (cannot happen with room left): refuse
            msg = "payload is not a valid LZ4 frame: decoder stalled"
            raise WireFormatError(msg)
