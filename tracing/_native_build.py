"""cffi builder of ``sirius.tracing._native``: the transit scanner and the native tracer.

Sources: ``native/*.c`` (scanner, ABI version, the ``_fast`` C-API module) and
``native/core/*.c`` (the tracer core, also buildable alone as a C library without Python, see
``native/README.md``). ``_CFFI_NO_LIMITED_API``: the hot calls are hand-written C-API functions
(``native/py_fast.c``) that need the full API (``METH_FASTCALL``, ``PyEval_SetProfile``, code
extras), so the extension is CPython-version specific rather than ``abi3``
(``native-tracer.md`` §5.9).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"


def _rel(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(HERE.parent)) for p in paths]


ffibuilder = FFI()
ffibuilder.cdef((HERE / "native.cdef.h").read_text())
ffibuilder.set_source(
    "sirius.tracing._native",
    '#include "sirius_native.h"\n#include "sirius_tracing.h"\n',
    sources=_rel(sorted(NATIVE.glob("*.c")) + sorted((NATIVE / "core").glob("*.c"))),
    include_dirs=[str(NATIVE), str(NATIVE / "include"), str(NATIVE / "core")],
    # headers listed so edits trigger a rebuild and sdists carry them
    depends=_rel(sorted(NATIVE.rglob("*.h"))),
    define_macros=[("_CFFI_NO_LIMITED_API", None)],
    py_limited_api=False,
    extra_compile_args=["-O2", "-std=gnu11", "-pthread", "-Wall", "-Wextra"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
