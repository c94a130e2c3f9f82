"""Every example of ``docs/query-cookbook.md`` runs against the lake ``sirius demo`` leaves.

The demo fills a data directory, ``sirius up`` serves it on free ports, and then each ``sql``
block of the page runs over FlightSQL (placeholders ``<trace_id>``, ``<stream_id>``,
``<process_id>`` replaced by ids found in the lake, ``<begin_minute>``/``<end_minute>`` by whole
minutes around its log entries) and must answer rows; the Python blocks run
with the server's URI; the gateway's JSON body is posted as written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_subprocess import SIRIUS, ZERO_PORTS, embedded_env, reachable_tmp_dir, read_up_banner

from sirius.flight import query_table

REPO = Path(__file__).resolve().parents[2]
COOKBOOK = REPO / "docs" / "query-cookbook.md"
DOC_URI = "grpc://127.0.0.1:50051"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", COOKBOOK.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def demo_lake() -> Iterator[dict[str, str]]:
    """``sirius demo`` once, then ``sirius up`` on its directory: the service URLs it printed."""
    with reachable_tmp_dir("sirius-cookbook-") as root:
        data = root / "data"
        demo = subprocess.run(
            [*SIRIUS, "demo", "--data-dir", str(data), "--requests", "12"],
            env=embedded_env(keep_otel=False),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        proc = subprocess.Popen(
            [*SIRIUS, "up", "--data-dir", str(data), *ZERO_PORTS],
            env=embedded_env(keep_otel=False),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            yield read_up_banner(proc).urls
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def _ids(uri: str) -> dict[str, str]:
    trace = query_table(
        "SELECT encode(trace_id, 'hex') AS id FROM otel_spans WHERE status = 'ERROR' LIMIT 1", uri=uri, begin="1d"
    )
    stream = query_table(
        "SELECT stream_id, process_id FROM streams WHERE array_has(tags, 'cpu') LIMIT 1", uri=uri, begin="1d"
    )
    bounds = query_table(
        "SELECT date_trunc('minute', min(time)) AS b, date_trunc('minute', max(time)) AS e FROM log_entries",
        uri=uri,
        begin="1d",
    )
    assert trace.num_rows == 1
    assert stream.num_rows == 1
    begin, end = bounds.column("b")[0].as_py(), bounds.column("e")[0].as_py() + dt.timedelta(minutes=1)
    return {
        "<begin_minute>": begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<end_minute>": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<trace_id>": trace.column(0)[0].as_py(),
        "<stream_id>": stream.column(0)[0].as_py(),
        "<process_id>": stream.column(1)[0].as_py(),
    }


def test_the_page_has_examples() -> None:
    assert len(_blocks("sql")) >= 15
    assert _blocks("python")


def test_every_sql_example_answers_rows(demo_lake: dict[str, str]) -> None:
    uri = demo_lake["flightsql"]
    ids = _ids(uri)
    for block in _blocks("sql"):
        sql = block
        for placeholder, value in ids.items():
            sql = sql.replace(placeholder, value)
        assert not re.search(r"<[a-z_]+>", sql), f"unknown placeholder in:\n{block}"
        table = query_table(sql, uri=uri, begin="1d")
        assert table.num_rows > 0, f"no rows from:\n{sql}"


def test_python_examples_run(demo_lake: dict[str, str]) -> None:
    for block in _blocks("python"):
        code = block.replace(DOC_URI, demo_lake["flightsql"])
        if "StaticTokenAuthProvider" in code:  # configuration.md's shape, with a key: not here
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, str(COOKBOOK), "exec"), {})  # the page's own examples


def test_gateway_body_as_written(demo_lake: dict[str, str]) -> None:
    bash = "\n".join(_blocks("bash"))
    body = re.search(r"-d '(\{.*?\})'", bash, flags=re.DOTALL)
    assert body, "the gateway example's JSON body"
    request = urllib.request.Request(
        demo_lake["gateway"] + "/query",
        data=json.dumps(json.loads(body.group(1))).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        rows = json.loads(response.read())
    assert {row["service_name"] for row in rows} == {"shop-frontend", "shop-payments"}
