"""The IO manager of `asset_categories` and `account_summary`: the tables as pandas DataFrames.

`balance_tables` writes its own Parquet files and returns MaterializeResults, which skip
`handle_output`; this IO manager only loads, so an asset of yours can take
`asset_categories: pd.DataFrame`. One partition loads as a DataFrame; several (a range, or an
unpartitioned asset downstream) as a dict of DataFrames keyed by partition, as Dagster's own
file IO managers do.
"""

import os
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from pipelines.settings import data_root_from_env
from pipelines.storage.roots import DataRoot

#: The resource key the tables' specs name.
KEY = "parquet_tables"


class ParquetTablesIOManager(dg.ConfigurableIOManager):
    """Loads asset_categories and account_summary from their Parquet files
    (`parquet/<table>/snapshot_date=…/data.parquet` under the data root the assets write to)
    as Arrow-backed DataFrames: exact decimal amounts, `snapshot_date` a date column (from the
    partition).

    A missing day fails the load, unless the input's metadata sets `allow_missing_partitions`
    (then a range leaves that day out).
    """

    data_root: str | None = Field(
        default=None,
        description="data directory or s3://bucket/prefix; unset: KIS_DATA_ROOT, as the kis "
        "resource reads it (pipelines.definitions.resources gives both the same)",
    )

    _root: DataRoot | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._root = self.root()

    def root(self) -> DataRoot:
        if self._root is None:
            overrides = {} if self.data_root is None else {"KIS_DATA_ROOT": self.data_root}
            self._root = data_root_from_env({**os.environ, **overrides})
        return self._root

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is not None:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the Parquet tables are written by the "
                "balance_tables asset itself; this IO manager only loads them"
            )

    def load_input(self, context: dg.InputContext) -> Any:
        # pandas only where a table is loaded: the pipeline's own runs never import it
        from pipelines import frames

        data_root = self.root()
        table = context.asset_key.path[-1]
        if not context.has_asset_partitions:
            raise dg.Failure(f"{table} is partitioned by day: load it for a partition or a range")
        keys = context.asset_partition_keys
        if len(keys) == 1:
            return frames.read_day(data_root, table, date.fromisoformat(keys[0]))
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        loaded = {}
        for key in keys:
            try:
                loaded[key] = frames.read_day(data_root, table, date.fromisoformat(key))
            except frames.MissingDayError:
                if not allow_missing:
                    raise
        return loaded
