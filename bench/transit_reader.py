"""Benchmark: vectorised transit reader vs a plain LZ4-frame decompress of the same payload.

Builds two realistic ~1 MiB (decompressed) blocks with the Python transit writer — thread span
events on a ``cpu`` stream, and a log stream mixing dynamic-message and static-message events —
then times ``decode_block`` (decompress + scan + columnar decode, references checked) against
``lz4.frame.decompress`` of both queues. Prints events/s and the reader / decompress time ratio.

Run: ``/work/venv/bin/python bench/transit_reader.py [--repeat 15]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import lz4.frame

from sirius.lakehouse._transit_reader import decode_block
from sirius.tracing.transit._wire_format import Block, ProcessInfo
from sirius.tracing.transit._writer import LogMetadata, SpanMetadata, TransitWriter

TARGET = 1 << 20  # decompressed object-queue bytes per block
PROCESS = ProcessInfo(uuid.UUID(int=1), "bench", "u", "u", "h", "linux", "cpu", 2_500_000_000, 1_700_000_000 * 10**9, 0)


def cpu_block() -> tuple[TransitWriter, Block]:
    writer = TransitWriter(PROCESS, "cpu")
    descs = [SpanMetadata(f"span_{i}", "bench::cpu", "bench::cpu::mod", "cpu.rs", i, 0) for i in range(64)]
    ticks = 1_000
    depth: list[SpanMetadata] = []
    i = 0
    while writer.object_queue_size < TARGET:
        # a call tree: open up to 6 nested spans, then unwind
        if len(depth) < 6 and (i % 7 != 6 or not depth):
            depth.append(descs[i % len(descs)])
            writer.begin_thread_span(depth[-1], ticks=ticks)
        else:
            writer.end_thread_span(depth.pop(), ticks=ticks)
        ticks += 37 + i % 11
        i += 1
    return writer, writer.seal()


def log_block() -> tuple[TransitWriter, Block]:
    writer = TransitWriter(PROCESS, "log")
    descs = [
        LogMetadata(f"static message {i}", f"bench::log{i % 5}", 1 + i % 6, "bench::log", "log.rs", i)
        for i in range(32)
    ]
    ticks = 1_000
    i = 0
    while writer.object_queue_size < TARGET:
        desc = descs[i % len(descs)]
        if i % 4 == 3:
            writer.log_static(desc, ticks=ticks)
        else:
            writer.log_string(desc, f"request {i} served in {i % 997} us for user-{i % 113} (status 200)", ticks=ticks)
        ticks += 1_000 + i % 17
        i += 1
    return writer, writer.seal()


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: imports, allocator, caches
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(name: str, writer: TransitWriter, block: Block, repeat: int) -> None:
    info = writer.stream_info()
    payload = block.payload
    raw = len(lz4.frame.decompress(payload.objects)) + len(lz4.frame.decompress(payload.dependencies))

    def decompress() -> None:
        lz4.frame.decompress(payload.dependencies)
        lz4.frame.decompress(payload.objects)

    def read() -> None:
        decode_block(info.dependencies_metadata, info.objects_metadata, payload)

    t_lz4 = median_seconds(decompress, repeat)
    t_read = median_seconds(read, repeat)
    n = block.nb_objects
    print(
        f"{name:4} {n:7d} events, {raw / 2**20:5.2f} MiB decompressed | "
        f"lz4.frame.decompress {t_lz4 * 1e3:7.2f} ms ({raw / t_lz4 / 1e9:5.2f} GB/s) | "
        f"decode_block {t_read * 1e3:7.2f} ms ({n / t_read / 1e6:6.2f} M events/s) | "
        f"ratio reader/decompress {t_read / t_lz4:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    run("cpu", *cpu_block(), args.repeat)
    run("log", *log_block(), args.repeat)


if __name__ == "__main__":
    main()
