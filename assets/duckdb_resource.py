"""The `duckdb` resource: dagster-duckdb's DuckDBResource on the warehouse, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from pipelines.storage.roots import open_root, parse_root


class WarehouseDuckDB(DuckDBResource):
    """DuckDBResource whose connections can read the data root's files (in object storage,
    the store is registered on each connection, as `warehouse.connect` does)."""

    data_root: str

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as con:
            open_root(parse_root(self.data_root, {})).attach(con)
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
