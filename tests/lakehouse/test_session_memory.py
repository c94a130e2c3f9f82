"""The per-query memory pool reaches the DataFusion runtime of lakehouse sessions."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from sirius.lakehouse import SessionFactory

ROWS = pa.table({"k": [str(i) for i in range(200_000)]})
SQL = "SELECT k, count(*) FROM big GROUP BY k"


def test_memory_limit_fails_a_query_that_needs_more(local_lake_env: Any) -> None:
    async def scenario(h: Any) -> None:
        factory = SessionFactory(h.lake)
        unbounded = await factory.create()
        unbounded.ctx.register_record_batches("big", [ROWS.to_batches()])
        assert (await unbounded.sql(SQL)).to_arrow_table().num_rows == ROWS.num_rows
        bounded = await factory.create(memory_limit_bytes=64 * 1024)
        bounded.ctx.register_record_batches("big", [ROWS.to_batches()])
        with pytest.raises(Exception, match="Resources exhausted"):
            (await bounded.sql(SQL)).to_arrow_table()

    local_lake_env(scenario)
