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


DELTA_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("begin", pa.timestamp("ns", tz="+00:00"), nullable=False),
        pa.field("level", pa.int32(), nullable=False),
    ]
)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1)), max_size=300))
def test_delta_columns_read_back_the_same_values(values: list[tuple[int, int]]) -> None:
    table = pa.table(
        {
            "id": pa.array([v[0] for v in values], pa.int64()),
            "begin": pa.array([v[1] for v in values], pa.int64()).view(DELTA_SCHEMA.field("begin").type),
            "level": pa.array([v[0] % 7 for v in values], pa.int32()),
        },
        schema=DELTA_SCHEMA,
    )
    stream = ParquetStream(DELTA_SCHEMA, "zstd", 50, ("id", "begin", "level"))
    stream.write(table)
    streamed = stream.finish()
    for data in (streamed, encode_parquet(table, "zstd", 50, ("id", "begin", "level"))):
        if not values:
            continue
        assert pq.read_table(pa.BufferReader(data)).cast(DELTA_SCHEMA).equals(table)
        metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
        for group in range(metadata.num_row_groups):
            encodings = [metadata.row_group(group).column(c).encodings for c in range(3)]
            assert all("DELTA_BINARY_PACKED" in e for e in encodings[:2])
            # A dictionary column keeps its dictionary encoding.
            assert "DELTA_BINARY_PACKED" not in encodings[2]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=1, max_size=200), st.sampled_from([(), ("msg",), ("msg", "level")]))
def test_columns_without_statistics_keep_their_values(texts: list[str], unpruned: tuple[str, ...]) -> None:
    table = pa.table(
        {
            "target": pa.array([t[:1] for t in texts]).dictionary_encode(),
            "level": pa.array([len(t) for t in texts], pa.int32()),
            "msg": pa.array(texts),
        },
        schema=SCHEMA,
    )
    stream = ParquetStream(SCHEMA, "zstd", 64, (), unpruned)
    stream.write(table)
    for data in (stream.finish(), encode_parquet(table, "zstd", 64, (), unpruned)):
        assert pq.read_table(pa.BufferReader(data)).cast(SCHEMA).equals(table)
        metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
        for group in range(metadata.num_row_groups):
            for index, name in enumerate(SCHEMA.names):
                # Statistics for every column but the unpruned ones (a row group always has values).
                assert metadata.row_group(group).column(index).is_stats_set == (name not in unpruned)
