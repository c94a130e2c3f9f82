"""A maintenance daemon, in its own process, that pauses inside a pass for a test to kill it.

``python stuck_daemon.py DSN OBJECT_STORE_URI PASS_KIND SCHEDULED_ISO`` runs that one pass with a
``log_entries`` view whose build never returns: the pass has taken its lease and committed the
views of the first update group (``blocks``) when it prints ``paused`` and waits forever.
The pause is injected here (the view), so the test kills a daemon that is mid-pass by
construction, without sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any

from sirius.lakehouse import Lakehouse, MaintenanceDaemon, PassKind, create_pool, open_object_store
from sirius.lakehouse.views import LogEntriesView, default_view_sets

APPLICATION_NAME = "stuck-daemon"


class _PausedLogEntries(LogEntriesView):
    async def build(self, lake: Any, instance: str, insert_range: Any) -> Any:
        del lake, instance, insert_range
        print("paused", flush=True)
        await asyncio.Event().wait()  # until the process is killed
        raise AssertionError("unreachable")


async def _main(dsn: str, uri: str, kind: str, scheduled: str) -> None:
    pool = await create_pool(dsn, application_name=APPLICATION_NAME)
    lake = Lakehouse(pool, open_object_store(uri), views=default_view_sets().with_view(_PausedLogEntries()))
    report = await MaintenanceDaemon(lake).run_pass(PassKind(kind), dt.datetime.fromisoformat(scheduled))
    print(f"pass ended: {report.summary()}", flush=True)  # only if it could not take the lease


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:5]))
