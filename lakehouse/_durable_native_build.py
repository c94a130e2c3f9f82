"""cffi builder of ``sirius.lakehouse._durable_native``: durable create-only writes in one C call.

``native/durable_write.c`` does a local object write's open/write/fsync/linkat sequence (and a
directory ``fsync``) in one call, during which cffi releases the GIL (``_durable_write.py`` uses
it, with its Python path as the fallback); ``native/durable_pool.c`` runs those calls on C
threads for an event loop (``_durable_pool.py``). Plain POSIX C with no C-API calls, a module of its
own so rebuilding it never touches the tracer or the OTLP scanner; ``setup.py`` lists it.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"

ffibuilder = FFI()
ffibuilder.cdef(
    "\n".join(
        line
        for line in (NATIVE / "durable_write.h").read_text().splitlines()
        if not line.startswith("#define") or line.split()[-1].lstrip("-").isdigit()
    )
)
ffibuilder.set_source(
    "sirius.lakehouse._durable_native",
    '#include <stddef.h>\n#include <stdint.h>\n#include "durable_write.h"\n',
    sources=[str((NATIVE / name).relative_to(HERE.parent)) for name in ("durable_write.c", "durable_pool.c")],
    libraries=["pthread"],
    include_dirs=[str(NATIVE)],
    depends=[str(p.relative_to(HERE.parent)) for p in sorted(NATIVE.glob("*.h"))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
