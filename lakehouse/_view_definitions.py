"""Stored view-set definitions: the rows of ``lakehouse_view_set_definitions`` (lakehouse v10).

A definition is what ``CREATE [OR REPLACE] MATERIALIZED VIEW name WITH (...)`` says
(``_view_ddl.py`` parses it): the three queries, the update group, the other options (JSON text
in ``view_options``) and the statement verbatim (``definition_sql``, for display only). This
module reads and writes those rows; ``list_view_set_definitions()`` shows them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

import asyncpg
import pyarrow as pa

from ._pool import pg_errors

__all__ = [
    "LIST_VIEW_SET_DEFINITIONS_SCHEMA",
    "StoredDefinition",
    "ViewDefinition",
    "ViewOptions",
    "definitions_table",
    "delete_definition",
    "list_definitions",
    "upsert_definition",
]

LIST_VIEW_SET_DEFINITIONS_SCHEMA = pa.schema(
    [
        pa.field("view_set_name", pa.utf8(), nullable=False),
        pa.field("definition_sql", pa.utf8(), nullable=False),
        pa.field("update_group", pa.int32(), nullable=False),
        pa.field("updated_at", pa.timestamp("ns", tz="+00:00"), nullable=False),
        pa.field("updated_by", pa.utf8()),
    ]
)
"""Columns of ``list_view_set_definitions()`` (what the 0.32 ``micromegas-views`` CLI reads)."""


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """The options of a definition other than its queries and update group (``view_options``)."""

    min_time_column: str
    max_time_column: str
    source_partition_delta: str = "1 day"
    merge_partition_delta: str = "1 day"
    merge_sort_order: tuple[str, ...] | None = None

    def to_json(self) -> str:
        """JSON text as stored in ``view_options``."""
        data = asdict(self)
        data["merge_sort_order"] = list(self.merge_sort_order) if self.merge_sort_order else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, default_time_column: str = "time") -> ViewOptions:
        """Options from ``view_options`` text (missing keys take their defaults)."""
        data = json.loads(text or "{}")
        order = data.get("merge_sort_order")
        source = str(data.get("source_partition_delta") or "1 day")
        return cls(
            min_time_column=str(data.get("min_time_column") or default_time_column),
            max_time_column=str(data.get("max_time_column") or default_time_column),
            source_partition_delta=source,
            merge_partition_delta=str(data.get("merge_partition_delta") or source),
            merge_sort_order=tuple(order) if order else None,
        )


@dataclass(frozen=True, slots=True)
class ViewDefinition:
    """A materialised view set as its DDL defines it."""

    view_set_name: str
    extract_query: str
    count_src_query: str
    merge_partitions_query: str
    update_group: int
    options: ViewOptions
    definition_sql: str = ""


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """A definition with its row's bookkeeping columns."""

    definition: ViewDefinition
    updated_at: datetime
    updated_by: str | None = field(default=None)


_COLUMNS = (
    "view_set_name, definition_sql, extract_query, count_src_query, merge_partitions_query,"
    " update_group, view_options, updated_at, updated_by"
)


def _stored(row: asyncpg.Record) -> StoredDefinition:
    definition = ViewDefinition(
        view_set_name=row["view_set_name"],
        extract_query=row["extract_query"],
        count_src_query=row["count_src_query"],
        merge_partitions_query=row["merge_partitions_query"],
        update_group=int(row["update_group"]),
        options=ViewOptions.from_json(row["view_options"]),
        definition_sql=row["definition_sql"],
    )
    return StoredDefinition(definition, row["updated_at"], row["updated_by"])


async def list_definitions(conn: asyncpg.Pool | asyncpg.Connection) -> list[StoredDefinition]:
    """Every stored definition, ordered by ``(update_group, view_set_name)``.

    Raises:
        MetadataStoreError: PostgreSQL failed (or the schema is older than v10).
    """
    with pg_errors("reading view set definitions"):
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM lakehouse_view_set_definitions"  # noqa: S608 - constant column list
            " ORDER BY update_group, view_set_name"
        )
    return [_stored(r) for r in rows]


def definitions_table(stored: list[StoredDefinition]) -> pa.Table:
    """The rows of ``list_view_set_definitions()``."""
    return pa.table(
        {
            "view_set_name": [s.definition.view_set_name for s in stored],
            "definition_sql": [s.definition.definition_sql for s in stored],
            "update_group": pa.array([s.definition.update_group for s in stored], pa.int32()),
            "updated_at": pa.array([s.updated_at for s in stored], pa.timestamp("us", tz="UTC")).cast(
                pa.timestamp("ns", tz="+00:00")
            ),
            "updated_by": pa.array([s.updated_by for s in stored], pa.utf8()),
        },
        schema=LIST_VIEW_SET_DEFINITIONS_SCHEMA,
    )


async def upsert_definition(conn: asyncpg.Connection, definition: ViewDefinition, updated_by: str | None) -> None:
    """Insert or replace the row of ``definition`` (``updated_at`` set to now either way)."""
    with pg_errors(f"storing view set definition {definition.view_set_name}"):
        await conn.execute(
            "INSERT INTO lakehouse_view_set_definitions (view_set_name, definition_sql, extract_query,"
            " count_src_query, merge_partitions_query, update_group, view_options, updated_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (view_set_name) DO UPDATE SET definition_sql = EXCLUDED.definition_sql,"
            " extract_query = EXCLUDED.extract_query, count_src_query = EXCLUDED.count_src_query,"
            " merge_partitions_query = EXCLUDED.merge_partitions_query, update_group = EXCLUDED.update_group,"
            " view_options = EXCLUDED.view_options, updated_at = now(), updated_by = EXCLUDED.updated_by",
            definition.view_set_name,
            definition.definition_sql,
            definition.extract_query,
            definition.count_src_query,
            definition.merge_partitions_query,
            definition.update_group,
            definition.options.to_json(),
            updated_by,
        )


async def delete_definition(conn: asyncpg.Connection, name: str) -> bool:
    """Delete the row of ``name``; False when there was none."""
    with pg_errors(f"deleting view set definition {name}"):
        deleted = await conn.fetchval(
            "DELETE FROM lakehouse_view_set_definitions WHERE view_set_name = $1 RETURNING view_set_name", name
        )
    return deleted is not None
