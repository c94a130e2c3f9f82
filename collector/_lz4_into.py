"""LZ4 frame decompression straight into one buffer, so validating a block costs its output once.

python-lz4 decompresses into a scratch buffer and then copies the result into the ``bytes`` it
returns: measured on an 8 MiB transit queue, the peak was 16 MiB (one-shot) to 24 MiB (the
streaming decompressor with a size limit, as ``decompress_queue`` uses it). Validation reads a
queue once and drops it, so here the reference decoder, ``LZ4F_decompress`` of the system
liblz4 (through cffi's ABI mode; ``liblz4.so.1`` ships with every Debian-based image, the
service image's base included), writes into a buffer of ours.

Which buffer: ``decompressed_queue`` first fills a per-thread scratch buffer of
``SCRATCH_BYTES``, allocated once and kept, so a usual block (1-4 MiB) costs neither a mapping
nor page faults (measured on the 2-core VM: a fresh 256 MiB mapping per queue cost ~1 ms for a
1 MiB queue, 20x the decompression itself; its page faults and the unmapping's TLB shootdown
dominated). A larger output continues in an anonymous mapping as large as the largest accepted
output (the scratch's bytes copied to its head), as ``decompress_queue_into`` always does: pages
the decoder never writes are never resident, so the peak is the output itself. The scratch is
resident memory the service keeps whatever the load, the same for every block, not per byte in
flight.

Each thread also keeps its decompression context between queues, and the frame loop makes one
library call per step in the usual case. cffi releases the GIL around every call into the library,
and on the service's event loop each release is a chance for the object store's worker threads to
take the GIL, the loop waiting to get it back (measured under the benchmark's load: validating a
16 KiB block took ~400 µs of the loop's wall time for ~16 µs of its CPU). A fresh context per queue
cost a create, an ``isError`` per step and a free around the one call that does the work, and the
library reallocated its frame buffers each time; now a kept context serves every frame that
decoded cleanly (the library resets it at a frame's end), error codes are recognised by their
value (every error is ``(size_t)-code``; a genuine hint is at most a block's size) before
``LZ4F_isError`` confirms them, and a context that saw an error or an unfinished frame is freed,
never reused. The call itself keeps the GIL, through ``ctypes.PyDLL`` (which does not release
it), when the input left is at most ``HOLD_GIL_BELOW`` and the output goes to the scratch (so a
step lasts a few milliseconds at most; a 16 KiB queue decodes in ~4 µs, far less than a lost GIL
costs the loop); otherwise it releases it, through cffi, so a large block's decompression still
runs beside the worker threads. A kept context holds the library's
frame buffers (at most about two blocks: 8 MiB with 4 MiB blocks, resident only as far as used),
one per thread that validates, like the scratch.

Concatenated and skippable frames, linked blocks and checksums are the library's business, as
for python-lz4 (``LZ4F_decompress`` accepts a new output buffer between calls: it keeps the
history of linked blocks itself). Without liblz4 the python-lz4 path (``decompress_queue``) is
used.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import threading
from collections.abc import Iterator
from typing import Any

import cffi

from ..tracing import MAX_DECOMPRESSED_QUEUE_BYTES, WireFormatError, decompress_queue

__all__ = ["HOLD_GIL_BELOW", "SCRATCH_BYTES", "decompress_queue_into", "decompressed_queue"]

HOLD_GIL_BELOW = 256 * 1024
"""Decompression steps with at most this much input left, into the scratch, are made without releasing the GIL."""

SCRATCH_BYTES = 4 * 1024 * 1024
"""Outputs up to this size are decompressed into a reused per-thread buffer (kept resident)."""

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
_ERROR_FLOOR = 1 << (8 * ctypes.sizeof(ctypes.c_size_t) - 1)
"""Any return value at or above this is an error code, never a hint (see the module docstring)."""


@functools.cache
def _liblz4() -> tuple[cffi.FFI, Any] | None:
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    try:
        return ffi, ffi.dlopen("liblz4.so.1")
    except OSError:
        return None


@functools.cache
def _held_decompress() -> Any | None:
    """``LZ4F_decompress`` called with the GIL held (``ctypes.PyDLL``), or None without liblz4."""
    try:
        function = ctypes.PyDLL("liblz4.so.1").LZ4F_decompress
    except (OSError, AttributeError):
        return None
    size_p = ctypes.POINTER(ctypes.c_size_t)
    function.restype = ctypes.c_size_t
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, size_p, ctypes.c_void_p, size_p, ctypes.c_void_p]
    return function


class _Scratch(threading.local):
    """The calling thread's scratch buffer (``busy`` while a view of it is handed out) and its kept LZ4 context."""

    def __init__(self) -> None:
        self.buffer: bytearray | None = None
        self.busy = False
        self.context: Any = None  # an LZ4F_dctx* ready for a new frame, or None (in use or never made)


_SCRATCH = _Scratch()


def decompress_queue_into(data: bytes | memoryview, max_size: int = MAX_DECOMPRESSED_QUEUE_BYTES) -> bytes | memoryview:
    """Decompress one queue (LZ4 frames, possibly concatenated), refusing more than ``max_size`` bytes.

    Returns:
        The decompressed bytes: a view of an anonymous mapping that lives as long as the view
        (or ``bytes`` from the fallback path).

    Raises:
        WireFormatError: on a truncated or corrupt frame, trailing bytes, or too much output.
    """
    return _decompress_owned(data, max_size, None)


@contextlib.contextmanager
def decompressed_queue(
    data: bytes | memoryview, max_size: int = MAX_DECOMPRESSED_QUEUE_BYTES
) -> Iterator[bytes | memoryview]:
    """``decompress_queue_into`` for a look that ends with the ``with`` block: small outputs reuse the scratch.

    The yielded view is released on exit; the caller must keep no reference to it (or to
    anything exporting its buffer) past the block.

    Raises:
        WireFormatError: as ``decompress_queue_into``.
    """
    scratch = _SCRATCH
    if scratch.busy or _liblz4() is None or not data:
        yield _decompress_owned(data, max_size, None)
        return
    if scratch.buffer is None:
        scratch.buffer = bytearray(SCRATCH_BYTES)  # zero-filled: resident from here on
    scratch.busy = True
    try:
        result = _decompress_owned(data, max_size, scratch.buffer)
        try:
            yield result
        finally:
            if isinstance(result, memoryview):
                _retire_if_exported(scratch, result)
    finally:
        scratch.busy = False


def _retire_if_exported(scratch: _Scratch, view: memoryview) -> None:
    """Release ``view``; when something still reads the scratch through it, never write into it again."""
    buffer = scratch.buffer
    try:
        view.release()
        if buffer is not None:
            # Views of the view share its buffer without being exports of it: only the bytearray
            # knows. Resizing an exported bytearray raises; this costs no copy (grow by one, shrink back).
            buffer.append(0)
            buffer.pop()
    except BufferError:
        scratch.buffer = None


def _decompress_owned(data: bytes | memoryview, max_size: int, scratch: bytearray | None) -> bytes | memoryview:
    binding = _liblz4()
    if binding is None or not data:
        return decompress_queue(data, max_size)
    dctx = _take_context(binding)
    run: _Run | None = None
    try:
        run = _Run(binding, dctx, data, max_size)
        if scratch is not None:
            limit = min(len(scratch), max_size + 1)
            if run.into(scratch, 0, limit):
                return memoryview(scratch)[: run.dst_pos]
        try:
            out = mmap.mmap(-1, max_size + 1)  # reserved, not resident: only written pages count
        except OSError:  # address space refused (strict overcommit): the copying path still works
            return decompress_queue(data, max_size)
        if run.dst_pos:
            out[: run.dst_pos] = memoryview(scratch)[: run.dst_pos]  # type: ignore[arg-type]
        run.into(out, run.dst_pos, max_size + 1)
        return memoryview(out)[: run.dst_pos]
    finally:
        _give_back_context(binding, dctx, reusable=run is not None and run.finished)


def _take_context(binding: tuple[cffi.FFI, Any]) -> Any:
    """The thread's kept decompression context (now in use), or a new one when it has none free."""
    dctx, _SCRATCH.context = _SCRATCH.context, None
    if dctx is not None:
        return dctx
    ffi, lib = binding
    dctx_ptr = ffi.new("LZ4F_dctx **")
    if lib.LZ4F_isError(lib.LZ4F_createDecompressionContext(dctx_ptr, _LZ4F_VERSION)):
        msg = "cannot create an LZ4 decompression context"
        raise MemoryError(msg)
    return dctx_ptr[0]


def _give_back_context(binding: tuple[cffi.FFI, Any], dctx: Any, *, reusable: bool) -> None:
    """Keep ``dctx`` for the thread's next queue when its last frame ended cleanly, else free it."""
    if reusable and _SCRATCH.context is None:
        _SCRATCH.context = dctx  # the library reset it at the frame's end: ready for a new frame
    else:
        binding[1].LZ4F_freeDecompressionContext(dctx)  # mid-frame or failed: never decoded from again


class _Run:
    """One decompression: the input, how far it got, and the output written so far."""

    def __init__(self, binding: tuple[cffi.FFI, Any], dctx: Any, data: bytes | memoryview, max_size: int) -> None:
        self._ffi, self._lib = binding
        self._dctx = dctx
        self._src = self._ffi.from_buffer(data)
        # Addresses for the GIL-holding ctypes calls, taken once (a cffi cast per call cost ~0.5 µs).
        self._dctx_address = int(self._ffi.cast("uintptr_t", dctx))
        self._src_address = int(self._ffi.cast("uintptr_t", self._src))
        self._max_size = max_size
        self.src_pos = 0
        self.dst_pos = 0
        self.finished = False  # the last frame is decoded: the context is ready for a new one

    def into(self, buffer: bytearray | mmap.mmap, dst_pos: int, limit: int) -> bool:
        """Continue into ``buffer[dst_pos:limit]``; True when the input is done, False when that fills up first.

        Raises:
            WireFormatError: corrupt or truncated input, or more than ``max_size`` bytes of output.
        """
        ffi, lib = self._ffi, self._lib
        src = self._src
        dst = ffi.from_buffer(buffer, require_writable=True)  # kept alive (and exported) for the calls
        dst_address = int(ffi.cast("uintptr_t", dst))
        self.dst_pos = dst_pos
        while True:
            hint, consumed, produced = self._step(dst, dst_address, len(src) - self.src_pos, limit - self.dst_pos)
            if hint >= _ERROR_FLOOR and lib.LZ4F_isError(hint):  # one library call per step otherwise
                reason = ffi.string(lib.LZ4F_getErrorName(hint)).decode(errors="replace")
                msg = f"payload is not a valid LZ4 frame: {reason}"
                raise WireFormatError(msg)
            self.src_pos += consumed
            self.dst_pos += produced
            if self.dst_pos > self._max_size:
                msg = f"payload decompresses to more than {self._max_size} bytes"
                raise WireFormatError(msg)
            if self.src_pos == len(src) and hint == 0:
                self.finished = True
                return True  # 0: the last frame is decoded and all its output written
            if self.dst_pos == limit:
                return False  # full (the decoder may hold more output): continue in a larger buffer
            if self.src_pos == len(src):  # the frame wants more input than the payload holds
                msg = "payload is not a valid LZ4 frame: truncated"
                raise WireFormatError(msg)
            if consumed == 0 and produced == 0:  # no progress (cannot happen with room left): refuse
                msg = "payload is not a valid LZ4 frame: decoder stalled"
                raise WireFormatError(msg)

    def _step(self, dst: Any, dst_address: int, src_left: int, dst_room: int) -> tuple[int, int, int]:
        """One ``LZ4F_decompress`` call from ``src_pos`` into ``dst[dst_pos:]``: (hint, bytes read, bytes written).

        ``dst_address`` is ``dst``'s address, for the GIL-holding call.
        """
        ffi = self._ffi
        held = _held_decompress()
        # Bounded both ways: little input, and output into the scratch at most (a small frame can expand
        # ~255x; into the overflow mapping it could hold the GIL for tens of milliseconds).
        if held is not None and src_left <= HOLD_GIL_BELOW and dst_room <= SCRATCH_BYTES:
            src_size, dst_size = ctypes.c_size_t(src_left), ctypes.c_size_t(dst_room)
            hint = held(
                self._dctx_address,
                dst_address + self.dst_pos,
                ctypes.byref(dst_size),
                self._src_address + self.src_pos,
                ctypes.byref(src_size),
                None,
            )
            return hint, src_size.value, dst_size.value
        src_size_p, dst_size_p = ffi.new("size_t *", src_left), ffi.new("size_t *", dst_room)
        hint = self._lib.LZ4F_decompress(
            self._dctx, dst + self.dst_pos, dst_size_p, self._src + self.src_pos, src_size_p, ffi.NULL
        )
        return hint, src_size_p[0], dst_size_p[0]
