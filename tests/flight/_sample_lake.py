"""A small, deterministic lake shaped like the Micromegas views, for the query-service tests.

Two processes; each has a log stream, a metrics stream and two thread (``cpu``) streams, one
hour of data ending at ``END_NS``: log entries of every level, a latency metric, nested thread
spans on both threads and async spans.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sirius.flight import VIEW_SCHEMAS, InMemoryLake
from sirius.lakehouse._sql_jsonb import properties_to_jsonb_array

NS = 1_000_000_000
END_NS = 1_714_564_800 * NS  # 2024-05-01T12:00:00Z
BEGIN_NS = END_NS - 3600 * NS
LEVELS = (1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class SampleProcess:
    process_id: str
    exe: str
    log_stream: str
    metrics_stream: str
    thread_streams: tuple[str, str]


def _id(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


def _dict(values: list[str] | np.ndarray) -> pa.DictionaryArray:
    return pa.array(values, pa.utf8()).dictionary_encode().cast(pa.dictionary(pa.int32(), pa.utf8()))


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int64), pa.int64()).cast(pa.timestamp("ns", tz="+00:00"))


def _repeat_dict(value: str, n: int) -> pa.DictionaryArray:
    return _dict([value] * n)


def make_processes() -> list[SampleProcess]:
    out = []
    for i, exe in enumerate(("/usr/bin/api-server", "/usr/bin/worker")):
        pid = _id(f"process-{i}")
        out.append(
            SampleProcess(pid, exe, _id(f"log-{i}"), _id(f"metrics-{i}"), (_id(f"thread-{i}-0"), _id(f"thread-{i}-1")))
        )
    return out


def _log_entries(proc: SampleProcess, props: dict[str, str], n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(BEGIN_NS, END_NS, n))
    levels = np.array(LEVELS, dtype=np.int32)[np.arange(n) % len(LEVELS)]
    targets = np.array(["http", "db", "cache"])[np.arange(n) % 3]
    return pa.table(
        [
            _repeat_dict(proc.process_id, n),
            _repeat_dict(proc.log_stream, n),
            _repeat_dict(_id(f"block-log-{seed}"), n),
            _ts(times + NS),
            _repeat_dict(proc.exe, n),
            _repeat_dict("alice", n),
            _repeat_dict("host-1", n),
            _ts(times),
            _dict(targets),
            pa.array(levels, pa.int32()),
            pa.array([f"message {k} from {proc.exe}" for k in range(n)], pa.utf8()),
            properties_to_jsonb_array([{"request": str(k % 4)} for k in range(n)]),
            properties_to_jsonb_array([props] * n),
        ],
        schema=VIEW_SCHEMAS["log_entries"],
    )


def _measures(proc: SampleProcess, props: dict[str, str], n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    times = np.linspace(BEGIN_NS, END_NS - NS, n).astype(np.int64)
    values = rng.gamma(2.0, 10.0, n)
    return pa.table(
        [
            _repeat_dict(proc.process_id, n),
            _repeat_dict(proc.metrics_stream, n),
            _repeat_dict(_id(f"block-metrics-{seed}"), n),
            _ts(times + NS),
            _repeat_dict(proc.exe, n),
            _repeat_dict("alice", n),
            _repeat_dict("host-1", n),
            _ts(times),
            _repeat_dict("http", n),
            _repeat_dict("request_latency", n),
            _repeat_dict("ms", n),
            pa.array(values, pa.float64()),
            properties_to_jsonb_array([{}] * n),
            properties_to_jsonb_array([props] * n),
        ],
        schema=VIEW_SCHEMAS["measures"],
    )


def _thread_spans(seed: int, roots: int) -> pa.Table:
    """``roots`` top-level spans, each with two children; sorted by begin."""
    rng = np.random.default_rng(seed)
    rows = []
    span_id = 0
    starts = np.sort(rng.integers(BEGIN_NS, END_NS - 10 * NS, roots))
    for start in starts:
        root_id = span_id
        length = int(rng.integers(2 * NS // 1000, 5 * NS))
        rows.append((root_id, -1, 0, start, start + length, "handle_request", "http"))
        span_id += 1
        half = length // 2
        rows.append((span_id, root_id, 1, start, start + half, "query_db", "db"))
        span_id += 1
        rows.append((span_id, root_id, 1, start + half, start + length, "render", "http"))
        span_id += 1
    ids, parents, depths, begins, ends, names, targets = (np.array(col) for col in zip(*rows, strict=True))
    n = len(rows)
    return pa.table(
        [
            pa.array(ids, pa.int64()),
            pa.array(parents, pa.int64()),
            pa.array(depths, pa.uint32()),
            pa.array(np.arange(n) % 7, pa.uint32()),
            _ts(begins),
            _ts(ends),
            pa.array(ends - begins, pa.int64()),
            _dict(list(names)),
            _dict(list(targets)),
            _repeat_dict("src/server.py", n),
            pa.array(np.full(n, 42), pa.uint32()),
        ],
        schema=VIEW_SCHEMAS["thread_spans"],
    )


def _async_events(proc: SampleProcess, seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    begins = np.sort(rng.integers(BEGIN_NS, END_NS - 10 * NS, n))
    ends = begins + rng.integers(NS // 1000, 3 * NS, n)
    times = np.concatenate([begins, ends])
    kinds = ["begin"] * n + ["end"] * n
    span_ids = np.concatenate([np.arange(n), np.arange(n)]) + 1000
    order = np.argsort(times, kind="stable")
    m = 2 * n
    return pa.table(
        [
            _repeat_dict(proc.thread_streams[0], m),
            _repeat_dict(_id(f"block-async-{seed}"), m),
            _ts(times[order]),
            _dict([kinds[i] for i in order]),
            pa.array(span_ids[order], pa.int64()),
            pa.array(np.full(m, -1), pa.int64()),
            pa.array(np.zeros(m), pa.uint32()),
            pa.array(np.zeros(m), pa.uint32()),
            _repeat_dict("fetch_remote", m),
            _repeat_dict("src/client.py", m),
            _repeat_dict("async", m),
            pa.array(np.full(m, 7), pa.uint32()),
        ],
        schema=VIEW_SCHEMAS["async_events"],
    )


def _processes(procs: list[SampleProcess], props: list[dict[str, str]]) -> pa.Table:
    n = len(procs)
    start = np.full(n, BEGIN_NS - 60 * NS)
    return pa.table(
        [
            pa.array([p.process_id for p in procs]),
            pa.array([p.exe for p in procs]),
            pa.array(["alice"] * n),
            pa.array(["Alice"] * n),
            pa.array(["host-1"] * n),
            pa.array(["Debian 12"] * n),
            pa.array(["EPYC"] * n),
            pa.array([2_000_000_000] * n, pa.int64()),
            _ts(start),
            pa.array([1000] * n, pa.int64()),
            _ts(start + NS),
            pa.array([""] * n),
            properties_to_jsonb_array(props),
            _ts(np.full(n, END_NS)),
            pa.array([10**9] * n, pa.int64()),
            _ts(np.full(n, END_NS)),
        ],
        schema=VIEW_SCHEMAS["processes"],
    )


def _streams(procs: list[SampleProcess]) -> pa.Table:
    rows = []
    for p in procs:
        rows.append((p.log_stream, p.process_id, ["log"], {}))
        rows.append((p.metrics_stream, p.process_id, ["metrics"], {}))
        for k, sid in enumerate(p.thread_streams):
            rows.append((sid, p.process_id, ["cpu"], {"thread-id": str(100 + k), "thread-name": f"worker-{k}"}))
    n = len(rows)
    return pa.table(
        [
            pa.array([r[0] for r in rows]),
            pa.array([r[1] for r in rows]),
            pa.array([b""] * n, pa.binary()),
            pa.array([b""] * n, pa.binary()),
            pa.array([r[2] for r in rows], pa.list_(pa.utf8())),
            properties_to_jsonb_array([r[3] for r in rows]),
            _ts(np.full(n, BEGIN_NS - 30 * NS)),
            pa.array(["micromegas-transit"] * n),
            _ts(np.full(n, END_NS)),
        ],
        schema=VIEW_SCHEMAS["streams"],
    )


def _blocks(procs: list[SampleProcess], per_stream: int = 3) -> pa.Table:
    rows = []
    for p in procs:
        for sid, tags in [(p.log_stream, ["log"]), (p.metrics_stream, ["metrics"])] + [
            (s, ["cpu"]) for s in p.thread_streams
        ]:
            for b in range(per_stream):
                begin = BEGIN_NS + b * 1200 * NS
                rows.append((_id(f"{sid}-{b}"), sid, p.process_id, begin, begin + 1200 * NS, tags, p.exe))
    n = len(rows)
    col = list(zip(*rows, strict=True))
    begins, ends = np.array(col[3]), np.array(col[4])
    return pa.table(
        [
            pa.array(col[0]),
            pa.array(col[1]),
            pa.array(col[2]),
            _ts(begins),
            pa.array(np.zeros(n), pa.int64()),
            _ts(ends),
            pa.array(np.full(n, 10**6), pa.int64()),
            pa.array(np.full(n, 100), pa.int32()),
            pa.array(np.arange(n) * 100, pa.int64()),
            pa.array(np.full(n, 4096), pa.int64()),
            _ts(ends + NS),
            pa.array([b""] * n, pa.binary()),
            pa.array([b""] * n, pa.binary()),
            pa.array(list(col[5]), pa.list_(pa.field("tag", pa.utf8()))),
            properties_to_jsonb_array([{}] * n),
            _ts(np.full(n, BEGIN_NS - 30 * NS)),
            pa.array(["micromegas-transit"] * n),
            _ts(np.full(n, BEGIN_NS - 60 * NS)),
            pa.array(np.zeros(n), pa.int64()),
            pa.array(np.full(n, 2_000_000_000), pa.int64()),
            pa.array(list(col[6])),
            pa.array(["alice"] * n),
            pa.array(["Alice"] * n),
            pa.array(["host-1"] * n),
            pa.array(["Debian 12"] * n),
            pa.array(["EPYC"] * n),
            _ts(np.full(n, BEGIN_NS - 59 * NS)),
            pa.array([""] * n),
            properties_to_jsonb_array([{}] * n),
        ],
        schema=VIEW_SCHEMAS["blocks"],
    )


def build_sample_lake(
    logs_per_process: int = 600, spans_per_thread: int = 40
) -> tuple[InMemoryLake, list[SampleProcess]]:
    procs = make_processes()
    props = [{"service": "api", "version": "1.2"}, {"service": "worker", "version": "1.2"}]
    logs = [_log_entries(p, props[i], logs_per_process, seed=i) for i, p in enumerate(procs)]
    measures = [_measures(p, props[i], 120, seed=10 + i) for i, p in enumerate(procs)]
    lake = InMemoryLake(
        tables={
            "log_entries": pa.concat_tables(logs),
            "measures": pa.concat_tables(measures),
            "processes": _processes(procs, props),
            "streams": _streams(procs),
            "blocks": _blocks(procs),
        }
    )
    for i, p in enumerate(procs):
        lake.instances[("log_entries", p.process_id)] = logs[i]
        lake.instances[("measures", p.process_id)] = measures[i]
        for k, sid in enumerate(p.thread_streams):
            lake.instances[("thread_spans", sid)] = _thread_spans(seed=100 * i + k, roots=spans_per_thread)
        lake.instances[("async_events", p.process_id)] = _async_events(p, seed=50 + i, n=spans_per_thread)
    return lake, procs
