"""PostgreSQL for the benchmarks: which server to use, and a throwaway database on it.

The server is the one given with ``--dsn``, else the local PostgreSQL on :5432 when it answers,
else an embedded one started for the run. Each run creates its own database and drops it at
the end, so runs never see each other's rows.

The benchmarks run as ``python bench/<name>.py``: Python puts ``bench/`` first on ``sys.path``,
so they import this module as ``_postgres``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from sirius.admin import EmbeddedPostgres

__all__ = ["LOCAL_ADMIN_DSN", "create_database", "drop_database", "local_port_open", "maintenance_dsn"]

LOCAL_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
"""Maintenance DSN of the local PostgreSQL."""


def local_port_open() -> bool:
    """Whether something answers on 127.0.0.1:5432."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def maintenance_dsn(dsn: str | None, tmp: Path) -> Iterator[str]:
    """The maintenance DSN to run against: ``dsn``, else the local server, else an embedded one.

    Args:
        dsn: the ``--dsn`` argument (``None`` when not given).
        tmp: the run's temporary directory; an embedded server keeps its cluster in ``tmp/pg``
            and is stopped on exit. The directory is made readable by others because the
            server may run as the ``postgres`` user.
    """
    if not dsn and local_port_open():
        dsn = LOCAL_ADMIN_DSN
    if dsn:
        yield dsn
        return
    os.chmod(tmp, 0o755)
    embedded = EmbeddedPostgres(tmp / "pg")
    dsn = embedded.start()
    try:
        yield dsn
    finally:
        embedded.stop()


async def create_database(admin: str) -> str:
    """Create a database named ``sirius_bench_<random>`` on the server of ``admin``; return its DSN."""
    name = f"sirius_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return admin.rsplit("/", 1)[0] + "/" + name


async def drop_database(admin: str, dsn: str) -> None:
    """Drop the database of ``dsn`` (made by ``create_database``), closing its connections."""
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()
