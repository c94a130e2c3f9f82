"""cffi builder of ``sirius.otel_bridge._wire_native``: the OTLP wire scanner (``native/otlp_scan.c``).

A module of its own (not part of ``sirius.tracing._native``): the scanner belongs to the OTLP
bridge, has no C-API calls (so it is ``abi3``-neutral C), and rebuilding it never touches the
tracer. ``setup.py`` lists it next to the tracing builder.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"

ffibuilder = FFI()
ffibuilder.cdef((NATIVE / "otlp_scan.h").read_text())
ffibuilder.set_source(
    "sirius.otel_bridge._wire_native",
    '#include <stdint.h>\n#include "otlp_scan.h"\n',
    sources=[str((NATIVE / "otlp_scan.c").relative_to(HERE.parent))],
    include_dirs=[str(NATIVE)],
    depends=[str(p.relative_to(HERE.parent)) for p in sorted(NATIVE.glob("*.h"))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
