"""Audience ownership of processes: the stamp on what a writer registers, and the check on what it appends to.

Every process, stream and block a writer stores is its credential's audience's
(``sirius.identity.write_audience``): ingestion stamps ``micromegas.audience`` on the process and
stream rows from the credential, never from the client (client ``micromegas.*`` properties are
dropped by the data lake). A block has no properties of its own: it is its process's, and the
check below keeps every block of a process in that process's audience.

The first ``insert_process`` of an id fixes its audience. Afterwards, a writer of another
audience (a credential bound to another audience, or one bound to none for a stamped process, or
the reverse) may neither register that id again, nor add a stream or a block to it: the request
is refused with 403 and stores nothing. Micromegas refuses the re-registration but still lets
``insert_stream``/``insert_block`` append to another audience's process (its "Stage 5b" gap);
Sirius closes it here, for the native routes and the OTLP writer alike.

A process's audience never changes once written, so the answers are cached (bounded LRU): a
busy producer costs no extra query per block.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

from ..lakehouse import DataLake
from ..tracing import ProcessInfo
from ._exceptions import AudienceOwnershipError

__all__ = ["ProcessOwnership"]

_UNKNOWN = object()


def _describe(audience: str | None) -> str:
    return f"audience {audience!r}" if audience is not None else "no audience"


class ProcessOwnership:
    """Stamps and checks the audience of processes on behalf of writers.

    Args:
        lake: the data lake holding the process rows.
        cache_size: how many processes' audiences to remember.
    """

    def __init__(self, lake: DataLake, cache_size: int = 10_000) -> None:
        self._lake = lake
        self._size = cache_size
        self._audiences: OrderedDict[uuid.UUID, str | None] = OrderedDict()

    async def register(self, info: ProcessInfo, audience: str | None) -> bool:
        """Insert the process stamped with ``audience``; True when this call created it.

        Raises:
            AudienceOwnershipError: the process exists in another audience (nothing is changed).
            LakehouseError: PostgreSQL failed.
        """
        cached = self._cached(info.process_id)
        if cached is not _UNKNOWN:
            self._require(info.process_id, cached, audience)
            return False
        created = await self._lake.insert_process(info, audience)
        if created:
            self._remember(info.process_id, audience)
            return True
        await self.check(info.process_id, audience)
        return False

    async def check(self, process_id: uuid.UUID, audience: str | None) -> bool:
        """Whether the process exists; raises when it belongs to another audience than ``audience``.

        Raises:
            AudienceOwnershipError: it does.
            LakehouseError: PostgreSQL failed.
        """
        stamp = self._cached(process_id)
        if stamp is _UNKNOWN:
            exists, found = await self._lake.process_audience(process_id)
            if not exists:
                return False
            self._remember(process_id, found)
            stamp = found
        self._require(process_id, stamp, audience)
        return True

    @staticmethod
    def _require(process_id: uuid.UUID, stamp: object, audience: str | None) -> None:
        if stamp != audience:
            # The process's own audience is not named: a writer learns nothing about other tenants.
            msg = (
                f"process {process_id} belongs to another audience: a credential of {_describe(audience)} "
                "may not write to it"
            )
            raise AudienceOwnershipError(msg)

    def _cached(self, process_id: uuid.UUID) -> object:
        if process_id not in self._audiences:
            return _UNKNOWN
        self._audiences.move_to_end(process_id)
        return self._audiences[process_id]

    def _remember(self, process_id: uuid.UUID, audience: str | None) -> None:
        self._audiences[process_id] = audience
        if len(self._audiences) > self._size:
            self._audiences.popitem(last=False)
