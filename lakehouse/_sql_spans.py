"""``process_spans(process_id, types)`` and ``perfetto_trace_chunks(process_id, types, begin, end)``.

Both read the spans of one process through the session's own views, so they work over
whatever provider built the session:

* thread spans: the process's streams tagged ``cpu`` (from ``streams``; thread name and id
  from the ``thread-name``/``thread-id`` stream properties), then
  ``view_instance('thread_spans', <stream_id>)`` for each (which needs the query range);
* async spans: ``view_instance('async_events', <process_id>)``, ``begin`` and ``end`` events
  paired by ``span_id`` (a hash join, no Python loop).

``perfetto_trace_chunks`` encodes them (``_sql_perfetto``), with the process's OTel spans as
thread tracks per service/thread for span types ``async`` and ``both`` (``_sql_otel_perfetto``),
and returns the trace in chunks
(``chunk_id`` from 0, ``chunk_data``) that concatenate to a valid Perfetto file, which is what
``micromegas.perfetto.write_process_trace`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._sql_arguments import argument_ordinal
from ._sql_arguments import time_arg as _time_arg
from ._sql_otel_perfetto import otel_tracks
from ._sql_perfetto import PerfettoTrack, chunk_trace, encode_trace, stable_id

if TYPE_CHECKING:
    from ._sql_table_functions import SqlEnvironment

__all__ = [
    "PERFETTO_CHUNKS_ARGUMENTS",
    "PERFETTO_CHUNKS_SCHEMA",
    "PROCESS_SPANS_ARGUMENTS",
    "PROCESS_SPANS_SCHEMA",
    "perfetto_trace_chunks",
    "process_spans",
]

_TS = pa.timestamp("ns", tz="+00:00")
_DICT16 = pa.dictionary(pa.int16(), pa.utf8())
_DICT32 = pa.dictionary(pa.int32(), pa.utf8())

SPAN_FIELDS = [
    pa.field("id", pa.int64(), nullable=False),
    pa.field("parent", pa.int64(), nullable=False),
    pa.field("depth", pa.uint32(), nullable=False),
    pa.field("hash", pa.uint32(), nullable=False),
    pa.field("begin", _TS, nullable=False),
    pa.field("end", _TS, nullable=False),
    pa.field("duration", pa.int64(), nullable=False),
    pa.field("name", _DICT32, nullable=False),
    pa.field("target", _DICT32, nullable=False),
    pa.field("filename", _DICT32, nullable=False),
    pa.field("line", pa.uint32(), nullable=False),
]
PROCESS_SPANS_SCHEMA = pa.schema(
    [pa.field("stream_id", _DICT16, nullable=False), pa.field("thread_name", _DICT16, nullable=False), *SPAN_FIELDS]
)
PERFETTO_CHUNKS_SCHEMA = pa.schema(
    [pa.field("chunk_id", pa.int32(), nullable=False), pa.field("chunk_data", pa.binary(), nullable=False)]
)
_SPAN_TYPES = ("thread", "async", "both")
# What each argument must be, in Micromegas's words (its error texts name them so).
PROCESS_SPANS_ARGUMENTS = ("a string (the process ID)", "a string ('thread', 'async', or 'both')")
PERFETTO_CHUNKS_ARGUMENTS = (
    *PROCESS_SPANS_ARGUMENTS,
    "a timestamp (start time)",
    "a timestamp (end time)",
)


def _quote(text: str) -> str:
    """A SQL string literal (quotes doubled): how ids from arguments enter the nested queries."""
    return "'" + text.replace("'", "''") + "'"


def _bad_argument(index: int, function: str, arguments: tuple[str, ...], value: Any) -> ValueError:
    return ValueError(f"{argument_ordinal(index)} argument to {function} must be {arguments[index]}, given {value!r}")


def _process_id(value: Any, function: str, arguments: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _bad_argument(0, function, arguments, value)
    return value


def _span_types(value: Any, function: str, arguments: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _bad_argument(1, function, arguments, value)
    kind = value.lower()
    if kind not in _SPAN_TYPES:
        msg = f"span_types must be 'thread', 'async', or 'both', given: {value}"
        raise ValueError(msg)
    return kind


def _time(value: Any, index: int, function: str, arguments: tuple[str, ...]) -> int:
    try:
        return _time_arg(value, function, arguments[index])
    except ValueError as exc:
        raise _bad_argument(index, function, arguments, value) from exc


def _cpu_streams(ctx: datafusion.SessionContext, env: SqlEnvironment, process_id: str) -> list[tuple[str, str, int]]:
    """``(stream_id, thread_name, thread_id)`` of the process's ``cpu`` streams, by stream id."""
    table = env.collect(
        ctx,
        "SELECT stream_id, property_get(properties, 'thread-name') AS thread_name, "  # noqa: S608 - literals quoted
        "property_get(properties, 'thread-id') AS thread_id FROM streams "
        f"WHERE process_id = {_quote(process_id)} AND array_has(tags, 'cpu')",
    )
    seen: dict[str, tuple[str, str, int]] = {}
    for row in table.to_pylist():
        stream_id = str(row["stream_id"])
        if stream_id in seen:
            continue
        text_id = row["thread_id"]
        tid = int(text_id) if text_id and str(text_id).isdigit() else stable_id(stream_id)
        name = row["thread_name"] or (f"thread {text_id}" if text_id else stream_id)
        seen[stream_id] = (stream_id, str(name), tid)
    return [seen[key] for key in sorted(seen)]


def _in_range(table: pa.Table, begin_ns: int | None, end_ns: int | None) -> pa.Table:
    if begin_ns is None or end_ns is None or table.num_rows == 0:
        return table
    begin = pc.cast(table["begin"], pa.int64())
    end = pc.cast(table["end"], pa.int64())
    return table.filter(pc.and_(pc.greater_equal(end, begin_ns), pc.less_equal(begin, end_ns)))


def _thread_spans(ctx: datafusion.SessionContext, env: SqlEnvironment, stream_id: str) -> pa.Table:
    table = env.collect(ctx, f"SELECT * FROM view_instance('thread_spans', {_quote(stream_id)})")  # noqa: S608
    return table.select([f.name for f in SPAN_FIELDS]).cast(pa.schema(SPAN_FIELDS))


def _async_spans(ctx: datafusion.SessionContext, env: SqlEnvironment, process_id: str) -> pa.Table:
    """Pair ``begin``/``end`` async events into spans (schema of :data:`SPAN_FIELDS`)."""
    events = env.collect(ctx, f"SELECT * FROM view_instance('async_events', {_quote(process_id)})")  # noqa: S608
    if events.num_rows == 0:
        return pa.schema(SPAN_FIELDS).empty_table()
    kind = pc.cast(events["event_type"], pa.utf8())
    cols = ["span_id", "parent_span_id", "depth", "hash", "name", "target", "filename", "line", "time"]
    begins = events.filter(pc.equal(kind, "begin")).select(cols)
    ends = events.filter(pc.equal(kind, "end")).select(["span_id", "time"]).rename_columns(["span_id", "end"])
    for name in ("name", "target", "filename"):
        begins = begins.set_column(begins.schema.get_field_index(name), name, pc.cast(begins[name], pa.utf8()))
    joined = begins.join(ends, keys="span_id", join_type="inner")
    joined = joined.sort_by([("time", "ascending"), ("depth", "ascending")])
    begin, end = joined["time"], joined["end"]
    duration = pc.subtract(pc.cast(end, pa.int64()), pc.cast(begin, pa.int64()))
    spans = pa.table(
        {
            "id": joined["span_id"],
            "parent": joined["parent_span_id"],
            "depth": joined["depth"],
            "hash": joined["hash"],
            "begin": begin,
            "end": end,
            "duration": duration,
            "name": pc.dictionary_encode(joined["name"]),
            "target": pc.dictionary_encode(joined["target"]),
            "filename": pc.dictionary_encode(joined["filename"]),
            "line": joined["line"],
        }
    )
    return spans.cast(pa.schema(SPAN_FIELDS))


def _labelled(spans: pa.Table, stream_id: str, thread_name: str) -> pa.Table:
    n = spans.num_rows
    zeros = pa.array(np.zeros(n, dtype=np.int16))
    stream = pa.DictionaryArray.from_arrays(zeros, pa.array([stream_id]))
    thread = pa.DictionaryArray.from_arrays(zeros, pa.array([thread_name]))
    return pa.table([stream, thread, *spans.columns], schema=PROCESS_SPANS_SCHEMA)


def _ranged(
    ctx: datafusion.SessionContext, env: SqlEnvironment, begin_ns: int | None, end_ns: int | None
) -> datafusion.SessionContext:
    """A session over ``[begin_ns, end_ns]`` when it differs from the request's range."""
    if (
        begin_ns is not None
        and end_ns is not None
        and (begin_ns, end_ns) != (env.begin_ns, env.end_ns)
        and env.session_for is not None
    ):
        return env.session_for(begin_ns, end_ns)
    return ctx


def _collect_spans(
    ctx: datafusion.SessionContext,
    env: SqlEnvironment,
    process_id: str,
    *,
    kind: str,
    begin_ns: int | None,
    end_ns: int | None,
) -> list[tuple[str, str, int, pa.Table]]:
    """``(stream_id, thread_name, tid, spans)`` per thread, then ``("", "async", 0, spans)``.

    With an explicit range different from the request's, the views are read in a session over
    that range (``thread_spans`` needs one).
    """
    ctx = _ranged(ctx, env, begin_ns, end_ns)
    out: list[tuple[str, str, int, pa.Table]] = []
    if kind in ("thread", "both"):
        for stream_id, thread_name, tid in _cpu_streams(ctx, env, process_id):
            spans = _in_range(_thread_spans(ctx, env, stream_id), begin_ns, end_ns)
            out.append((stream_id, thread_name, tid, spans))
    if kind in ("async", "both"):
        out.append(("", "async", 0, _in_range(_async_spans(ctx, env, process_id), begin_ns, end_ns)))
    return out


def process_spans(ctx: datafusion.SessionContext, env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    """Rows of ``process_spans(process_id, types[, begin, end])``: thread spans by stream, then async spans.

    The range is the request's (headers) unless ``begin`` and ``end`` are given (a Sirius
    extension, for clients that cannot send range headers, e.g. Grafana's upstream plugin).
    """
    name, arguments = "process_spans", PERFETTO_CHUNKS_ARGUMENTS  # begin, end: the Sirius extension
    process_id = _process_id(args[0], name, arguments)
    kind = _span_types(args[1], name, arguments)
    begin_ns, end_ns = env.begin_ns, env.end_ns
    if len(args) == 4:
        begin_ns, end_ns = _time(args[2], 2, name, arguments), _time(args[3], 3, name, arguments)
    parts = [
        _labelled(spans, stream_id, thread_name)
        for stream_id, thread_name, _, spans in _collect_spans(
            ctx, env, process_id, kind=kind, begin_ns=begin_ns, end_ns=end_ns
        )
    ]
    if not parts:
        return PROCESS_SPANS_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def _track(uuid: int, thread_name: str | None, tid: int, spans: pa.Table) -> PerfettoTrack:
    def codes(column: str) -> tuple[np.ndarray, list[str]]:
        encoded = pc.dictionary_encode(pc.cast(spans[column], pa.utf8())).combine_chunks()
        return encoded.indices.to_numpy(zero_copy_only=False), [str(v) for v in encoded.dictionary.to_pylist()]

    name_codes, names = codes("name")
    target_codes, targets = codes("target")
    return PerfettoTrack(
        uuid=uuid,
        thread_name=thread_name,
        tid=tid,
        begin_ns=pc.cast(spans["begin"], pa.int64()).to_numpy(),
        end_ns=pc.cast(spans["end"], pa.int64()).to_numpy(),
        depth=spans["depth"].to_numpy(),
        name_codes=name_codes,
        names=names,
        target_codes=target_codes,
        targets=targets,
    )


def perfetto_trace_chunks(ctx: datafusion.SessionContext, env: SqlEnvironment, args: Sequence[Any]) -> pa.Table:
    """Rows of ``perfetto_trace_chunks(process_id, span_types, begin, end)``: ``chunk_id, chunk_data``."""
    name, arguments = "perfetto_trace_chunks", PERFETTO_CHUNKS_ARGUMENTS
    process_id = _process_id(args[0], name, arguments)
    kind = _span_types(args[1], name, arguments)
    begin_ns, end_ns = _time(args[2], 2, name, arguments), _time(args[3], 3, name, arguments)
    if end_ns < begin_ns:
        msg = f"{name}: end is before begin"
        raise ValueError(msg)
    exe_sql = f"SELECT exe FROM processes WHERE process_id = {_quote(process_id)} LIMIT 1"  # noqa: S608
    exe_rows = env.collect(ctx, exe_sql)
    if not exe_rows.num_rows:
        msg = f"Process {process_id} not found"
        raise ValueError(msg)
    exe = str(exe_rows.column(0)[0].as_py())
    tracks = []
    for stream_id, thread_name, tid, spans in _collect_spans(
        ctx, env, process_id, kind=kind, begin_ns=begin_ns, end_ns=end_ns
    ):
        if stream_id:
            tracks.append(_track(stable_id(stream_id), thread_name, tid, spans))
        else:
            tracks.append(_track(stable_id(f"async:{process_id}"), None, 0, spans))
    if kind in ("async", "both"):
        tracks += otel_tracks(_ranged(ctx, env, begin_ns, end_ns), env, process_id, begin_ns, end_ns)
    trace, packet_ends = encode_trace(process_id, exe, tracks)
    chunks = chunk_trace(trace, packet_ends)
    return pa.table(
        {"chunk_id": pa.array(range(len(chunks)), pa.int32()), "chunk_data": pa.array(chunks, pa.binary())},
        schema=PERFETTO_CHUNKS_SCHEMA,
    )
