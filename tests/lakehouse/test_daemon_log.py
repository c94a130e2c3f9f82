"""The maintenance daemon's console line per pass: INFO when it wrote something, DEBUG when idle."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sirius.lakehouse import MaintenanceDaemon, PassKind

DAEMON_LOGGER = "sirius.lakehouse._maintenance_daemon"


def test_one_summary_line_per_pass(local_lake_env: Any, caplog) -> None:
    async def scenario(h: Any) -> None:
        await h.sample(at_second=10.25)
        daemon = MaintenanceDaemon(h.lake)
        at = dt.datetime.fromtimestamp(h.T0_NS / 1e9, dt.UTC)
        with caplog.at_level(logging.DEBUG, logger=DAEMON_LOGGER):
            busy = await daemon.run_pass(PassKind.SECOND, at + dt.timedelta(seconds=12.5))
            idle = await daemon.run_pass(PassKind.SECOND, at + dt.timedelta(seconds=30.5))
        lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == DAEMON_LOGGER]
        assert len(lines) == 2
        (busy_level, busy_line), (idle_level, idle_line) = lines
        rows = sum(r.partition.num_rows for r in busy.written if r.partition is not None)
        assert busy_level == logging.INFO
        assert busy_line.startswith("second pass over ")
        assert f"{len(busy.written)} partition(s) written (" in busy_line
        assert "log_entries" in busy_line
        assert f"{rows:,} rows" in busy_line
        assert busy_line.endswith(f"{busy.elapsed_seconds:.3f} s")
        assert rows > 0
        assert idle_level == logging.DEBUG
        assert ": nothing new, " in idle_line
        assert not idle.written

    local_lake_env(scenario)
