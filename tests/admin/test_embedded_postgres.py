"""Both ways of running the embedded PostgreSQL start a usable, migratable server and stop it."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from sirius.admin import EmbeddedPostgres, EmbeddedPostgresError
from sirius.lakehouse import migrate, schema_versions


@pytest.fixture
def open_dir() -> Path:
    # Under /tmp with mode 755 so the postgres OS user can reach it when tests run as root.
    path = Path(tempfile.mkdtemp(prefix="sirius-embedded-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _use(dsn: str) -> tuple[int, int]:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kept(x int)")
        await conn.execute("INSERT INTO kept VALUES (1)")
        count = await conn.fetchval("SELECT count(*) FROM kept")
    finally:
        await conn.close()
    versions = await schema_versions(dsn)
    return count, versions


@pytest.mark.parametrize("method", ["system", "pgserver"])
def test_start_migrate_stop_restart(open_dir: Path, method: str) -> None:
    if method == "system" and shutil.which("pg_ctl") is None and not list(Path("/usr/lib/postgresql").glob("*/bin")):
        pytest.fail("this machine is expected to have Debian's PostgreSQL binaries")
    server = EmbeddedPostgres(open_dir / "pg", method=method)
    with server:
        count, versions = asyncio.run(_use(server.dsn))
    assert count == 1
    assert tuple(versions) == (7, 9)
    with EmbeddedPostgres(open_dir / "pg", method=method) as again:  # data survives a clean stop
        count, _ = asyncio.run(_use(again.dsn))
    assert count == 2


def test_unknown_method_is_refused(open_dir: Path) -> None:
    with pytest.raises(EmbeddedPostgresError):
        EmbeddedPostgres(open_dir, method="docker")
