"""Throwaway PostgreSQL databases of the tests: run admin SQL and name a database in a DSN.

Shared by the ``pg_dsn`` fixture of ``tests/conftest.py`` and the Explore fixtures, which create
and drop one database each.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["admin_execute", "with_database"]


async def admin_execute(dsn: str, sql: str) -> None:
    """Run one statement (``CREATE DATABASE``/``DROP DATABASE``) on its own connection."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at the database ``name`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
