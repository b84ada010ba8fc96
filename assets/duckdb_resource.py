"""The `duckdb` resource: dagster-duckdb's DuckDBResource on the warehouse, read-only."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
from dagster import InitResourceContext
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from assets.resources import KisResource
from pipelines.settings import Settings
from pipelines.warehouse import warehouse


class WarehouseDuckDB(DuckDBResource):
    """dagster-duckdb's DuckDBResource on the warehouse (KIS_WAREHOUSE; by default
    warehouse.duckdb in a local KIS_DATA_ROOT), read-only: an asset of yours queries the views
    with `duckdb: DuckDBResource` and `duckdb.get_connection()`. Its connections read the data
    root's files as `warehouse.connect`'s do (in object storage, the store registered; a local
    root's views pointed at it)."""

    database: str = Field(
        default="", description="the DuckDB file; empty: the warehouse of the kis settings"
    )
    data_root: str | None = Field(
        default=None, description="data directory or s3://bucket/prefix; unset: KIS_DATA_ROOT"
    )
    # never a writer's lock: the pipeline rebuilds the file and swaps it in meanwhile
    connection_config: dict[str, Any] = Field(
        default_factory=lambda: {"access_mode": "READ_ONLY"},
        description="DuckDB connection options (read-only by default)",
    )

    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._settings = self.settings()

    def settings(self) -> Settings:
        """The settings as the `kis` resource reads them, with the same data root."""
        if self._settings is None:
            self._settings = KisResource(data_root=self.data_root).settings()
        return self._settings

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        settings = self.settings()
        at = DuckDBResource(
            database=self.database or str(settings.warehouse),
            connection_config=self.connection_config,
        )
        with at.get_connection() as con:
            warehouse.attach(con, settings.data_root)
            yield con
