"""SQL functions registered in every DataFusion session (property_get, jsonb_*, histograms, …).

Owned by the SQL-surface work; the session factory calls ``register_sql_functions`` once per
session it builds.
"""

from __future__ import annotations

from typing import Any


def register_sql_functions(ctx: Any, **context: Any) -> None:
    """Register Sirius's scalar, aggregate and table functions on ``ctx``.

    Args:
        ctx: a ``datafusion.SessionContext``.
        **context: what some functions need (the lakehouse, the query range, the caller's rights).
    """
    del ctx, context
