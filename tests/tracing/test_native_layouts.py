"""The C tracer writes what its streams declare: the generated layout header is current, the
stream metadata it registers is the Python layout tables', and its LZ4 frames are standard."""

from __future__ import annotations

import lz4.frame
from hypothesis import given, settings
from hypothesis import strategies as st
from tracer_helpers import WatchedSink

from sirius import tracing
from sirius.tracing import STREAM_LAYOUTS, _layouts_codegen
from sirius.tracing._binding import lz4_frame_compress


def test_generated_layout_header_is_current():
    assert _layouts_codegen.HEADER_PATH.read_text() == _layouts_codegen.render(), (
        "regenerate with: python -m sirius.tracing._layouts_codegen"
    )


def test_registered_stream_metadata_is_the_layout_tables():
    sink = WatchedSink()
    tracing.init(sink=sink)
    try:
        with tracing.span("s"):
            tracing.info("m")
            tracing.metric("x", 1)
        assert tracing.flush(20)
    finally:
        tracing.shutdown(10)
    assert len(sink.streams) == 3
    for stream in sink.streams:
        (tag,) = stream.tags
        layout = STREAM_LAYOUTS[tag]
        assert stream.objects_metadata == layout.objects_metadata
        assert stream.dependencies_metadata == layout.dependencies_metadata
        assert stream.process_id == sink.processes[0].process_id


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.lists(st.sampled_from([b"ab", b"abc", b"\x00" * 7, b"xyz" * 5, b"q"]), max_size=400).map(b"".join),
    )
)
def test_lz4_frames_round_trip_through_python_lz4(data):
    assert lz4.frame.decompress(lz4_frame_compress(data)) == data


def test_lz4_large_inputs_cross_block_boundaries():
    pattern = bytes(range(256)) * 700 + b"tail" * 9000  # > 64 KiB blocks, compressible
    framed = lz4_frame_compress(pattern)
    assert len(framed) < len(pattern) // 4
    assert lz4.frame.decompress(framed) == pattern
    noise = bytes((i * 2654435761 >> 13) & 0xFF for i in range(150_000))
    assert lz4.frame.decompress(lz4_frame_compress(noise)) == noise
