"""The ingestion service over real sockets, real PostgreSQL and real object stores (local and S3)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import cbor2
import pytest
from native_samples import START_NS, sample_cpu_stream, sample_process

from sirius.collector import block_object_key
from sirius.lakehouse import LAKEHOUSE_SCHEMA_VERSION, open_object_store
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


def _process() -> ProcessInfo:
    return sample_process(start_ticks=1_000, properties={"team": "core", "micromegas.audience": "spoofed"})


def _stream(process: ProcessInfo) -> StreamInfo:
    return sample_cpu_stream(process, properties={"thread-id": "7", "thread-name": "main"})


def _block(process: ProcessInfo, stream: StreamInfo, n_events: int = 3) -> Block:
    # End events of a static span (type index 1, 16-byte POD): structurally valid for the scan.
    objects = b"".join(
        bytes([1]) + (i).to_bytes(8, "little") + (5000 + i).to_bytes(8, "little") for i in range(n_events)
    )
    return Block(
        block_id=uuid.uuid4(),
        stream_id=stream.stream_id,
        process_id=process.process_id,
        begin_time_ns=START_NS + 10,
        begin_ticks=100,
        end_time_ns=START_NS + 2_000,
        end_ticks=4_100,
        payload=BlockPayload(compress_queue(b""), compress_queue(objects)),
        object_offset=0,
        nb_objects=n_events,
    )


def _large_block(process: ProcessInfo, stream: StreamInfo) -> Block:
    """A valid block whose payload is large enough (random bodies: LZ4 cannot shrink them) to be checked off the loop."""
    n_events = 20_000  # ~340 KB, above collector._block_validation.OFF_LOOP_BYTES
    objects = b"".join(bytes([1]) + os.urandom(16) for _ in range(n_events))
    return replace(
        _block(process, stream), payload=BlockPayload(compress_queue(b""), compress_queue(objects)), nb_objects=n_events
    )


def _request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _post(url: str, route: str, body: bytes, key: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/cbor"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return _request(url, "POST", f"/ingestion/{route}", body, headers)


async def _counts(stack) -> dict[str, int]:
    pool = stack.stack._res.pool
    out = {}
    for table in ("processes", "streams", "blocks"):
        out[table] = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return out


async def _keys(uri: str) -> list[str]:
    store = open_object_store(uri)
    try:
        return await store.list_keys("blobs/")
    finally:
        await store.close()


@pytest.fixture(params=["local", "s3", "gcs"])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        path = tmp_path / "objects"
        path.mkdir()
        return path.as_uri()
    return request.getfixturevalue(f"{request.param}_env")


def test_process_stream_and_block_land_as_rows_and_objects(stack_factory, store_uri: str) -> None:
    stack = stack_factory(object_store_uri=store_uri)
    process = _process()
    stream = _stream(process)
    block = _block(process, stream)
    assert _post(stack.url, "insert_process", process_info_to_cbor(process))[0] == 200
    assert _post(stack.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    assert _post(stack.url, "insert_block", block_to_cbor(block))[0] == 200

    async def rows():
        pool = stack.stack._res.pool
        p = await pool.fetchrow("SELECT * FROM processes")
        s = await pool.fetchrow("SELECT * FROM streams")
        b = await pool.fetchrow("SELECT * FROM blocks")
        return p, s, b

    p, s, b = stack.call(rows())
    assert p["process_id"] == process.process_id
    assert (p["exe"], p["username"], p["computer"], p["tsc_frequency"], p["start_ticks"]) == (
        "/usr/bin/app",
        "alice",
        "host-1",
        2_000_000_000,
        1_000,
    )
    assert [tuple(x) for x in p["properties"]] == [("team", "core")]  # micromegas.* keys are the server's
    assert s["stream_id"] == stream.stream_id
    assert list(s["tags"]) == ["cpu"]
    assert s["format"] == "micromegas-transit"
    assert cbor2.loads(s["objects_metadata"])[0]["name"] == "BeginThreadSpanEvent"
    assert (b["block_id"], b["stream_id"], b["process_id"]) == (block.block_id, stream.stream_id, process.process_id)
    assert (b["begin_ticks"], b["end_ticks"], b["nb_objects"], b["object_offset"]) == (100, 4_100, 3, 0)
    expected_object = payload_to_cbor(block.payload)
    assert b["payload_size"] == len(expected_object)

    async def read_object() -> bytes:
        store = open_object_store(store_uri)
        try:
            return await store.get(block_object_key(process.process_id, stream.stream_id, block.block_id))
        finally:
            await store.close()

    assert stack.call(read_object()) == expected_object


def test_repeated_block_is_stored_once(stack_factory, store_uri: str) -> None:
    stack = stack_factory(object_store_uri=store_uri)
    process = _process()
    stream = _stream(process)
    block = _block(process, stream)
    for _ in range(2):
        assert _post(stack.url, "insert_process", process_info_to_cbor(process))[0] == 200
        assert _post(stack.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    body = block_to_cbor(block)
    assert [_post(stack.url, "insert_block", body)[0] for _ in range(3)] == [200, 200, 200]
    assert stack.call(_counts(stack)) == {"processes": 1, "streams": 1, "blocks": 1}
    assert stack.call(_keys(store_uri)) == [block_object_key(process.process_id, stream.stream_id, block.block_id)]


def test_large_block_is_checked_and_stored(stack_factory, tmp_path) -> None:
    objects = tmp_path / "objects"
    stack = stack_factory(object_store_uri=objects.as_uri())
    process = _process()
    stream = _stream(process)
    block = _large_block(process, stream)
    assert _post(stack.url, "insert_process", process_info_to_cbor(process))[0] == 200
    assert _post(stack.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    assert _post(stack.url, "insert_block", block_to_cbor(block)) == (200, "")
    assert stack.call(_counts(stack)) == {"processes": 1, "streams": 1, "blocks": 1}
    key = block_object_key(process.process_id, stream.stream_id, block.block_id)
    assert (objects / key).read_bytes() == payload_to_cbor(block.payload)


def _legacy_block_body(block: Block) -> bytes:
    value = cbor2.loads(block_to_cbor(block))
    value["payload"] = {k: list(v) for k, v in value["payload"].items()}  # Vec<u8> as integer arrays
    return cbor2.dumps(value)


def test_legacy_integer_array_payload_is_accepted(stack_factory, tmp_path) -> None:
    stack = stack_factory()
    process = _process()
    stream = _stream(process)
    block = _block(process, stream)
    _post(stack.url, "insert_process", process_info_to_cbor(process))
    _post(stack.url, "insert_stream", stream_info_to_cbor(stream))
    assert _post(stack.url, "insert_block", _legacy_block_body(block))[0] == 200
    assert stack.call(_counts(stack))["blocks"] == 1


def _mutate(body: bytes, **changes: object) -> bytes:
    value = cbor2.loads(body)
    for key, new in changes.items():
        if new is _DELETE:
            del value[key]
        else:
            value[key] = new
    return cbor2.dumps(value)


_DELETE = object()


def _bad_blocks(process: ProcessInfo, stream: StreamInfo) -> dict[str, bytes]:
    good = _block(process, stream)
    large = _large_block(process, stream)
    body = block_to_cbor(good)
    truncated_lz4 = replace(good, payload=BlockPayload(good.payload.dependencies, good.payload.objects[:-5]))
    unknown_type = replace(
        good, payload=BlockPayload(good.payload.dependencies, compress_queue(bytes([99]) + bytes(16)))
    )
    return {
        "malformed cbor": b"\xbf\x61",
        "not a map": cbor2.dumps([1, 2, 3]),
        "empty body": b"",
        "missing field": _mutate(body, nb_objects=_DELETE),
        "wrong type": _mutate(body, begin_ticks="100"),
        "bool as int": _mutate(body, nb_objects=True),
        "bad uuid": _mutate(body, block_id="not-a-uuid"),
        "bad time": _mutate(body, end_time="yesterday"),
        "unknown stream": block_to_cbor(replace(good, stream_id=uuid.uuid4())),
        "other process": block_to_cbor(replace(good, process_id=uuid.uuid4())),
        "truncated lz4": block_to_cbor(truncated_lz4),
        "unknown type index": block_to_cbor(unknown_type),
        "wrong nb_objects": block_to_cbor(replace(good, nb_objects=4)),
        "large, wrong nb_objects": block_to_cbor(replace(large, nb_objects=large.nb_objects + 1)),
        "large, truncated lz4": block_to_cbor(
            replace(large, payload=BlockPayload(large.payload.dependencies, large.payload.objects[:-5]))
        ),
        "large, random records": block_to_cbor(
            replace(large, payload=BlockPayload(large.payload.dependencies, compress_queue(os.urandom(340_000))))
        ),
        "end before begin": block_to_cbor(replace(good, end_time_ns=good.begin_time_ns - 1)),
    }


def test_bad_input_gets_400_and_stores_nothing(stack_factory, tmp_path) -> None:
    objects = tmp_path / "objects"
    stack = stack_factory(object_store_uri=objects.as_uri())
    process = _process()
    stream = _stream(process)
    assert _post(stack.url, "insert_process", process_info_to_cbor(process))[0] == 200
    assert _post(stack.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    for name, body in _bad_blocks(process, stream).items():
        status, text = _post(stack.url, "insert_block", body)
        assert status == 400, (name, status, text)
        assert text.startswith("Bad request"), name
    stream_without_process = _stream(_process())
    assert _post(stack.url, "insert_stream", stream_info_to_cbor(stream_without_process))[0] == 400
    assert _post(stack.url, "insert_process", _mutate(process_info_to_cbor(_process()), tsc_frequency=1.5))[0] == 400
    assert _post(stack.url, "insert_stream", b"\x00")[0] == 400
    assert stack.call(_counts(stack)) == {"processes": 1, "streams": 1, "blocks": 0}
    assert stack.call(_keys(objects.as_uri())) == []
    assert _request(stack.url, "GET", "/ready")[0] == 200


def test_wrong_method_and_unknown_route(stack_factory) -> None:
    stack = stack_factory()
    assert _request(stack.url, "GET", "/ingestion/insert_block")[0] == 405
    assert _request(stack.url, "POST", "/ingestion/nope", b"x")[0] == 404
    assert _request(stack.url, "GET", "/health") == (200, "OK")


def test_oversize_body_gets_413(stack_factory) -> None:
    stack = stack_factory()
    body = b"\x00" * (100 * 1024 * 1024 + 1)
    status, _ = _post(stack.url, "insert_block", body)
    assert status == 413
    assert stack.call(_counts(stack))["blocks"] == 0
    assert _request(stack.url, "GET", "/ready")[0] == 200


def test_api_keys_are_enforced(stack_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROMEGAS_API_KEYS", json.dumps([{"name": "svc", "key": "s3cret"}]))
    stack = stack_factory()
    body = process_info_to_cbor(_process())
    assert _post(stack.url, "insert_process", body)[0] == 401
    assert _post(stack.url, "insert_process", body, key="wrong")[0] == 401
    assert _request(stack.url, "POST", "/ingestion/insert_process", body, {"Authorization": "Basic s3cret"})[0] == 401
    assert stack.call(_counts(stack))["processes"] == 0
    assert _post(stack.url, "insert_process", body, key="s3cret")[0] == 200
    assert _request(stack.url, "GET", "/health")[0] == 200  # probes need no key
    assert _request(stack.url, "GET", "/ready")[0] == 200


def test_public_bind_without_keys_is_refused(stack_factory) -> None:
    from sirius.collector import AuthConfigurationError

    with pytest.raises(AuthConfigurationError):
        stack_factory(host="0.0.0.0")
    stack = stack_factory(host="0.0.0.0", disable_auth=True)
    assert _request(stack.url, "GET", "/health")[0] == 200


def test_two_stacks_starting_at_once_share_one_schema(stack_factory) -> None:
    results: list[object] = []

    def start() -> None:
        try:
            results.append(stack_factory())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(not isinstance(r, Exception) for r in results), results
    first = results[0]

    async def versions():
        pool = first.stack._res.pool
        return await pool.fetch("SELECT version FROM migration"), await pool.fetch(
            "SELECT version FROM lakehouse_migration"
        )

    dl, lh = first.call(versions())
    assert [r["version"] for r in dl] == [7]
    assert [r["version"] for r in lh] == [LAKEHOUSE_SCHEMA_VERSION]


def test_stop_finishes_a_request_already_in_flight(stack_factory) -> None:
    stack = stack_factory()
    process = _process()
    body = process_info_to_cbor(process)
    parts = urlsplit(stack.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST /ingestion/insert_process HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:10])  # the handler is now waiting for the rest of the body
    assert _request(stack.url, "GET", "/health")[0] == 200  # the loop has processed our headers
    stopper = threading.Thread(target=lambda: stack.call(stack.stack._res.servers[0].stop()))
    stopper.start()
    # New connections are refused once the listener is closed; ours stays served.
    for _ in range(10_000):
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        except OSError:
            break
    sock.sendall(body[10:])
    response = sock.recv(4096).decode()
    sock.close()
    stopper.join(60)
    assert response.startswith("HTTP/1.1 200"), response

    async def count() -> int:
        return await stack.stack._res.pool.fetchval("SELECT count(*) FROM processes")

    assert stack.call(count()) == 1


def test_ready_reports_a_broken_store_and_writes_answer_503(stack_factory, tmp_path) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    stack = stack_factory(object_store_uri=objects.as_uri())
    process = _process()
    stream = _stream(process)
    assert _post(stack.url, "insert_process", process_info_to_cbor(process))[0] == 200
    assert _post(stack.url, "insert_stream", stream_info_to_cbor(stream))[0] == 200
    # No /ready before the break: its answer is cached for a second.
    shutil.rmtree(objects)
    objects.write_text("not a directory")  # the store's root is now unusable
    status, text = _request(stack.url, "GET", "/ready")
    assert status == 503
    assert "not a directory" in text
    status, _ = _post(stack.url, "insert_block", block_to_cbor(_block(process, stream)))
    assert status == 503  # the sender retries later; nothing was acknowledged
    assert stack.call(_counts(stack))["blocks"] == 0
    assert _request(stack.url, "GET", "/health")[0] == 200
