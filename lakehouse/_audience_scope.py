"""Audiences on the read side: which processes a query may see, and the one filter that applies it.

Every process carries its audience in the reserved property ``micromegas.audience``, written by
ingestion from the writer's credential (never from the client). A caller reads through a
:class:`ReadScope`: ``audiences=None`` sees everything (admins, authentication off, the daemon);
otherwise it sees the processes whose audience is one of its audiences, a process without the
property counting as ``unstamped_audience`` (``MICROMEGAS_UNSTAMPED_AUDIENCE``, default
``public``; empty = such processes are invisible to restricted callers), as in Micromegas.

A query session resolves the scope once, in PostgreSQL (the origin of the property: no
dependence on the daemon having materialised the ``processes`` view), into a
:class:`SessionAudience` holding the visible process ids. A process's audience never changes, so
:class:`VisibleProcesses` remembers each scope's ids and later sessions read only the processes
inserted since (by ``insert_time``, with an overlap for clock skew and commits in flight), with a
full scan every ten minutes to forget processes deleted by retention. The session then restricts every table
it registers (:meth:`SessionAudience.restrict`): the rows are semi-joined on ``process_id`` with
the visible processes (rows, not partitions: a global partition holds every audience's rows); a
view without ``process_id`` but with ``stream_id`` is joined on the visible processes' streams;
a view with neither (a DDL view aggregating across processes) is empty for a restricted caller.
``view_instance`` of an invisible process or stream is empty without any JIT work, and the
functions that take an id (``parse_block``, ``get_payload``, ``list_partitions``) ask the same
object. Denied and nonexistent ids answer alike, so a caller cannot probe other audiences' ids.
"""

from __future__ import annotations

import os
import re
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import datafusion
import pyarrow as pa
from datafusion import lit

from ._datalake import AUDIENCE_OF_ROW as _AUDIENCE_OF
from ._datalake import AUDIENCE_PROPERTY
from ._environment_variables import MICROMEGAS_UNSTAMPED_AUDIENCE
from ._exceptions import ConfigurationError
from ._pool import pg_errors
from ._view_set import GLOBAL_INSTANCE, InstanceKind, ViewSet

__all__ = [
    "AUDIENCE_PROPERTY",
    "PUBLIC_AUDIENCE",
    "ReadScope",
    "SessionAudience",
    "VisibleProcesses",
    "audience_of_session",
    "forget_audience_of_session",
    "unstamped_audience_from_env",
]

PUBLIC_AUDIENCE = "public"
"""The audience every authenticated principal reads (Micromegas's one built-in grant)."""

_AUDIENCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_VISIBLE_COLUMN = "__sirius_visible_id"


def unstamped_audience_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``MICROMEGAS_UNSTAMPED_AUDIENCE``: unset means ``public``, empty means none (fail closed).

    Raises:
        ConfigurationError: the value is not an audience name (letters, digits, ``_``, ``-``).
    """
    env = os.environ if environ is None else environ
    value = env.get(MICROMEGAS_UNSTAMPED_AUDIENCE)
    if value is None:
        return PUBLIC_AUDIENCE
    value = value.strip()
    if not value:
        return None
    if not _AUDIENCE_NAME.match(value):
        msg = f"{MICROMEGAS_UNSTAMPED_AUDIENCE}={value!r}: an audience is letters, digits, '_' or '-'"
        raise ConfigurationError(msg)
    return value


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What a caller may read.

    Attributes:
        audiences: the audiences whose processes it sees; None for every process.
        unstamped_audience: the audience of processes written without one (None: nobody's).
    """

    audiences: frozenset[str] | None = None
    unstamped_audience: str | None = PUBLIC_AUDIENCE

    @property
    def restricted(self) -> bool:
        """True when some processes may be hidden from this caller."""
        return self.audiences is not None

    def sees(self, audience: str | None) -> bool:
        """Whether a process stamped ``audience`` (None: unstamped) is visible."""
        if self.audiences is None:
            return True
        effective = audience if audience is not None else self.unstamped_audience
        return effective is not None and effective in self.audiences


_VISIBLE_SQL = f"SELECT process_id::text AS id FROM processes WHERE COALESCE({_AUDIENCE_OF}, $2) = ANY($1::text[])"  # noqa: S608


@dataclass(frozen=True, slots=True)
class _Known:
    ids: frozenset[str]
    since: datetime
    full_at: float


class VisibleProcesses:
    """The visible process ids of each read scope, kept current incrementally.

    Args:
        overlap: how far before the last scan the next one looks again (ingesting hosts' clock
            skew, inserts committed after the scan began).
        rescan_seconds: how often a scope is scanned in full (drops processes retention deleted).
        max_scopes: scopes remembered (least recently scanned forgotten first).
    """

    def __init__(
        self,
        *,
        overlap: timedelta = timedelta(minutes=5),
        rescan_seconds: float = 600.0,
        max_scopes: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overlap = overlap
        self._rescan = rescan_seconds
        self._max = max_scopes
        self._clock = clock
        self._known: OrderedDict[tuple[frozenset[str], str | None], _Known] = OrderedDict()

    async def of(self, pool: asyncpg.Pool, scope: ReadScope) -> frozenset[str]:
        """The process ids ``scope`` sees (it must be restricted).

        Raises:
            MetadataStoreError: PostgreSQL failed.
        """
        assert scope.audiences is not None  # noqa: S101 - callers pass restricted scopes only
        key = (scope.audiences, scope.unstamped_audience)
        known = self._known.get(key)
        full = known is None or self._clock() - known.full_at > self._rescan
        args = (sorted(scope.audiences), scope.unstamped_audience)
        with pg_errors("resolving the audiences of the query's caller"):
            now = await pool.fetchval("SELECT now()")  # before the scan: what it misses is newer
            if full:
                rows = await pool.fetch(_VISIBLE_SQL, *args)
            else:
                rows = await pool.fetch(_VISIBLE_SQL + " AND insert_time >= $3", *args, known.since)
        found = frozenset(r["id"] for r in rows)
        ids = found if full or known is None else known.ids | found
        full_at = self._clock() if full or known is None else known.full_at
        self._known[key] = _Known(ids, now - self._overlap, full_at)
        self._known.move_to_end(key)
        while len(self._known) > self._max:
            self._known.popitem(last=False)
        return ids


_SESSIONS: weakref.WeakKeyDictionary[datafusion.SessionContext, SessionAudience] = weakref.WeakKeyDictionary()


def audience_of_session(ctx: datafusion.SessionContext) -> SessionAudience | None:
    """The restriction of a query session's context; None when it sees everything."""
    return _SESSIONS.get(ctx)


def forget_audience_of_session(ctx: datafusion.SessionContext) -> None:
    """Drop the restriction of ``ctx``'s finished session (the context may serve another session)."""
    _SESSIONS.pop(ctx, None)


class SessionAudience:
    """The processes one restricted query session may see, resolved once in PostgreSQL.

    Build it with :meth:`resolve`; it remembers the context it restricts
    (:func:`audience_of_session`), so the table functions and UDFs of that context find it.
    """

    def __init__(self, pool: asyncpg.Pool, scope: ReadScope, process_ids: frozenset[str]) -> None:
        self._pool = pool
        self.scope = scope
        self.process_ids = process_ids
        """Visible process ids (canonical lower-case UUID text)."""
        self._stream_ids: frozenset[str] | None = None
        self._frames: dict[str, datafusion.DataFrame] = {}

    @classmethod
    async def resolve(
        cls,
        pool: asyncpg.Pool,
        scope: ReadScope,
        ctx: datafusion.SessionContext,
        visible: VisibleProcesses | None = None,
    ) -> SessionAudience | None:
        """The visible processes of ``scope`` for the session ``ctx``; None when unrestricted.

        ``visible`` remembers scopes between sessions (None: a full scan).

        Raises:
            MetadataStoreError: PostgreSQL failed.
        """
        if scope.audiences is None:
            _SESSIONS.pop(ctx, None)  # a reused context: no earlier session's restriction stays
            return None
        audience = cls(pool, scope, await (visible or VisibleProcesses()).of(pool, scope))
        _SESSIONS[ctx] = audience
        return audience

    async def stream_ids(self) -> frozenset[str]:
        """Streams of the visible processes (loaded at first use)."""
        if self._stream_ids is None:
            with pg_errors("resolving the streams of the query's caller"):
                rows = await self._pool.fetch(
                    "SELECT stream_id::text AS id FROM streams WHERE process_id::text = ANY($1::text[])",
                    sorted(self.process_ids),
                )
            self._stream_ids = frozenset(r["id"] for r in rows)
        return self._stream_ids

    def sees_process(self, process_id: object) -> bool:
        """Whether ``process_id`` (UUID or text) is a visible process."""
        return _canonical(process_id) in self.process_ids

    async def sees_stream(self, stream_id: object) -> bool:
        """Whether ``stream_id`` is a stream of a visible process."""
        return _canonical(stream_id) in await self.stream_ids()

    async def sees_instance(self, view: ViewSet, instance: str) -> bool:
        """Whether ``view_instance(view, instance)`` may show rows (``global`` is always filtered)."""
        if instance == GLOBAL_INSTANCE:
            return True
        if view.jit_instance is InstanceKind.STREAM:
            return await self.sees_stream(instance)
        return self.sees_process(instance)

    async def restrict(
        self, ctx: datafusion.SessionContext, view: ViewSet, frame: datafusion.DataFrame
    ) -> datafusion.DataFrame:
        """``frame`` (rows of ``view``) without the rows of processes this caller may not see."""
        names = view.schema.names
        if "process_id" in names:
            return frame.join(self._visible(ctx, "process", self.process_ids), **_semi("process_id"))
        if "stream_id" in names:
            streams = await self.stream_ids()
            return frame.join(self._visible(ctx, "stream", streams), **_semi("stream_id"))
        return frame.filter(lit(False))  # rows of no identifiable process: nobody's to see

    def _visible(self, ctx: datafusion.SessionContext, kind: str, ids: frozenset[str]) -> datafusion.DataFrame:
        frame = self._frames.get(kind)
        if frame is None:
            table = pa.table({_VISIBLE_COLUMN: pa.array(sorted(ids), pa.utf8())})
            frame = self._frames[kind] = ctx.from_arrow(table)
        return frame

    async def filter_partitions(self, table: pa.Table) -> pa.Table:
        """``list_partitions()`` rows of visible instances only (global partitions hold everyone's rows)."""
        visible = self.process_ids | await self.stream_ids()
        ids = table.column("view_instance_id").to_pylist()
        keep = [i for i, ident in enumerate(ids) if ident in visible]
        return table.take(pa.array(keep, pa.int64()))


def _semi(column: str) -> dict[str, str]:
    return {"left_on": column, "right_on": _VISIBLE_COLUMN, "how": "semi"}


def _canonical(value: object) -> str | None:
    """A UUID's canonical text, or None for anything that is not one."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        return None
