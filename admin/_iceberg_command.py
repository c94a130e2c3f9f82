"""``sirius iceberg``: where the Iceberg tables of the views are, and what they hold.

A thin command over ``sirius.lakehouse``: it resolves the lakehouse's PostgreSQL and object store
as the services do, then prints the SQL catalog's settings (what a reader's configuration needs)
and, per table, its snapshots, data files and rows. The password of the PostgreSQL URI is masked.
"""

from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urlsplit, urlunsplit

from ..lakehouse import IcebergConfig, LakehouseConfig, table_summaries

__all__ = ["iceberg_command", "masked_uri"]


def masked_uri(uri: str) -> str:
    """``uri`` with its password replaced by ``***``.

    >>> masked_uri("postgresql+psycopg2://me:secret@db:5432/lake")
    'postgresql+psycopg2://me:***@db:5432/lake'
    """
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


async def iceberg_command(args: argparse.Namespace) -> int:
    """Print the catalog settings and the tables; returns the exit code.

    Raises:
        ConfigurationError: the lakehouse settings are missing or malformed.
        IcebergError: the catalog cannot be read.
    """
    lake = LakehouseConfig.resolve(args.sql_connection_string, args.object_store_uri)
    config = IcebergConfig.resolve(lake.sql_connection_string, lake.object_store_uri)
    summaries = await asyncio.to_thread(table_summaries, config)
    print(f"catalog:   {config.catalog_name} (type sql)")
    print(f"uri:       {masked_uri(config.catalog_uri)}")
    print(f"warehouse: {config.warehouse}")
    print(f"namespace: {config.namespace}")
    if not summaries:
        print("no tables yet: the maintenance daemon publishes them after its passes (SIRIUS_ICEBERG=0 turns it off)")
        return 0
    width = max(len(s.identifier) for s in summaries)
    print(f"{'table':<{width}}  {'snapshots':>9}  {'files':>7}  {'rows':>12}")
    for s in summaries:
        print(f"{s.identifier:<{width}}  {s.snapshots:>9}  {s.data_files:>7}  {s.rows:>12,}")
    return 0
