"""A ``log_entries`` view whose build waits until the test releases it, so a test can stop a
daemon pass in the middle (kill it, or run a second daemon while the first holds its lease)."""

from __future__ import annotations

import asyncio
from typing import Any

from sirius.lakehouse.views import LogEntriesView

__all__ = ["HeldLogEntries"]


class HeldLogEntries(LogEntriesView):
    """log_entries whose build sets ``entered`` and then waits for ``release``."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def build(self, lake: Any, instance: str, insert_range: Any) -> Any:
        self.entered.set()
        await self.release.wait()
        return await super().build(lake, instance, insert_range)
