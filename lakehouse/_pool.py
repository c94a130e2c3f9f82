"""PostgreSQL connection pools and the one place where asyncpg errors become lakehouse errors.

One ``asyncpg`` pool per service (DESIGN.md, Storage). The data-lake tables use the composite
type ``micromegas_property`` (``key TEXT, value TEXT``) in arrays. asyncpg needs no custom codec
for it: it introspects composite types on first use and then encodes a Python sequence of
``(key, value)`` tuples as ``micromegas_property[]`` and decodes elements as ``Record`` objects
(indexable like tuples). Introspection is lazy, so a pool created before ``migrate()`` made the
type still works. ``tests/lakehouse/test_datalake.py`` pins this behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import asyncpg

from ._exceptions import ConfigurationError, MetadataStoreError

__all__ = ["create_pool", "pg_errors", "release_unchanged"]

# asyncpg raises PostgresError subclasses for server-side errors, InterfaceError for client-side
# misuse or a closed connection, OSError for sockets and TimeoutError for connect timeouts.
_PG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


# Set while a connection whose session the caller left untouched goes back to the pool (see
# ``release_unchanged``). The pool's release runs in a task shielded from cancellation, which
# copies the releasing task's context, so the reset below sees the value set around the release.
_SESSION_UNCHANGED: ContextVar[bool] = ContextVar("sirius_pg_session_unchanged", default=False)


@contextmanager
def release_unchanged() -> Iterator[None]:
    """Connections released to a ``create_pool`` pool inside the block skip asyncpg's reset query.

    asyncpg's release sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL;`` — one more PostgreSQL round trip per use of the pool, as much loop CPU as a small
    batched INSERT. Wrap only the release of a connection that ran statements which leave no
    session state (no ``SET``, ``LISTEN``, cursor or session advisory lock): an open transaction
    is still rolled back and listeners still removed (asyncpg does that before the reset query).
    """
    token = _SESSION_UNCHANGED.set(True)
    try:
        yield
    finally:
        _SESSION_UNCHANGED.reset(token)


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Run asyncpg's default reset query, unless the releasing caller vouched for the session."""
    if _SESSION_UNCHANGED.get():
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


@contextmanager
def pg_errors(what: str, error: type[MetadataStoreError] = MetadataStoreError) -> Iterator[None]:
    """Map asyncpg and socket errors raised inside the block to ``error``.

    Args:
        what: what was being done, for the message (``"inserting process …"``).
        error: the lakehouse error class to raise (``MigrationError`` during migrations).

    Raises:
        MetadataStoreError: (or ``error``) from the original exception.
    """
    try:
        yield
    except _PG_ERRORS as exc:
        detail = str(exc) or type(exc).__name__
        msg = f"{what}: {detail}"
        raise error(msg) from exc


async def create_pool(
    dsn: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    connect_timeout: float = 10.0,
    application_name: str = "sirius",
) -> asyncpg.Pool:
    """Open a pool of connections to the lakehouse database.

    Args:
        dsn: ``postgresql://user:password@host:port/database``.
        min_size: connections opened up front (at least one, so a bad DSN fails here).
        max_size: the most connections held at once; ``migrate()`` needs two.
        connect_timeout: seconds to wait for each connection.
        application_name: shown in ``pg_stat_activity`` to tell Sirius services apart.

    Returns:
        An open ``asyncpg.Pool``; close it with ``await pool.close()``.

    Raises:
        ConfigurationError: the DSN is malformed or the sizes are inconsistent.
        MetadataStoreError: PostgreSQL is unreachable or refuses the connection.
    """
    if not 1 <= min_size <= max_size:
        msg = f"pool sizes must satisfy 1 <= min_size <= max_size, got {min_size}, {max_size}"
        raise ConfigurationError(msg)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            server_settings={"application_name": application_name},
            reset=_reset_connection,
        )
    except ValueError as exc:  # includes asyncpg.ClientConfigurationError, raised by the DSN parser
        msg = f"malformed PostgreSQL DSN: {exc}"
        raise ConfigurationError(msg) from exc
    except _PG_ERRORS as exc:
        msg = f"cannot connect to PostgreSQL: {str(exc) or type(exc).__name__}"
        raise MetadataStoreError(msg) from exc
    return pool
