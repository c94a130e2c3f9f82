"""The C test programs of tests/tracing/c: build the static library the way tracing/native/README.md
documents, compile a program against it and the public header, run it, and read back the ingestion
items its consumer thread wrote (c/item_writer.h) along with its stdout "name value" pairs, and
send those items to an ingestion service."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from sirius.tracing import SinkConfig, TelemetrySink

NATIVE = Path(__file__).resolve().parents[2] / "tracing" / "native"
PROGRAMS = Path(__file__).resolve().parent / "c"
KINDS = {1: "process", 2: "stream", 3: "block"}

Item = tuple[str, int, bytes]


def build_static_library(out: Path) -> Path:
    """The README's build: compile tracing/native/core/*.c, archive them (warnings are errors)."""
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted((NATIVE / "core").glob("*.c"))
    cflags = ["-O2", "-std=gnu11", "-pthread", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE / 'include'}"]
    objects = []
    for source in sources:
        obj = out / (source.stem + ".o")
        subprocess.run(["cc", *cflags, "-c", str(source), "-o", str(obj)], check=True)
        objects.append(str(obj))
    library = out / "libsirius_tracing.a"
    subprocess.run(["ar", "rcs", str(library), *objects], check=True)
    return library


def build_program(name: str, out: Path) -> Path:
    """Compile c/<name>.c against a freshly built static library in `out` (warnings are errors)."""
    library = build_static_library(out / "lib")
    exe = out / name
    subprocess.run(
        [
            "cc",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pthread",
            f"-I{NATIVE / 'include'}",
            str(PROGRAMS / f"{name}.c"),
            f"-L{library.parent}",
            "-lsirius_tracing",
            "-o",
            str(exe),
        ],
        check=True,
    )
    return exe


def run_program(exe: Path, items_path: Path, *args: object) -> tuple[dict[str, int], list[Item]]:
    """Run `exe ITEMS_PATH ARGS…`; return its stdout pairs and the items it wrote to ITEMS_PATH."""
    result = subprocess.run(
        [str(exe), str(items_path), *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    words = result.stdout.split()
    report = {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}
    data = items_path.read_bytes()
    items, pos = [], 0
    while pos < len(data):
        kind, nb_objects, size = struct.unpack_from("<BII", data, pos)
        pos += 9
        items.append((KINDS[kind], nb_objects, data[pos : pos + size]))
        pos += size
    return report, items


def send_items(url: str, items: list[Item]) -> None:
    """Send the items as they are through a native sink to the ingestion service at ``url`` and
    wait until every one is delivered (none rejected)."""
    sink = TelemetrySink(SinkConfig(url=url))
    for kind, _nb, body in items:
        assert sink.send_encoded(kind, body)
    assert sink.flush(timeout=60)
    assert sink.stats().rejected_items == 0
    assert sink.shutdown(5)
