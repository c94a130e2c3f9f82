"""An independent reader of Perfetto traces (protobuf wire format), to check what the server writes.

It shares no code with the server: it decodes ``Trace.packet`` (1) → ``TracePacket`` with
``timestamp`` (8), ``trusted_packet_sequence_id`` (10), ``track_event`` (11),
``track_descriptor`` (60); ``TrackDescriptor`` ``uuid`` (1), ``name`` (2), ``process`` (3),
``thread`` (4), ``parent_uuid`` (5); ``TrackEvent`` ``type`` (9), ``track_uuid`` (11),
``categories`` (22), ``name`` (23) — the field numbers of ``protos/perfetto/trace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            if len(value) != length:
                raise ValueError("truncated field")
            pos += length
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"bad wire type {wire}")
        out.append((number, value))
    return out


def _one(items: list[tuple[int, int | bytes]], number: int, default=None):
    for n, v in items:
        if n == number:
            return v
    return default


@dataclass
class Trace:
    process_name: str | None = None
    thread_tracks: dict[int, dict] = field(default_factory=dict)
    async_tracks: dict[int, str] = field(default_factory=dict)
    slices: int = 0
    max_open_depth: int = 0


def parse_trace(data: bytes) -> Trace:
    trace = Trace()
    open_slices: dict[int, int] = {}
    last_ts: dict[int, int] = {}
    known_tracks: set[int] = set()
    for number, packet in fields(data):
        assert number == 1, "a Trace holds only packets"
        items = fields(packet)
        assert _one(items, 10) == 1, "trusted_packet_sequence_id"
        descriptor = _one(items, 60)
        if descriptor is not None:
            d = fields(descriptor)
            uuid = _one(d, 1)
            known_tracks.add(uuid)
            process = _one(d, 3)
            thread = _one(d, 4)
            if process is not None:
                trace.process_name = _one(fields(process), 6).decode()
            elif thread is not None:
                t = fields(thread)
                trace.thread_tracks[uuid] = {"thread_name": _one(t, 5).decode(), "tid": _one(t, 2)}
            else:
                trace.async_tracks[uuid] = _one(d, 2).decode()
            continue
        event = _one(items, 11)
        assert event is not None, "a packet is a descriptor or a track event"
        e = fields(event)
        track = _one(e, 11)
        assert track in known_tracks, "events refer to described tracks"
        ts = _one(items, 8)
        assert ts >= last_ts.get(track, 0), "events of a track are in time order"
        last_ts[track] = ts
        kind = _one(e, 9)
        if kind == 1:
            assert _one(e, 23), "slice begins carry a name"
            open_slices[track] = open_slices.get(track, 0) + 1
            trace.max_open_depth = max(trace.max_open_depth, open_slices[track])
            trace.slices += 1
        elif kind == 2:
            assert open_slices.get(track, 0) > 0, "an end closes an open slice"
            open_slices[track] -= 1
        else:
            raise AssertionError(f"unexpected event type {kind}")
    assert all(v == 0 for v in open_slices.values()), "every slice is closed"
    return trace
