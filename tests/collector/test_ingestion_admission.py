"""Bounded native ingestion: 411/413 before the body is read, 429 + Retry-After past the in-flight
budget, and a flood of large blocks against a server process whose RSS stays bounded.

The flood runs ``sirius ingest`` as a separate process (real PostgreSQL, local object store) so
its memory is measured alone: ``/proc/<pid>/clear_refs`` resets the peak after a warm-up block,
and ``VmHWM`` after the flood is the peak the flood caused.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pytest
from native_samples import sample_cpu_stream, sample_process

from sirius.collector import block_object_key
from sirius.tracing import (
    Block,
    BlockPayload,
    ProcessInfo,
    StreamInfo,
    block_to_cbor,
    compress_queue,
    payload_to_cbor,
    process_info_to_cbor,
    stream_info_to_cbor,
)

MIB = 1024 * 1024
FLOOD_BUDGET = 96 * MIB
"""In-flight byte budget of the flood's server: 11 of its 16 blocks of 8 MiB fit at once."""


def _process() -> ProcessInfo:
    return sample_process(start_time_ns=1_750_000_000_000_000_000)


def _stream(process: ProcessInfo) -> StreamInfo:
    return sample_cpu_stream(process)


def _block(stream: StreamInfo, payload_bytes: int, index: int) -> Block:
    """A valid cpu block of about ``payload_bytes``: end-span events with random bodies (LZ4 cannot shrink them)."""
    n_events = payload_bytes // 17  # 1 type byte + a 16-byte EndThreadSpanEvent
    events = np.frombuffer(os.urandom(17 * n_events), np.uint8).reshape(n_events, 17).copy()
    events[:, 0] = 1
    return Block(
        block_id=uuid.uuid4(),
        stream_id=stream.stream_id,
        process_id=stream.process_id,
        begin_time_ns=1_750_000_000_000_000_000 + index,
        begin_ticks=index,
        end_time_ns=1_750_000_000_000_000_000 + index + 1,
        end_ticks=index + 1,
        payload=BlockPayload(compress_queue(b""), compress_queue(events.tobytes())),
        object_offset=index * n_events,
        nb_objects=n_events,
    )


def _post(url: str, route: str, body: bytes) -> tuple[int, str, str | None]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", f"/ingestion/{route}", body=body)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace"), response.getheader("Retry-After")
    finally:
        conn.close()


def _raw_request(url: str, route: str, head_lines: list[str], body: bytes) -> socket.socket:
    """Send a request's head and ``body`` (maybe only part of the declared one); return the open socket."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = "".join(f"{line}\r\n" for line in [f"POST /ingestion/{route} HTTP/1.1", "Host: x", *head_lines])
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def _read_status(sock: socket.socket) -> tuple[int, str]:
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    return int(head.split()[1]), head


async def _process_ids(dsn: str) -> set[uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        return {row["process_id"] for row in await conn.fetch("SELECT process_id FROM processes")}
    finally:
        await conn.close()


# -- refused before the body is read ----------------------------------------------------------------


def test_a_chunked_body_gets_411(stack_factory) -> None:
    stack = stack_factory()
    body = process_info_to_cbor(_process())
    sock = _raw_request(
        stack.url,
        "insert_process",
        ["Transfer-Encoding: chunked"],
        f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
    )
    status, _ = _read_status(sock)
    sock.close()
    assert status == 411
    assert _post(stack.url, "insert_process", body)[0] == 200  # the same body with its length is fine


def test_a_declared_oversize_body_gets_413_without_being_sent(stack_factory, monkeypatch) -> None:
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_BODY_BYTES", "4096")
    stack = stack_factory()
    for route in ("insert_process", "insert_stream", "insert_block"):
        # Only the head is sent: the answer cannot have waited for the body.
        sock = _raw_request(stack.url, route, ["Content-Length: 4097"], b"")
        status, _ = _read_status(sock)
        sock.close()
        assert status == 413, route
    assert _post(stack.url, "insert_process", process_info_to_cbor(_process()))[0] == 200


def test_declared_bytes_fill_the_budget_before_they_arrive(stack_factory, pg_dsn: str, monkeypatch) -> None:
    first, second = _process(), _process()
    first_body = process_info_to_cbor(first)
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_INFLIGHT_BYTES", str(len(first_body)))
    stack = stack_factory()
    # The first request declares its whole length but sends 10 bytes: it is admitted and waits.
    sock = _raw_request(stack.url, "insert_process", [f"Content-Length: {len(first_body)}"], first_body[:10])
    refusals = []
    for _ in range(1000):  # until the server has admitted the first request (a few round trips)
        status, text, retry_after = _post(stack.url, "insert_process", process_info_to_cbor(second))
        if status == 429:
            refusals.append((text, retry_after))
            break
        assert status == 200  # admitted before the first request's head was handled
    assert refusals, "the budget never filled"
    text, retry_after = refusals[0]
    assert retry_after == "1"
    assert text.startswith("Too many requests")
    sock.sendall(first_body[10:])
    status, _ = _read_status(sock)
    sock.close()
    assert status == 200
    # The first request's bytes are given back: the second is admitted now.
    assert _post(stack.url, "insert_process", process_info_to_cbor(second))[0] == 200
    assert asyncio.run(_process_ids(pg_dsn)) == {first.process_id, second.process_id}


def test_expect_100_continue_is_answered_before_the_body(stack_factory, pg_dsn: str, monkeypatch) -> None:
    first, second = _process(), _process()
    first_body, second_body = process_info_to_cbor(first), process_info_to_cbor(second)
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_INFLIGHT_BYTES", str(len(first_body)))
    monkeypatch.setenv("SIRIUS_INGESTION_MAX_BODY_BYTES", "4096")
    stack = stack_factory()
    expect = ["Expect: 100-continue"]
    # Room in the budget: "100 Continue", then the body, then the answer.
    sock = _raw_request(stack.url, "insert_process", [*expect, f"Content-Length: {len(second_body)}"], b"")
    assert _read_status(sock)[0] == 100
    sock.sendall(second_body)
    assert _read_status(sock)[0] == 200
    sock.close()
    # Over the body limit: 413 at once, no "100 Continue".
    sock = _raw_request(stack.url, "insert_process", [*expect, "Content-Length: 4097"], b"")
    assert _read_status(sock)[0] == 413
    sock.close()
    # Budget full (a request declared its bytes and sent 10): 429 at once, no "100 Continue".
    holder = _raw_request(stack.url, "insert_process", [f"Content-Length: {len(first_body)}"], first_body[:10])
    for _ in range(1000):  # until the server has admitted the holder (a few round trips)
        if _post(stack.url, "insert_process", second_body)[0] == 429:
            break
    sock = _raw_request(stack.url, "insert_process", [*expect, f"Content-Length: {len(second_body)}"], b"")
    status, head = _read_status(sock)
    sock.close()
    assert status == 429
    assert "Retry-After: 1" in head
    holder.sendall(first_body[10:])
    assert _read_status(holder)[0] == 200
    holder.close()
    assert asyncio.run(_process_ids(pg_dsn)) == {first.process_id, second.process_id}


# -- a flood against a separate server process --------------------------------------------------


@dataclass
class _Server:
    process: subprocess.Popen[str]
    url: str

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server, in bytes."""
        values = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) * 1024
        return values

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


@pytest.fixture
def ingest_server(pg_dsn: str, tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    """``sirius ingest`` in its own process, ``FLOOD_BUDGET`` in flight, objects under ``tmp_path/objects``."""
    objects = tmp_path / "objects"
    objects.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIRIUS_", "MICROMEGAS_"))}
    env["SIRIUS_INGESTION_MAX_INFLIGHT_BYTES"] = str(FLOOD_BUDGET)
    command = [sys.executable, "-m", "sirius.admin.cli", "ingest", "--host", "127.0.0.1", "--port", "0"]
    command += ["--sql-connection-string", pg_dsn, "--object-store-uri", objects.as_uri()]
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # "ingestion    http://127.0.0.1:PORT" once it listens
            if "http://" in line:
                break
        else:
            pytest.fail(f"sirius ingest did not start:\n{(tmp_path / 'server.log').read_text()}")
        yield _Server(process, line.split()[-1]), objects
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class _Client:
    body: bytes
    statuses: list[int] = field(default_factory=list)
    retry_afters: list[str | None] = field(default_factory=list)
    error: Exception | None = None

    def run(self, url: str) -> None:
        """POST the block until it is acknowledged; a 429 is retried at once (the harshest client)."""
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            for _ in range(10_000):
                conn.request("POST", "/ingestion/insert_block", body=self.body)
                response = conn.getresponse()
                response.read()
                self.statuses.append(response.status)
                if response.status != 429:
                    return
                self.retry_afters.append(response.getheader("Retry-After"))
        except (OSError, http.client.HTTPException) as exc:  # reported by the test, not lost in a thread
            self.error = exc
        finally:
            conn.close()


async def _stored_blocks(dsn: str) -> dict[uuid.UUID, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT block_id, payload_size FROM blocks")
    finally:
        await conn.close()
    return {row["block_id"]: row["payload_size"] for row in rows}


def test_a_flood_of_large_blocks_keeps_server_memory_bounded(ingest_server, pg_dsn: str) -> None:
    server, objects = ingest_server
    budget = FLOOD_BUDGET
    process = _process()
    stream = _stream(process)
    assert _post(server.url, "insert_process", process_info_to_cbor(process))[0] == 200
    assert _post(server.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    warm_up = _block(stream, 8 * MIB, 0)  # first-use allocations (imports, caches) happen here
    assert _post(server.url, "insert_block", block_to_cbor(warm_up))[0] == 200
    blocks = [_block(stream, 8 * MIB, i) for i in range(1, 17)]
    clients = [_Client(block_to_cbor(block)) for block in blocks]  # 16 blocks of 8 MiB: more than the budget

    server.reset_peak()
    before = server.memory()["VmRSS"]
    threads = [threading.Thread(target=client.run, args=(server.url,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    growth = server.memory()["VmHWM"] - before

    assert [client.error for client in clients if client.error] == []
    statuses = [status for client in clients for status in client.statuses]
    assert set(statuses) <= {200, 429}
    assert all(client.statuses[-1] == 200 for client in clients)
    assert statuses.count(429) > 0, "the flood never hit the budget"
    assert all(value == "1" for client in clients for value in client.retry_afters)
    # A request is admitted when its bytes fit beside those in flight: at most this many at once.
    sizes = [len(client.body) for client in clients]
    admitted_peak = (budget // min(sizes)) * max(sizes)
    assert growth <= 1.5 * admitted_peak, (
        f"RSS grew {growth / MIB:.1f} MiB for at most {admitted_peak / MIB:.1f} MiB admitted in flight"
    )
    # Every acknowledged block is in PostgreSQL and in the object store, byte for byte.
    stored = asyncio.run(_stored_blocks(pg_dsn))
    for block in [warm_up, *blocks]:
        expected = payload_to_cbor(block.payload)
        assert stored[block.block_id] == len(expected)
        key = block_object_key(block.process_id, block.stream_id, block.block_id)
        assert (objects / key).read_bytes() == expected
    assert len(stored) == 17
