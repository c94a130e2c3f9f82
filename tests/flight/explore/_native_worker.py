"""A native-only service for the Explore tests: the Sirius tracer, no OTel.

``python _native_worker.py <ingestion url>`` runs ``JOBS`` jobs, each a ``job`` span holding
``STEPS`` ``step`` spans (real work), logs one info line per job and ``ERRORS`` error lines,
records a ``worker.queue`` metric per job, then flushes everything and exits.
"""

from __future__ import annotations

import hashlib
import sys

from sirius import tracing

SERVICE = "batch-worker"
JOBS = 5
STEPS = 2
ERRORS = 2


def _step(i: int) -> None:
    digest = hashlib.sha256(str(i).encode())
    for _ in range(2000):
        digest = hashlib.sha256(digest.digest())


def main(ingestion: str) -> None:
    tracing.init(url=ingestion, properties={"service.name": SERVICE}, exe=SERVICE)
    for job in range(JOBS):
        with tracing.span("job"):
            for step in range(STEPS):
                with tracing.span("step"):
                    _step(job * STEPS + step)
            tracing.info(f"job {job} done")
            tracing.metric("worker.queue", float(JOBS - job), unit="count")
    for i in range(ERRORS):
        tracing.error(f"worker failure {i}")
    if not tracing.flush(30.0):
        sys.exit("the native tracer did not deliver everything")
    tracing.shutdown(10.0)


if __name__ == "__main__":
    main(sys.argv[1])
