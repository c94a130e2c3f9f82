"""Benchmark: the native tracer's hot paths side by side, against the OpenTelemetry SDK and logging.

One run measures, on this machine:

* C: ns per event through the C API (``bench/tracer_c.c`` built with ``cc`` against the static
  library, best of 7 rounds of 1 M events), and valgrind callgrind instructions per event of
  the same loop (stable on noisy machines; skipped when valgrind is missing);
* Python: ns per span (begin + end) through the GIL-keeping C-API fast path (``begin(d);
  end(d)``, ``with S:``, ``with tracing.span("x"):``, a ``@span``-decorated call minus a plain
  call), through plain cffi
  wrappers of the same C functions, ``tracing.info``, ``tracing.metric``;
* baselines: an OTel SDK span (``start_as_current_span`` with a SimpleSpanProcessor and an
  exporter that drops everything), ``logging.info`` to a NullHandler;
* auto spans: added cost per call of an empty function in a traced module.

Each Python span/log/metric figure is the best of 7 interleaved rounds (every loop once per
round) minus the empty loop's best; the decorated and auto-span figures are best of 5. Ratios are against
the OTel SDK span measured in the same run. Run: ``/work/venv/bin/python bench/tracer.py``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "tracing" / "native"


def build_c_bench(out: Path) -> Path:
    flags = ["-O2", "-std=gnu11", "-pthread", "-fPIC", f"-I{NATIVE / 'include'}"]
    objects = []
    for source in sorted((NATIVE / "core").glob("*.c")):
        obj = out / (source.stem + ".o")
        subprocess.run(["cc", *flags, "-c", str(source), "-o", str(obj)], check=True)
        objects.append(str(obj))
    subprocess.run(["ar", "rcs", str(out / "libsirius_tracing.a"), *objects], check=True)
    exe = out / "tracer_c"
    subprocess.run(
        ["cc", *flags, str(ROOT / "bench" / "tracer_c.c"), f"-L{out}", "-lsirius_tracing", "-o", str(exe)],
        check=True,
    )
    return exe


def c_figures(exe: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for clock in ("tsc", "monotonic"):
        text = subprocess.run([str(exe), "1000000", "7", clock], check=True, capture_output=True, text=True).stdout
        out[f"c_ns_{clock}"] = float(text.split()[1])
    if shutil.which("valgrind"):
        with tempfile.TemporaryDirectory() as tmp:
            events = 200_000
            result = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={tmp}/cg.out",
                    "--collect-atstart=no",
                    "--toggle-collect=run_loop",
                    str(exe),
                    str(events),
                    "1",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            for line in result.stderr.splitlines():
                if "Collected :" in line:
                    out["c_instructions"] = int(line.split(":")[-1].strip()) / events
    return out


ROUNDS = 7


def best_ns(fn: Callable[[int], None], n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn(n)
        best = min(best, time.perf_counter_ns() - t0)
    return best / n


def python_figures(n: int) -> dict[str, float]:
    from sirius import tracing
    from sirius.tracing import InMemoryBlockSink
    from sirius.tracing._binding import cffi_span_calls

    tracing.init(sink=InMemoryBlockSink(), chunk_size=8 << 20, chunks_per_thread=4, block_size=16 << 20)
    figures: dict[str, float] = {}
    desc = tracing.span_desc("bench")
    begin, end = tracing.begin_span, tracing.end_span
    from sirius.tracing._binding import fast_module

    fast = fast_module()
    fbegin, fend = fast.begin, fast.end
    cbegin, cend, pointer = cffi_span_calls(desc.address)
    info, metric = tracing.info, tracing.metric

    def empty(k: int) -> None:
        for _ in range(k):
            pass

    def fast_pair(k: int) -> None:
        for _ in range(k):
            fbegin(desc)
            fend(desc)

    def api_pair(k: int) -> None:
        for _ in range(k):
            begin(desc)
            end(desc)

    def with_span(k: int) -> None:
        for _ in range(k):
            with desc:
                pass

    def with_name(k: int) -> None:
        for _ in range(k):
            with tracing.span("bench"):  # the idiomatic form, as written in application code
                pass

    def cffi_pair(k: int) -> None:
        for _ in range(k):
            cbegin(pointer)
            cend(pointer)

    def plain() -> None:
        pass

    traced = tracing.span(plain)

    def plain_calls(k: int) -> None:
        for _ in range(k):
            plain()

    def traced_calls(k: int) -> None:
        for _ in range(k):
            traced()

    def logs(k: int) -> None:
        for _ in range(k):
            info("hello")

    def metrics(k: int) -> None:
        for _ in range(k):
            metric("bench.value", 1.5)

    loops = (
        ("floor", empty),
        ("py_fast_pair", fast_pair),
        ("py_api_pair", api_pair),
        ("py_with", with_span),
        ("py_with_name", with_name),
        ("py_cffi_pair", cffi_pair),
        ("py_info", logs),
        ("py_metric", metrics),
    )
    # Rounds interleave the loops, so a burst of load from other work on the machine lands on
    # one round of every figure rather than on every round of one figure.
    best = dict.fromkeys((name for name, _ in loops), float("inf"))
    for _ in range(ROUNDS):
        for name, fn in loops:
            tracing.flush(30)  # fresh buffers for each loop: never measure the dropping path
            best[name] = min(best[name], best_ns(fn, n, repeat=1))
    for name, _ in loops[1:]:
        figures[name] = best[name] - best["floor"]
    tracing.flush(30)
    figures["py_decorated_extra"] = best_ns(traced_calls, n) - best_ns(plain_calls, n)
    figures["auto_span_extra"] = auto_span_cost(n)
    stats = tracing.stats()
    tracing.shutdown(30)
    figures["events_dropped"] = stats.events_dropped
    return figures


def auto_span_cost(n: int) -> float:
    from sirius import tracing

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench_auto_target.py").write_text(
            textwrap.dedent(
                """
                def leaf():
                    pass

                def loop(k):
                    for _ in range(k):
                        leaf()
                """
            )
        )
        sys.path.insert(0, tmp)
        try:
            module = importlib.import_module("bench_auto_target")
            base = best_ns(module.loop, n)
            tracing.auto_spans(include=["bench_auto_target"])
            try:
                tracing.flush(30)
                traced = best_ns(module.loop, n)
            finally:
                tracing.stop_auto_spans()
        finally:
            sys.path.remove(tmp)
    return traced - base


def otel_span_ns(n: int) -> float:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    tracer = provider.get_tracer("bench")

    def spans(k: int) -> None:
        for _ in range(k):
            with tracer.start_as_current_span("bench"):
                pass

    result = best_ns(spans, n)
    provider.shutdown()
    return result


def logging_ns(n: int) -> float:
    logger = logging.getLogger("sirius.bench.null")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def logs(k: int) -> None:
        for i in range(k):
            logger.info("hello %s", i)

    return best_ns(logs, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timed Python loop")
    args = parser.parse_args()
    where = f"python {platform.python_version()} on {platform.machine()}"
    print(f"{where}, {args.calls} calls per loop, best of {ROUNDS} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        c = c_figures(build_c_bench(Path(tmp))) if shutil.which("cc") else {}
    py = python_figures(args.calls)
    otel = otel_span_ns(max(args.calls // 10, 1000))
    log_ns = logging_ns(max(args.calls // 10, 1000))
    rows = [
        ("C event (rdtsc), ns/event", c.get("c_ns_tsc")),
        ("C event (CLOCK_MONOTONIC fallback), ns/event", c.get("c_ns_monotonic")),
        ("C event, callgrind instructions/event", c.get("c_instructions")),
        ("Python span begin+end, C-API fast path (fast.begin/end)", py["py_fast_pair"]),
        ("Python span begin+end, tracing.begin_span/end_span", py["py_api_pair"]),
        ("Python span, `with S:` (cached descriptor)", py["py_with"]),
        ('Python span, `with tracing.span("x"):` (idiomatic)', py["py_with_name"]),
        ("Python span, @span-decorated call minus plain call", py["py_decorated_extra"]),
        ("Python span begin+end, plain cffi wrappers", py["py_cffi_pair"]),
        ("tracing.info('hello')", py["py_info"]),
        ("tracing.metric(name, 1.5)", py["py_metric"]),
        ("auto span, added per traced call", py["auto_span_extra"]),
        ("baseline: OTel SDK span (SimpleSpanProcessor, dropping exporter)", otel),
        ("baseline: logging.info to a NullHandler", log_ns),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'ns':>9}  {'OTel span / this':>16}")
    for label, value in rows:
        if value is None:
            print(f"{label.ljust(width)}  {'n/a':>9}")
            continue
        ratio = "" if "instructions" in label else f"{otel / value:16.1f}" if value > 0 else ""
        unit = f"{value:9.1f}"
        print(f"{label.ljust(width)}  {unit}  {ratio}")
    print(f"events dropped during the Python loops: {int(py['events_dropped'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
