# my_assets.py: assets of your own, on the day's rows (pandas) and on the views (SQL).
# Copy this file to the repository root (`cp examples/my_assets.py my_assets.py`; git ignores
# it there): pipelines/definitions.py registers every asset in it, and they show in the UI
# beside the pipeline's own (`dg list defs` lists them).
from datetime import date

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.partitions import daily_partitions
from pipelines import frames

# the pipeline's backfill policy: a range of days is one run (Dagster warns about a mix)
ONE_RUN = dg.BackfillPolicy.single_run()


@dg.asset(partitions_def=daily_partitions, backfill_policy=ONE_RUN)
def market_value_by_account(asset_categories: pd.DataFrame) -> pd.DataFrame:
    """Each account's market value on the day by asset class, summed exactly (Decimal)."""
    categories = asset_categories[~asset_categories["is_total"]]
    return categories.groupby(["account_id", "asset_class"], as_index=False)["evlu_amt"].sum()


@dg.asset(partitions_def=daily_partitions, backfill_policy=ONE_RUN, deps=["warehouse_views"])
def net_assets_to_date(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> pd.DataFrame:
    """Every account's net assets up to the day, from the net_asset_history view."""
    with duckdb.get_connection() as con:
        result = con.execute(
            "SELECT snapshot_date, account_id, net_assets FROM net_asset_history "
            "WHERE snapshot_date <= ? ORDER BY ALL",
            [date.fromisoformat(context.partition_key)],
        )
        # through Arrow: DuckDB's .df() would turn every DECIMAL into float64
        return frames.from_arrow(result.to_arrow_table())
