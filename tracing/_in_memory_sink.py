"""``InMemoryBlockSink``: a sink that keeps what it is given, for tests and in-process pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field

from .transit import (
    Block,
    ProcessInfo,
    StreamInfo,
    block_from_cbor,
    process_info_from_cbor,
    stream_info_from_cbor,
)


@dataclass(slots=True)
class InMemoryBlockSink:
    """A sink that keeps what it is given: for tests and in-process pipelines."""

    processes: list[ProcessInfo] = field(default_factory=list)
    streams: list[StreamInfo] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def register_process(self, info: ProcessInfo) -> None:
        """Keep the process."""
        self.processes.append(info)

    def register_stream(self, info: StreamInfo) -> None:
        """Keep the stream."""
        self.streams.append(info)

    def send_block(self, block: Block) -> bool:
        """Keep the block."""
        self.blocks.append(block)
        return True

    def send_encoded(self, kind: str, body: bytes, nb_objects: int = 0) -> bool:
        """Decode and keep an encoded ``process``, ``stream`` or ``block`` body."""
        del nb_objects
        if kind == "process":
            self.register_process(process_info_from_cbor(body))
        elif kind == "stream":
            self.register_stream(stream_info_from_cbor(body))
        else:
            self.send_block(block_from_cbor(body))
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing to flush."""
        del timeout
        return True

    def shutdown(self, timeout: float = 0.0) -> bool:
        """Nothing to stop."""
        del timeout
        return True
