"""cffi builder of ``sirius.tracing._native``: the transit scanner now, the native tracer later."""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"

ffibuilder = FFI()
ffibuilder.cdef((HERE / "native.cdef.h").read_text())
ffibuilder.set_source(
    "sirius.tracing._native",
    '#include "sirius_native.h"',
    sources=[str(p.relative_to(HERE.parent)) for p in sorted(NATIVE.glob("*.c"))],
    include_dirs=[str(NATIVE), str(NATIVE / "include")],
    # headers listed so edits trigger a rebuild and sdists carry them
    depends=[str(p.relative_to(HERE.parent)) for p in sorted(NATIVE.rglob("*.h"))],
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
