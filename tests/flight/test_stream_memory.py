"""Concurrent large result streams hold a bounded amount of server memory, not their results.

``sirius flight`` runs as its own process (real PostgreSQL, local object store) so its memory is
measured alone. After a warm-up stream, ``/proc/<pid>/clear_refs`` resets the peak RSS; then
several clients stream a result far larger than the bound at once, and ``VmHWM`` afterwards is
the peak the streams caused. The server pulls a batch from DataFusion only when gRPC has sent
the previous one, so each stream holds a few batches whatever the result's size; a server that
buffered results (or ran ahead of a slow client) would grow by the bytes streamed.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import micromegas
import pytest
from cli_subprocess import SIRIUS, embedded_env

MIB = 1024 * 1024
CLIENTS = 4
ROWS = 8_000_000
PER_STREAM_BOUND = 128 * MIB
"""Server memory a stream may add: DataFusion's pipeline (a few 8 Ki-row batches), the pending
slices of one batch, and gRPC's buffers (measured: 57 MiB per stream with 10 streams, 129 MiB
with one over Parquet partitions, bench/flight_concurrent.py; 28 MiB for these 4 streams)."""
# ~59 bytes of Arrow per row (an int64, a float64 and a ~40-character string): ~450 MiB a stream.
SQL = f"SELECT value AS n, value * 0.5 AS x, concat('request served for user-', value, ' in time') AS msg FROM generate_series(1, {ROWS})"


@pytest.fixture
def flight_process(pg_dsn: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = embedded_env()
    env["MICROMEGAS_SQL_CONNECTION_STRING"] = pg_dsn
    env["MICROMEGAS_OBJECT_STORE_URI"] = (tmp_path / "objects").as_uri()
    argv = [*SIRIUS, "flight", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # each line arrives when printed
            words = line.split()
            if words[:1] == ["flightsql"]:
                yield proc, words[1]
                break
        else:
            pytest.fail("sirius flight ended before listening")
    finally:
        proc.terminate()
        proc.wait(30)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def _stream(uri: str) -> tuple[int, int]:
    """Stream the statement with the reference client, dropping each batch; rows and Arrow bytes."""
    rows = nbytes = 0
    for batch in micromegas.connect(uri).query_stream(SQL):
        rows += batch.num_rows
        nbytes += batch.nbytes
    return rows, nbytes


def test_concurrent_streams_hold_a_bounded_amount_of_server_memory(flight_process) -> None:
    proc, uri = flight_process
    assert _stream(uri)[0] == ROWS  # warm-up: sessions, allocator arenas, gRPC buffers
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib(proc.pid, "VmRSS") * 1024
    received: list[tuple[int, int]] = []
    lock = threading.Lock()

    def client() -> None:
        result = _stream(uri)
        with lock:
            received.append(result)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    peak = _status_kib(proc.pid, "VmHWM") * 1024
    assert [rows for rows, _ in received] == [ROWS] * CLIENTS
    streamed = sum(nbytes for _, nbytes in received)
    bound = CLIENTS * PER_STREAM_BOUND
    assert streamed > 2 * bound  # the results could not fit under the bound
    assert peak - before < bound, f"grew {(peak - before) / MIB:.0f} MiB streaming {streamed / MIB:.0f} MiB"
