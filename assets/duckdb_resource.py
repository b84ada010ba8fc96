"""The `duckdb` resource: dagster-duckdb's DuckDBResource on the warehouse, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from assets.resources import KisResource
from pipelines.warehouse import warehouse


class WarehouseDuckDB(DuckDBResource):
    """dagster-duckdb's DuckDBResource on the warehouse (KIS_WAREHOUSE; by default
    warehouse.duckdb in a local KIS_DATA_ROOT), read-only: an asset of yours queries the views
    with `duckdb: DuckDBResource` and `duckdb.get_connection()`. Its connections read the data
    root's files as `warehouse.connect`'s do (in object storage, the store registered; a local
    root's views pointed at it)."""

    kis: KisResource
    database: str = Field(
        default="",
        description="the DuckDB file; empty: the kis resource's warehouse (KIS_WAREHOUSE)",
    )
    # never a writer's lock: the pipeline rebuilds the file and swaps it in meanwhile
    connection_config: dict[str, Any] = Field(
        default_factory=lambda: {"access_mode": "READ_ONLY"},
        description="DuckDB connection options (read-only by default)",
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        settings = self.kis.settings()
        at = DuckDBResource(
            database=self.database or str(settings.warehouse),
            connection_config=self.connection_config,
        )
        with at.get_connection() as con:
            warehouse.attach(con, settings.data_root)
            yield con
