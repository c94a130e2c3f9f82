"""Transit payload validation: large payloads are checked on the validation thread, with the same answers."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from dataclasses import replace

import pytest
from native_samples import sample_cpu_stream, sample_process

from sirius.collector import _block_validation
from sirius.collector._block_validation import OFF_LOOP_BYTES, validate_transit_block, validate_transit_payload
from sirius.lakehouse import StreamRecord
from sirius.tracing import TRANSIT_FORMAT, Block, BlockPayload, compress_queue, encode_udts


def _record() -> StreamRecord:
    stream = sample_cpu_stream(sample_process())
    return StreamRecord(
        stream_id=stream.stream_id,
        process_id=stream.process_id,
        tags=(),
        format=TRANSIT_FORMAT,
        dependencies_metadata=encode_udts(stream.dependencies_metadata),
        objects_metadata=encode_udts(stream.objects_metadata),
    )


def _block(record: StreamRecord, n_events: int) -> Block:
    # End events of a static span (type index 1, 16-byte POD) with random bodies: LZ4 cannot shrink them.
    objects = b"".join(bytes([1]) + os.urandom(16) for _ in range(n_events))
    return Block(
        block_id=uuid.uuid4(),
        stream_id=record.stream_id,
        process_id=record.process_id,
        begin_time_ns=1,
        begin_ticks=1,
        end_time_ns=2,
        end_ticks=2,
        payload=BlockPayload(compress_queue(b""), compress_queue(objects)),
        object_offset=0,
        nb_objects=n_events,
    )


@pytest.mark.parametrize("n_events", [3, 20_000])
def test_large_and_small_payloads_get_the_same_answers(n_events: int) -> None:
    record = _record()
    good = _block(record, n_events)
    assert (len(good.payload.objects) >= OFF_LOOP_BYTES) == (n_events > 3)
    bad = {
        "wrong count": replace(good, nb_objects=n_events + 1),
        "truncated": replace(good, payload=BlockPayload(good.payload.dependencies, good.payload.objects[:-5])),
    }
    assert asyncio.run(validate_transit_block(good, record)) is None
    for name, block in bad.items():
        reason = asyncio.run(validate_transit_block(block, record))
        assert reason is not None, name
        assert reason == validate_transit_payload(block, record), name


@pytest.mark.parametrize(("n_events", "where"), [(3, "the loop"), (20_000, "sirius-validate")])
def test_a_large_payload_is_checked_off_the_loop(monkeypatch: pytest.MonkeyPatch, n_events: int, where: str) -> None:
    record = _record()
    block = _block(record, n_events)
    threads: list[str] = []

    def recording(block: Block, stream: StreamRecord) -> str | None:  # a spy: the real check, its thread noted
        threads.append(threading.current_thread().name)
        return validate_transit_payload(block, stream)

    monkeypatch.setattr(_block_validation, "validate_transit_payload", recording)

    async def check() -> str | None:
        loop_thread = threading.current_thread().name
        answer = await validate_transit_block(block, record)
        threads[:] = ["the loop" if name == loop_thread else name.rsplit("_", 1)[0] for name in threads]
        return answer

    assert asyncio.run(check()) is None
    assert threads == [where]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_gets_a_validation_thread_of_its_own() -> None:
    record = _record()
    block = _block(record, 20_000)
    assert asyncio.run(validate_transit_block(block, record)) is None  # the parent's thread exists now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the executor has no thread; it must not wait forever
        try:
            answer = asyncio.run(asyncio.wait_for(validate_transit_block(block, record), 30))
            os.write(write_end, b"ok" if answer is None else b"bad")
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read() == b"ok"
    assert os.waitpid(pid, 0)[1] == 0
