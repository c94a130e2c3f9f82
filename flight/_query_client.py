"""``sirius query``: run SQL over FlightSQL and print a readable table, CSV or JSON.

The library function :func:`run_query` does the work; the CLI parses flags and calls it.
``--begin``/``--end`` take RFC 3339 times or durations before now (``90s``, ``15m``, ``1h``,
``7d``, ``2w``; :mod:`._time_arguments`); with only ``--begin`` the range ends now. With no
``--uri``/``--api-key`` the server and key come from ``MICROMEGAS_ANALYTICS_URI`` and
``MICROMEGAS_API_KEY``; a ``grpc+tls://`` service is verified against ``--tls-ca`` (or
``SIRIUS_TLS_CA_FILE``), else the system's trust store. While a query runs, a progress line on
stderr (a terminal only) shows the rows and bytes received and the elapsed time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import pyarrow as pa
from pyarrow import flight

from ..collector import TlsConfigurationError
from ..identity import ClientCredentials, IdentityError
from . import _environment_variables as env
from . import _protocol as proto
from . import _time_arguments
from ._gateway import _json_value, rows_as_json
from ._jsonb_text import embed_json_columns, jsonb_as_json_text
from ._tls_roots import read_ca_bundle, tls_failure_hint

__all__ = [
    "DEFAULT_QUERY_URI",
    "QueryClientError",
    "format_table",
    "parse_time",
    "query_table",
    "query_target",
    "run_query",
]

DEFAULT_QUERY_URI = "grpc://127.0.0.1:50051"
FORMATS = ("table", "csv", "json")


class QueryClientError(Exception):
    """A bad argument or a failed query; the message is meant for the user."""


def parse_time(text: str, now_ns: int) -> int:
    """An RFC 3339 time, or a duration before ``now_ns`` (``1h``, ``7d``), as Unix ns.

    Raises:
        QueryClientError: neither form.
    """
    try:
        return _time_arguments.parse_time(text, now_ns)
    except _time_arguments.TimeArgumentError as exc:
        raise QueryClientError(str(exc)) from None


def _resolve_range(begin: str | None, end: str | None, now_ns: int) -> tuple[str | None, str | None]:
    try:
        resolved = _time_arguments.resolve_range(begin, end, now_ns)
    except _time_arguments.TimeArgumentError as exc:
        raise QueryClientError(str(exc)) from None
    return resolved if resolved is not None else (None, None)


def client_credentials_token(environ: Mapping[str, str] | None = None, ca_file: str | None = None) -> str | None:
    """An access token from ``MICROMEGAS_OIDC_ISSUER`` with ``MICROMEGAS_OIDC_CLIENT_ID``/``_SECRET`` (None when unset).

    The ``micromegas`` client's variable names (``OidcClientCredentialsProvider.from_env``), with
    its optional ``MICROMEGAS_OIDC_AUDIENCE``.

    Raises:
        IdentityError: incomplete variables, or the issuer refused the credentials.
    """
    credentials = ClientCredentials.from_env(environ, ca_file=ca_file)
    return None if credentials is None else credentials.token()


def query_target(
    uri: str | None = None, api_key: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """The FlightSQL URI and key to use: the arguments, else the environment, else the default.

    ``MICROMEGAS_ANALYTICS_URI`` and ``MICROMEGAS_API_KEY`` fill what the arguments leave out
    (empty counts as unset); the URI defaults to :data:`DEFAULT_QUERY_URI`.
    """
    environ = os.environ if environ is None else environ
    resolved_uri = uri or environ.get(env.MICROMEGAS_ANALYTICS_URI) or DEFAULT_QUERY_URI
    return resolved_uri, api_key or environ.get(env.MICROMEGAS_API_KEY) or None


class _Progress:
    """A one-line progress indicator on a terminal; silent elsewhere."""

    def __init__(self, stream: IO[str], *, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled
        self._start = time.monotonic()
        self._rows = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Progress:
        if self._enabled:
            self._thread = threading.Thread(target=self._tick, name="query-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def add(self, batch: pa.RecordBatch) -> None:
        with self._lock:
            self._rows += batch.num_rows
            self._bytes += batch.nbytes

    def _tick(self) -> None:
        spinner = "|/-\\"
        i = 0
        # Redraw periodically so a long wait for the first rows still shows life.
        while not self._stop.wait(0.2):
            with self._lock:
                rows, size = self._rows, self._bytes
            elapsed = time.monotonic() - self._start
            line = f"\r{spinner[i % 4]} {rows:,} rows, {size / 1e6:,.1f} MB, {elapsed:,.1f} s"
            self._stream.write(line + "\x1b[K")
            self._stream.flush()
            i += 1


def query_table(
    sql: str,
    *,
    uri: str = DEFAULT_QUERY_URI,
    begin: str | None = None,
    end: str | None = None,
    api_key: str | None = None,
    on_batch: Callable[[pa.RecordBatch], None] | None = None,
    now_ns: int | None = None,
    ca_file: str | None = None,
    engine: str = "datafusion",
) -> pa.Table:
    """Run ``sql`` over FlightSQL (the ``micromegas`` client's ``DoGet``) and return the result.

    Args:
        sql: the statement.
        uri: FlightSQL service (``grpc://host:port``, ``grpc+tls://…``; ``http(s)://`` accepted).
        begin: range start, RFC 3339 or a duration before now.
        end: range end (default now when ``begin`` is given).
        api_key: sent as ``Authorization: Bearer <key>``; without one, a token obtained with the
            ``MICROMEGAS_OIDC_*`` client credentials when they are set (:func:`client_credentials_token`).
        on_batch: called with every batch as it arrives (progress).
        now_ns: "now" for relative times (default the wall clock).
        ca_file: PEM bundle of the CAs trusted for ``grpc+tls`` (default ``$SIRIUS_TLS_CA_FILE``,
            else the system's trust store).
        engine: ``datafusion``, or ``sail`` (header ``x-sirius-engine``: the server runs the
            statement, in Spark SQL, on its Sail cluster).

    Raises:
        QueryClientError: a bad argument, an unreachable or untrusted server, or a failed query.
    """
    now = time.time_ns() if now_ns is None else now_ns
    range_begin, range_end = _resolve_range(begin, end, now)
    if not api_key:
        try:
            api_key = client_credentials_token(ca_file=ca_file)
        except IdentityError as exc:
            raise QueryClientError(str(exc)) from None
    headers = [(b"x-client-type", b"sirius-cli")]
    if engine != "datafusion":
        headers.append((b"x-sirius-engine", engine.encode()))
    if api_key:
        headers.append((b"authorization", f"Bearer {api_key}".encode()))
    if range_begin and range_end:
        headers += [(b"query_range_begin", range_begin.encode()), (b"query_range_end", range_end.encode())]
    location = re.sub(r"^https://", "grpc+tls://", re.sub(r"^http://", "grpc://", uri))
    ticket = flight.Ticket(proto.pack(proto.TicketStatementQuery(statement_handle=sql.encode())))
    try:
        roots = read_ca_bundle(ca_file) if location.startswith("grpc+tls://") else None
    except TlsConfigurationError as exc:
        raise QueryClientError(str(exc)) from None
    try:
        client = flight.connect(location, tls_root_certs=roots) if roots else flight.connect(location)
    except (pa.ArrowException, ValueError) as exc:
        msg = f"cannot use {uri!r}: {exc}"
        raise QueryClientError(msg) from exc
    try:
        reader = client.do_get(ticket, options=flight.FlightCallOptions(headers=headers))
        batches = []
        for chunk in reader:
            batches.append(chunk.data)
            if on_batch is not None:
                on_batch(chunk.data)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except pa.ArrowException as exc:
        raise QueryClientError(_clean_error(exc)) from exc
    finally:
        client.close()


def _clean_error(exc: BaseException) -> str:
    text = str(exc).split(". gRPC client debug context", 1)[0]
    text = re.sub(r"^Flight returned [a-z ]+ error, with message: ", "", text)
    hint = tls_failure_hint(text)
    if hint is not None:
        return f"{hint} ({text})"
    if "failed to connect" in text.lower() or "connection refused" in text.lower():
        return f"cannot reach the FlightSQL service ({text})"
    return text


def _cell(value: Any, max_width: int) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", " ")
    if max_width and len(text) > max_width:
        return text[: max_width - 1] + "…"
    return text


def format_table(table: pa.Table, *, max_width: int = 50) -> str:
    """A plain-text table with aligned columns (values longer than ``max_width`` are cut)."""
    if table.num_rows == 0:
        return "no data"
    names = table.column_names
    rows = []
    for batch in table.to_batches():
        columns = [column.to_pylist() for column in batch.columns]
        rows += [
            [_cell(_json_value(v) if isinstance(v, (bytes, float)) else v, max_width) for v in row]
            for row in zip(*columns, strict=True)
        ]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(names)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [line(names), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    out.append(f"({table.num_rows:,} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out)


def _format(table: pa.Table, output_format: str) -> str:
    table, jsonb_columns = jsonb_as_json_text(table)  # properties etc. as JSON, not hex
    if output_format == "table":
        return format_table(table)
    if output_format == "json":
        rows = [row for batch in table.to_batches() for row in rows_as_json(batch)]
        return "[" + ",\n".join(embed_json_columns(rows, jsonb_columns)) + "]"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    for batch in table.to_batches():
        for line in rows_as_json(batch):
            writer.writerow([_csv_value(v) for v in json.loads(line).values()])
    return buffer.getvalue().rstrip("\n")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def run_query(
    sql: str,
    *,
    uri: str | None = None,
    begin: str | None = None,
    end: str | None = None,
    output_format: str = "table",
    api_key: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    progress: bool | None = None,
    now_ns: int | None = None,
    ca_file: str | None = None,
    engine: str = "datafusion",
    cluster: str | None = None,
) -> int:
    """The whole ``sirius query`` command: run, print, return the exit code.

    Args:
        sql: the statement.
        uri: FlightSQL service (default ``$MICROMEGAS_ANALYTICS_URI``, else ``grpc://127.0.0.1:50051``).
        begin: RFC 3339 or a duration before now (``1h``).
        end: RFC 3339 or a duration before now; default now when ``begin`` is given.
        output_format: ``table``, ``csv`` or ``json``.
        api_key: Bearer key (default ``$MICROMEGAS_API_KEY``, else a token obtained with the
            client credentials of ``$MICROMEGAS_OIDC_CLIENT_ID``/``_SECRET`` from ``$MICROMEGAS_OIDC_ISSUER``).
        out: where results go (default stdout).
        err: where errors and progress go (default stderr).
        progress: show progress (default: when ``err`` is a terminal).
        now_ns: "now" for relative times (tests).
        ca_file: PEM bundle of the CAs trusted for ``grpc+tls`` (default ``$SIRIUS_TLS_CA_FILE``).
        engine: ``datafusion`` or ``sail`` (Spark SQL on the FlightSQL server's Sail cluster).
        cluster: with ``engine="sail"``, run on this Sail cluster (``sc://host:port``) from here,
            reading the lakehouse named by ``MICROMEGAS_SQL_CONNECTION_STRING`` and
            ``MICROMEGAS_OBJECT_STORE_URI``, instead of asking the FlightSQL server.

    Returns:
        0 on success, 2 on a bad argument or a failed query (the reason is printed on ``err``).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if output_format not in FORMATS:
        err.write(f"sirius query: --format must be one of {', '.join(FORMATS)}\n")
        return 2
    if engine not in ("datafusion", "sail") or (cluster is not None and engine != "sail"):
        err.write("sirius query: --engine must be datafusion or sail; --cluster goes with --engine sail\n")
        return 2
    show = progress if progress is not None else bool(getattr(err, "isatty", lambda: False)())
    uri, api_key = query_target(uri, api_key)
    try:
        if cluster is not None:
            table = _on_cluster(sql, cluster, begin, end, now_ns)
        else:
            with _Progress(err, enabled=show) as bar:
                table = query_table(
                    sql,
                    uri=uri,
                    begin=begin,
                    end=end,
                    api_key=api_key,
                    on_batch=bar.add,
                    now_ns=now_ns,
                    ca_file=ca_file,
                    engine=engine,
                )
    except QueryClientError as exc:
        err.write(f"sirius query: {exc}\n")
        return 2
    out.write(_format(table, output_format) + "\n")
    out.flush()
    return 0


def _on_cluster(sql: str, cluster: str, begin: str | None, end: str | None, now_ns: int | None) -> pa.Table:
    """``sirius query --engine sail --cluster sc://…``: the statement on that cluster, from this process."""
    from ..distributed import DistributedError, query_cluster  # the distributed extra: needed only here
    from ..lakehouse import LakehouseError, TimeRange, ViewError

    now = time.time_ns() if now_ns is None else now_ns
    range_begin, range_end = _resolve_range(begin, end, now)
    time_range = None
    if range_begin and range_end:
        time_range = TimeRange(parse_time(range_begin, now), parse_time(range_end, now))
    try:
        return query_cluster(sql, cluster, time_range)
    except (DistributedError, LakehouseError, ViewError, ValueError) as exc:
        raise QueryClientError(str(exc)) from None
