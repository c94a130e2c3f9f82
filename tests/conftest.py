"""Shared fixtures: a real PostgreSQL database per test, a real S3 server (moto), env scrubbing.

PostgreSQL: the server on 127.0.0.1:5432 when one answers (as in CI); otherwise an embedded one
started the same way ``sirius up`` does, so the README's test command works on a fresh machine.
Each test gets its own database (unique name) that is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest

# Helper modules of this folder (cli_subprocess) import by name: the suite uses --import-mode=importlib.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pg_databases import admin_execute, with_database

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _scrub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's MICROMEGAS_* / SIRIUS_* / OTEL_* settings."""
    for name in list(os.environ):
        if name.startswith(("MICROMEGAS_", "SIRIUS_", "OTEL_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _private_spool(_scrub_env: None, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's sinks spool into their own directory: never the user's cache, never another test's."""
    monkeypatch.setenv("SIRIUS_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server's maintenance database (system one, else embedded)."""
    # SIRIUS_TEST_EMBEDDED_PG=1 forces the fresh-machine path even where :5432 answers.
    if os.environ.get("SIRIUS_TEST_EMBEDDED_PG") != "1" and _port_open("127.0.0.1", 5432):
        yield SYSTEM_PG
        return
    from sirius.admin import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="sirius-test-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the postgres OS user must traverse it when we run as root
        server = EmbeddedPostgres(os.path.join(tmp, "pg"), durable=False)  # disposable: speed over fsync
        server.start()
        try:
            yield server.dsn
        finally:
            server.stop()


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"sirius_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin_execute(pg_admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(pg_admin_dsn, name)
    finally:
        asyncio.run(admin_execute(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto S3 server running in this process."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the S3 settings at moto and return a fresh ``s3://bucket/prefix`` URI (bucket created)."""
    from minio import Minio

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    bucket = f"sirius-{uuid.uuid4().hex[:10]}"
    client = Minio(s3_endpoint.removeprefix("http://"), "testing", "testing", secure=False, region="us-east-1")
    client.make_bucket(bucket)
    return f"s3://{bucket}/lake"


class StackThread:
    """A ``sirius.admin`` Stack running on its own event loop in a background thread.

    Tests talk to it over real sockets and use ``call`` to run coroutines (database checks)
    on the stack's loop, next to its pool.
    """

    def __init__(self, options: object) -> None:
        import threading

        from sirius.admin._stack import Stack

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="stack-loop", daemon=True)
        self._thread.start()
        self.stack = Stack(options)  # type: ignore[arg-type]
        self.endpoints = self.call(self.stack.start())
        self.url = self.endpoints[0].url

    def call(self, coro: object, timeout: float = 60.0) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            self.call(self.stack.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture
def stack_factory(pg_dsn: str, tmp_path: object) -> Iterator[object]:
    """Build running stacks over this test's database: ``stack_factory(object_store_uri=None, **options)``."""
    import itertools
    from pathlib import Path

    from sirius.admin._stack import StackOptions

    started: list[StackThread] = []
    numbers = itertools.count()  # stacks may be made from several threads at once

    def make(object_store_uri: str | None = None, **options: object) -> StackThread:
        # One data directory per stack: a stack locks the one it uses (sirius up's rule).
        data_dir = Path(str(tmp_path)) / f"stack{next(numbers)}"
        for port in ("ingestion_port", "otlp_grpc_port", "otlp_http_port", "flight_port", "gateway_port"):
            options.setdefault(port, 0)
        opts = StackOptions(
            data_dir=data_dir,
            sql_connection_string=pg_dsn,
            object_store_uri=object_store_uri,
            **options,  # type: ignore[arg-type]
        )
        stack = StackThread(opts)
        started.append(stack)
        return stack

    yield make
    for stack in reversed(started):
        stack.close()
