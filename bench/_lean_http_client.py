"""A lean keep-alive HTTP/1.1 POST client for the ingestion benchmarks: the load generator, not the subject.

``bench/ingest.py`` runs the clients and the service on the same two cores, so every microsecond
the client spends per request is taken from the service. ``http.client`` spends ~175 µs of CPU per
16 KiB request (header building, ``email``-based response parsing, two sends); this client sends
the head and the body in one ``sendmsg`` and reads the response head by hand: ~60 µs, measured on
the team's 2-core VM. It speaks just enough HTTP for these benchmarks (``Content-Length`` bodies,
no chunked responses, no redirects); ``--client stdlib`` in ``bench/ingest.py`` still runs the
``http.client`` version, as ``_ingest_replicas.py`` does (``post_spread``: one load over several services).
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["post_all", "post_spread"]

_HEAD_END = b"\r\n\r\n"


def _read_response(sock: socket.socket, pending: bytearray) -> int:
    """Read one response (head and ``Content-Length`` body) from ``sock``; return its status."""
    while (end := pending.find(_HEAD_END)) < 0:
        pending += _recv(sock)
    head = pending[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    del pending[: end + len(_HEAD_END)]
    while len(pending) < length:
        pending += _recv(sock)
    del pending[:length]
    return status


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        msg = "the server closed the connection mid-response"
        raise ConnectionError(msg)
    return chunk


def _lean_client(host: str, port: int, path: str, bodies: list[bytes], errors: list[int]) -> None:
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = bytearray()
        prefix = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/cbor\r\n"
        for body in bodies:
            sock.sendmsg([f"{prefix}Content-Length: {len(body)}\r\n\r\n".encode(), body])
            status = _read_response(sock, pending)
            if status != 200:
                errors.append(status)


def _stdlib_client(host: str, port: int, path: str, bodies: list[bytes], errors: list[int]) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    for body in bodies:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/cbor"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            errors.append(response.status)
    conn.close()


def post_all(url: str, path: str, bodies: list[bytes], clients: int, kind: str = "lean") -> tuple[float, float]:
    """POST ``bodies`` from ``clients`` keep-alive threads (client ``i`` sends ``bodies[i::clients]``).

    Args:
        kind: ``lean`` (this module's client) or ``stdlib`` (``http.client``).

    Returns:
        (seconds taken, CPU seconds this process spent meanwhile).

    Raises:
        SystemExit: some response was not a 200.
    """
    return post_spread([url], path, bodies, clients, kind)


def post_spread(
    urls: list[str], path: str, bodies: list[bytes], clients: int, kind: str = "lean"
) -> tuple[float, float]:
    """``post_all`` over several services: client ``i`` talks to ``urls[i % len(urls)]`` (sticky connections)."""
    targets = [urlsplit(url) for url in urls]
    client: Callable[[str, int, str, list[bytes], list[int]], None] = _lean_client if kind == "lean" else _stdlib_client
    errors: list[int] = []

    def run(i: int) -> None:
        target = targets[i % len(targets)]
        try:
            client(target.hostname or "127.0.0.1", target.port or 80, path, bodies[i::clients], errors)
        except OSError:  # counted, so a broken run is never reported as a fast one
            errors.append(-1)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    cpu_start = os.times()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    cpu_end = os.times()
    if errors:
        raise SystemExit(f"HTTP errors: {errors[:5]}")
    return elapsed, (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
