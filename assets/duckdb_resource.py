"""The `duckdb` resource: dagster-duckdb's DuckDBResource on the warehouse, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from pipelines.storage.roots import parse_root
from pipelines.warehouse import warehouse


class WarehouseDuckDB(DuckDBResource):
    """DuckDBResource whose connections read the data root's files, as `warehouse.connect`'s
    do (in object storage, the store registered; a local root's views pointed at it)."""

    data_root: str

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as con:
            warehouse.attach(con, parse_root(self.data_root, {}))
            yield con


@dg.resource(
    required_resource_keys={"kis"},
    description="dagster-duckdb's DuckDBResource on the warehouse (KIS_WAREHOUSE; by default "
    "warehouse.duckdb in a local KIS_DATA_ROOT), read-only: an asset of yours queries the "
    "views with `duckdb: DuckDBResource` and `duckdb.get_connection()`.",
)
def warehouse_duckdb(context: dg.InitResourceContext) -> DuckDBResource:
    # the `kis` resource of the run, so the warehouse is the one the assets build
    settings = context.resources.kis.settings()
    return WarehouseDuckDB(
        database=str(settings.warehouse),
        data_root=str(settings.data_root),
        # never a writer's lock: the pipeline rebuilds the file and swaps it in meanwhile
        connection_config={"access_mode": "READ_ONLY"},
    )
