"""``ParquetStream``: a file encoded chunk by chunk on a thread holds exactly the rows written."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse._parquet_files import MAX_ROW_GROUP_ROWS, ParquetStream, encode_parquet

SCHEMA = pa.schema(
    [
        pa.field("target", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("msg", pa.string(), nullable=False),
    ]
)


def _chunk(start: int, rows: int, targets: list[str]) -> pa.Table:
    return pa.table(
        {
            "target": pa.array([targets[(start + i) % len(targets)] for i in range(rows)]).dictionary_encode(),
            "level": pa.array([(start + i) % 7 for i in range(rows)], pa.int32()),
            "msg": pa.array([f"message {start + i}" for i in range(rows)]),
        },
        schema=SCHEMA,
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 300), max_size=6),
    st.lists(st.text(max_size=5), min_size=1, max_size=4),
    st.sampled_from([None, 100]),
)
def test_the_file_holds_the_chunks_in_order(sizes: list[int], targets: list[str], row_group_rows: int | None) -> None:
    stream = ParquetStream(SCHEMA, "zstd", row_group_rows)
    chunks, start = [], 0
    for rows in sizes:
        chunks.append(_chunk(start, rows, targets))
        stream.write(chunks[-1])
        start += rows
    data = stream.finish()
    assert stream.num_rows == sum(sizes)
    if not sum(sizes):
        assert data == b""  # no rows, no file (and no thread was started)
        assert stream._thread is None
        return
    expected = pa.concat_tables(chunks) if chunks else SCHEMA.empty_table()
    read = pq.read_table(pa.BufferReader(data)).cast(SCHEMA)
    assert read.to_pylist() == expected.to_pylist()
    # Same rows as the one-shot encoder, row groups no larger than asked.
    assert pq.read_table(pa.BufferReader(encode_parquet(expected, "zstd"))).to_pylist() == read.to_pylist()
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    limit = row_group_rows or MAX_ROW_GROUP_ROWS
    assert all(metadata.row_group(i).num_rows <= limit for i in range(metadata.num_row_groups))


def test_an_encoding_error_reaches_finish_and_abort_ends_the_thread() -> None:
    stream = ParquetStream(SCHEMA, "zstd")
    stream.write(pa.table({"other": [1]}))  # not the stream's schema
    with pytest.raises(ValueError, match="schema"):
        stream.finish()
    stream = ParquetStream(SCHEMA, "zstd")
    stream.write(_chunk(0, 10, ["a"]))
    stream.abort()
    assert not stream._thread.is_alive()
