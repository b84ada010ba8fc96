"""The `duckdb` resource: dagster-duckdb's DuckDBResource on the warehouse, read-only."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipelines.balance import warehouse


@dg.resource(
    required_resource_keys={"kis"},
    description="dagster-duckdb's DuckDBResource on warehouse.duckdb in the kis resource's data "
    "root (KIS_DATA_ROOT), read-only: an asset of yours queries the views with "
    "`duckdb: DuckDBResource` and `duckdb.get_connection()`.",
)
def warehouse_duckdb(context: dg.InitResourceContext) -> DuckDBResource:
    # the `kis` resource of the run, so the warehouse is the one the assets build
    data_root = context.resources.kis.settings().data_root
    return DuckDBResource(
        database=str(data_root / warehouse.FILE_NAME),
        # never a writer's lock: the pipeline rebuilds the file and swaps it in meanwhile
        connection_config={"access_mode": "READ_ONLY"},
    )
