"""Partition administration behind the SQL admin functions, and its in-memory implementation.

The SQL surface (``list_partitions()``, ``list_view_sets()``, ``retire_partitions(…)``,
``materialize_partitions(…)``, ``regenerate_partitions(…)``, ``retire_partition_by_file(…)``,
``retire_partition_by_metadata(…)``) talks to the lakehouse through :class:`PartitionAdmin`.
The lakehouse's partition store implements it; :class:`InMemoryPartitionAdmin` keeps partition
rows in memory for tests and demos.

Long operations report progress through a :data:`LogSink`; the SQL functions turn each message
into a ``(time, msg)`` row, as Micromegas does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import pyarrow as pa

__all__ = [
    "LIST_PARTITIONS_SCHEMA",
    "LIST_VIEW_SETS_SCHEMA",
    "LOG_SCHEMA",
    "InMemoryPartitionAdmin",
    "LogSink",
    "PartitionAdmin",
    "PartitionRecord",
    "ViewSetRecord",
]

LogSink = Callable[[str], None]
"""Receives one progress message (``"retiring …"``) of a long admin operation."""

_TS = pa.timestamp("ns", tz="+00:00")

LOG_SCHEMA = pa.schema([pa.field("time", _TS, nullable=False), pa.field("msg", pa.utf8(), nullable=False)])
"""Rows of ``retire_partitions``/``materialize_partitions``/``regenerate_partitions``."""

LIST_PARTITIONS_SCHEMA = pa.schema(
    [
        pa.field("view_set_name", pa.utf8(), nullable=False),
        pa.field("view_instance_id", pa.utf8(), nullable=False),
        pa.field("begin_insert_time", _TS, nullable=False),
        pa.field("end_insert_time", _TS, nullable=False),
        pa.field("min_event_time", _TS),
        pa.field("max_event_time", _TS),
        pa.field("updated", _TS, nullable=False),
        pa.field("file_path", pa.utf8()),
        pa.field("file_size", pa.int64(), nullable=False),
        pa.field("file_schema_hash", pa.binary(), nullable=False),
        pa.field("source_data_hash", pa.binary(), nullable=False),
        pa.field("num_rows", pa.int64(), nullable=False),
        pa.field("partition_format_version", pa.int32(), nullable=False),
        pa.field("sort_order", pa.list_(pa.utf8())),
        pa.field("max_sort_key_time", _TS),
    ]
)
"""``list_partitions()`` (micromegas-query.md §9.1)."""

LIST_VIEW_SETS_SCHEMA = pa.schema(
    [
        pa.field("view_set_name", pa.utf8(), nullable=False),
        pa.field("current_schema_hash", pa.binary(), nullable=False),
        pa.field("schema", pa.utf8(), nullable=False),
        pa.field("has_view_maker", pa.bool_(), nullable=False),
        pa.field("global_instance_available", pa.bool_(), nullable=False),
    ]
)
"""``list_view_sets()`` (micromegas-query.md §9.1)."""


@runtime_checkable
class PartitionAdmin(Protocol):
    """What the SQL admin functions need from the lakehouse's partition store.

    Times are Unix nanoseconds (UTC). Every method may raise ``sirius.lakehouse.LakehouseError``;
    the SQL layer turns it into a query error (table functions) or an ``ERROR: …`` string
    (``retire_partition_by_*``, matching Micromegas).
    """

    async def list_partitions(self) -> pa.Table:
        """All partition rows, as a table of :data:`LIST_PARTITIONS_SCHEMA`."""
        ...

    async def list_view_sets(self) -> pa.Table:
        """One row per view set, as a table of :data:`LIST_VIEW_SETS_SCHEMA`."""
        ...

    async def retire_partitions(
        self, view_set: str, instance_id: str, begin_ns: int, end_ns: int, log: LogSink
    ) -> None:
        """Retire the partitions of one instance whose insert range lies in ``[begin, end)``."""
        ...

    async def materialize_partitions(
        self, view_set: str, begin_ns: int, end_ns: int, partition_delta_seconds: int, log: LogSink
    ) -> None:
        """Create (or bring up to date) the global partitions of ``view_set`` over ``[begin, end)``."""
        ...

    async def regenerate_partitions(
        self, view_set: str, begin_ns: int, end_ns: int, partition_delta_seconds: int, log: LogSink
    ) -> None:
        """Rebuild existing partitions from source, bypassing the freshness check."""
        ...

    async def retire_partition_by_file(self, file_path: str) -> str:
        """Retire the partition stored in ``file_path``; returns ``SUCCESS: …`` or ``ERROR: …``."""
        ...

    async def retire_partition_by_metadata(
        self, view_set: str, instance_id: str, begin_ns: int, end_ns: int, file_schema_hash: bytes | None
    ) -> str:
        """Retire the partition with exactly this identity; returns ``SUCCESS: …`` or ``ERROR: …``."""
        ...


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    """One ``lakehouse_partitions`` row as the in-memory admin keeps it (times in ns)."""

    view_set_name: str
    view_instance_id: str
    begin_insert_time: int
    end_insert_time: int
    min_event_time: int | None = None
    max_event_time: int | None = None
    updated: int = 0
    file_path: str | None = None
    file_size: int = 0
    file_schema_hash: bytes = b"\x00"
    source_data_hash: bytes = b"\x00" * 8
    num_rows: int = 0
    partition_format_version: int = 2
    sort_order: tuple[str, ...] | None = None
    max_sort_key_time: int | None = None


@dataclass(frozen=True, slots=True)
class ViewSetRecord:
    """One ``list_view_sets()`` row."""

    view_set_name: str
    current_schema_hash: bytes
    schema: str = ""
    has_view_maker: bool = False
    global_instance_available: bool = True


@dataclass
class InMemoryPartitionAdmin:
    """A :class:`PartitionAdmin` over partition rows held in memory.

    ``materialize_partitions`` adds one empty partition per ``partition_delta_seconds`` slice
    (skipping slices that already exist; a range is cut at ``clock()``, as the lakehouse cuts
    it at the present); ``retire_*`` remove rows. Good enough to exercise the
    SQL surface end to end.
    """

    partitions: list[PartitionRecord] = field(default_factory=list)
    view_sets: Sequence[ViewSetRecord] = ()
    clock: Callable[[], int] = time.time_ns

    async def list_partitions(self) -> pa.Table:
        """See :meth:`PartitionAdmin.list_partitions`."""
        rows = [
            {
                **{name: getattr(p, name) for name in LIST_PARTITIONS_SCHEMA.names},
                "sort_order": list(p.sort_order) if p.sort_order is not None else None,
            }
            for p in self.partitions
        ]
        return pa.Table.from_pylist(rows, schema=LIST_PARTITIONS_SCHEMA)

    async def list_view_sets(self) -> pa.Table:
        """See :meth:`PartitionAdmin.list_view_sets`."""
        rows = [{name: getattr(v, name) for name in LIST_VIEW_SETS_SCHEMA.names} for v in self.view_sets]
        return pa.Table.from_pylist(rows, schema=LIST_VIEW_SETS_SCHEMA)

    async def retire_partitions(
        self, view_set: str, instance_id: str, begin_ns: int, end_ns: int, log: LogSink
    ) -> None:
        """See :meth:`PartitionAdmin.retire_partitions`."""
        kept = []
        for p in self.partitions:
            if (
                p.view_set_name == view_set
                and p.view_instance_id == instance_id
                and p.begin_insert_time >= begin_ns
                and p.end_insert_time <= end_ns
            ):
                log(f"retiring partition {p.file_path or '(empty)'} [{p.begin_insert_time}, {p.end_insert_time})")
            else:
                kept.append(p)
        log(f"retired {len(self.partitions) - len(kept)} partition(s) of {view_set}/{instance_id}")
        self.partitions = kept

    async def materialize_partitions(
        self, view_set: str, begin_ns: int, end_ns: int, partition_delta_seconds: int, log: LogSink
    ) -> None:
        """See :meth:`PartitionAdmin.materialize_partitions`."""
        await self._materialize(view_set, begin_ns, end_ns, partition_delta_seconds, log, regenerate=False)

    async def regenerate_partitions(
        self, view_set: str, begin_ns: int, end_ns: int, partition_delta_seconds: int, log: LogSink
    ) -> None:
        """See :meth:`PartitionAdmin.regenerate_partitions`."""
        await self._materialize(view_set, begin_ns, end_ns, partition_delta_seconds, log, regenerate=True)

    async def _materialize(
        self, view_set: str, begin_ns: int, end_ns: int, delta_seconds: int, log: LogSink, *, regenerate: bool
    ) -> None:
        if delta_seconds <= 0:
            msg = "partition_delta_seconds must be positive"
            raise ValueError(msg)
        if end_ns <= begin_ns:
            msg = "the end of the range must be after its begin"
            raise ValueError(msg)
        known = {v.view_set_name: v for v in self.view_sets}
        if view_set not in known:
            msg = f"unknown view set {view_set!r}"
            raise ValueError(msg)
        now = self.clock()
        if begin_ns >= now:
            log(f"{view_set}: the range begins after the present ({now}): nothing to materialize")
            return
        if end_ns > now:
            log(
                f"{view_set}: the range ends at {end_ns}, after the present ({now}): "
                "materialized up to the present only"
            )
            end_ns = now
        step = delta_seconds * 1_000_000_000
        existing = {
            (p.view_set_name, p.view_instance_id, p.begin_insert_time, p.end_insert_time) for p in self.partitions
        }
        start = begin_ns
        while start < end_ns:
            stop = min(start + step, end_ns)
            key = (view_set, "global", start, stop)
            if key in existing and not regenerate:
                log(f"partition [{start}, {stop}) of {view_set} is up to date")
            else:
                self.partitions = [
                    p
                    for p in self.partitions
                    if (p.view_set_name, p.view_instance_id, p.begin_insert_time, p.end_insert_time) != key
                ]
                self.partitions.append(
                    PartitionRecord(
                        view_set,
                        "global",
                        start,
                        stop,
                        updated=self.clock(),
                        file_schema_hash=known[view_set].current_schema_hash,
                    )
                )
                log(f"{'regenerated' if regenerate else 'materialized'} partition [{start}, {stop}) of {view_set}")
            start = stop

    async def retire_partition_by_file(self, file_path: str) -> str:
        """See :meth:`PartitionAdmin.retire_partition_by_file`."""
        kept = [p for p in self.partitions if p.file_path != file_path]
        if len(kept) == len(self.partitions):
            return f"ERROR: no partition with file {file_path}"
        self.partitions = kept
        return f"SUCCESS: retired partition {file_path}"

    async def retire_partition_by_metadata(
        self, view_set: str, instance_id: str, begin_ns: int, end_ns: int, file_schema_hash: bytes | None
    ) -> str:
        """See :meth:`PartitionAdmin.retire_partition_by_metadata`."""

        def matches(p: PartitionRecord) -> bool:
            return (p.view_set_name, p.view_instance_id, p.begin_insert_time, p.end_insert_time) == (
                view_set,
                instance_id,
                begin_ns,
                end_ns,
            ) and (file_schema_hash is None or p.file_schema_hash == file_schema_hash)

        kept = [p for p in self.partitions if not matches(p)]
        if len(kept) == len(self.partitions):
            return f"ERROR: no partition {view_set}/{instance_id} [{begin_ns}, {end_ns})"
        removed = len(self.partitions) - len(kept)
        self.partitions = kept
        return f"SUCCESS: retired {removed} partition(s) {view_set}/{instance_id} [{begin_ns}, {end_ns})"

    def with_partitions(self, partitions: Sequence[PartitionRecord]) -> InMemoryPartitionAdmin:
        """Return a copy holding ``partitions`` (handy in tests)."""
        return replace(self, partitions=list(partitions))
