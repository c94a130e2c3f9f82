"""SQL of the processes screens: processes, a process's streams and threads, thread spans, Perfetto.

A process is ``otel`` when it reported over OTLP (its properties are resource attributes),
``native`` otherwise. Streams come with their block and event counts from ``blocks``; threads
are the streams tagged ``cpu`` (their name is the ``thread-name`` property); one thread's spans
are ``view_instance('thread_spans', <stream_id>)``; the Perfetto file is the concatenation of
``perfetto_trace_chunks(<process_id>, 'both', begin, end)``.
"""

from __future__ import annotations

from ._range import TimeWindow
from ._services_queries import OTEL_PROCESS
from ._sql_literals import like_pattern, parse_uuid, sql_text

__all__ = [
    "perfetto_sql",
    "process_sql",
    "processes_sql",
    "stream_owner_sql",
    "streams_sql",
    "thread_spans_sql",
]

_PROCESS_COLUMNS = (
    "process_id, service_name, exe, "
    f"CASE WHEN {OTEL_PROCESS} THEN 'otel' ELSE 'native' END AS kind, "
    "computer, username, start_time, last_update_time AS last_seen, properties"
)


def processes_sql(text: str | None = None, service: str | None = None, limit: int = 500) -> str:
    """Processes seen in the range, most recently active first."""
    where = []
    if text:
        pattern = like_pattern(text)
        where.append(
            f"(exe ILIKE {pattern} OR service_name ILIKE {pattern} OR process_id ILIKE {pattern} "
            f"OR computer ILIKE {pattern})"
        )
    if service is not None:
        where.append(f"service_name = {sql_text(service)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return (
        f"SELECT {_PROCESS_COLUMNS} FROM processes{clause} "  # noqa: S608 - literals are escaped
        f"ORDER BY last_update_time DESC, process_id LIMIT {int(limit)}"
    )


def process_sql(process_id: str) -> str:
    """One process by id."""
    pid = sql_text(parse_uuid(process_id, "process_id"))
    return f"SELECT {_PROCESS_COLUMNS} FROM processes WHERE process_id = {pid} LIMIT 1"  # noqa: S608


def streams_sql(process_id: str) -> str:
    """A process's streams with their tags, properties, block and event counts."""
    pid = sql_text(parse_uuid(process_id, "process_id"))
    return (
        "SELECT s.stream_id AS stream_id, s.tags AS tags, s.properties AS properties, "  # noqa: S608
        "coalesce(b.blocks, 0) AS blocks, coalesce(b.events, 0) AS events FROM streams s LEFT JOIN "
        "(SELECT stream_id, count(*) AS blocks, sum(nb_objects) AS events FROM blocks "
        f"WHERE process_id = {pid} GROUP BY stream_id) b ON s.stream_id = b.stream_id "
        f"WHERE s.process_id = {pid} ORDER BY s.stream_id"
    )


def stream_owner_sql(stream_id: str, process_id: str) -> str:
    """One row when ``stream_id`` is a stream of ``process_id``."""
    sid, pid = sql_text(parse_uuid(stream_id, "stream_id")), sql_text(parse_uuid(process_id, "process_id"))
    return f"SELECT stream_id FROM streams WHERE stream_id = {sid} AND process_id = {pid}"  # noqa: S608


def thread_spans_sql(stream_id: str, limit: int) -> str:
    """The spans of one thread stream, by begin time."""
    sid = sql_text(parse_uuid(stream_id, "stream_id"))
    return (
        'SELECT id, parent, depth, name, target, "begin", "end", duration '  # noqa: S608
        f"FROM view_instance('thread_spans', {sid}) ORDER BY \"begin\" LIMIT {int(limit)}"
    )


def perfetto_sql(process_id: str, window: TimeWindow) -> str:
    """The chunks of a process's Perfetto trace (thread and OTel spans) over the window."""
    pid = sql_text(parse_uuid(process_id, "process_id"))
    return (
        f"SELECT chunk_id, chunk_data FROM perfetto_trace_chunks({pid}, 'both', "  # noqa: S608
        f"{sql_text(window.begin)}, {sql_text(window.end)}) ORDER BY chunk_id"
    )
