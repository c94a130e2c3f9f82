"""Planning SQL read-only: no DDL (``CREATE EXTERNAL TABLE``), no DML (``COPY … TO``, ``INSERT``), no ``SET``.

``SessionContext.sql`` runs DDL and statements while planning and plans DML that writes files.
A caller's SQL (and every query Sirius builds around it) is planned with
:func:`read_only_sql` instead, so no statement can read a server file as a table, write one, or
change the session's settings: the lake's views are the only data a query reaches. Sirius's own
DDL (``CREATE MATERIALIZED VIEW``) is parsed by Sirius before DataFusion sees the text.
"""

from __future__ import annotations

import datafusion
from datafusion import SQLOptions

__all__ = ["read_only_sql"]


def _options() -> SQLOptions:
    return SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


def read_only_sql(ctx: datafusion.SessionContext, sql: str) -> datafusion.DataFrame:
    """``ctx.sql(sql)`` refusing DDL, DML and statements (DataFusion's planning error names them).

    Raises:
        Exception: DataFusion's planning error (``DDL not supported: CreateExternalTable``, …).
    """
    return ctx.sql_with_options(sql, _options())
