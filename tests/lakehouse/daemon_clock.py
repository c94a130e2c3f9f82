"""Shared pieces of the daemon schedule tests that run passes on a fake clock.

The instants are seconds after ``T0``; ``PROVISIONAL`` is the second-pass schedule with
provisional slices every 250 ms (what ``sirius up`` runs); ``log_count`` reads the global
``log_entries`` view through a fresh session, as a user's query would.
"""

from __future__ import annotations

import datetime as dt

from sirius.lakehouse import DaemonConfig, Lakehouse, SessionFactory

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
S = 1_000_000_000
PROVISIONAL = DaemonConfig(second_pass_period_ns=250_000_000, provisional_slices=True)


def at(seconds: float) -> dt.datetime:
    """The instant ``seconds`` after ``T0``."""
    return T0 + dt.timedelta(seconds=seconds)


async def log_count(lake: Lakehouse) -> int:
    """Rows of the global ``log_entries`` view."""
    session = await SessionFactory(lake).create()
    table = (await session.sql("SELECT count(*) AS n FROM log_entries")).to_arrow_table()
    return int(table.column("n").to_pylist()[0])
