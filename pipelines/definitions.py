"""The Dagster Definitions of the KIS balance history: load with `-m pipelines.definitions`."""

import importlib
import os
import warnings
from typing import Any

import dagster as dg

from assets import io_managers, notifications
from assets.automation import balance_capture, build_day_job, capture_fetch_job, daily_balance_job
from assets.balance import balance_tables, kis_balance_raw, portfolio_report, warehouse_views
from assets.duckdb_resource import WarehouseDuckDB
from assets.io_managers import ParquetTablesIOManager
from assets.repair import repair_history
from assets.resources import KisResource
from pipelines.settings import Settings, SettingsError

# Every file a process running this code writes is readable by its owner only (0600 files in
# 0700 folders): the data root's files are written so anyway; this covers what Dagster and
# DuckDB write themselves (event logs, compute logs, stored outputs under DAGSTER_HOME) in the
# code server and every run, wherever they run (make ui, the service, compose, Kubernetes).
os.umask(0o077)

# `dg launch --assets '*'` parses the selection with a beta parameter of Dagster's own
# (`AssetSelection.all(include_sources=…)`), which would print on every run: nothing of ours.
warnings.filterwarnings("ignore", message="Parameter `include_sources`", category=dg.BetaWarning)


try:
    # Read once here so invalid settings fail the code location's load (`dg check defs`, the
    # UI, every run) with their one line; each run's `kis` resource reads them again at setup.
    Settings.from_env()
except SettingsError as error:
    raise SettingsError(str(error)) from None  # the line, without pydantic's frames


def resources(kis: KisResource | None = None) -> dict[str, Any]:
    """The resources; the IO manager and `duckdb` read the data root (and warehouse) of `kis`
    (KIS_DATA_ROOT, KIS_WAREHOUSE), so tests and the demo bind their own `kis` and get the
    rest on it."""
    kis = kis or KisResource()
    return {
        "kis": kis,
        # asset_categories / account_summary as pandas DataFrames for downstream assets
        io_managers.KEY: ParquetTablesIOManager(data_root=kis.data_root),
        # the warehouse's views for assets of your own (read-only)
        "duckdb": WarehouseDuckDB(database=kis.warehouse or "", data_root=kis.data_root),
    }


#: The module of your own assets: my_assets.py at the repository root (git ignores it there);
#: examples/my_assets.py is one to start from.
OWN_ASSETS = "my_assets"


def own_assets() -> tuple[list[Any], list[Any]]:
    """Every asset and asset check in my_assets.py at the repository root; none without one."""
    try:
        module = importlib.import_module(OWN_ASSETS)
    except ModuleNotFoundError as error:
        if error.name != OWN_ASSETS:
            raise  # your module is there, and imports something that is not
        return [], []
    return (
        list(dg.load_assets_from_modules([module])),
        list(dg.load_asset_checks_from_modules([module])),
    )


own_asset_list, own_checks = own_assets()

defs = dg.Definitions(
    assets=[
        kis_balance_raw,
        balance_tables,
        warehouse_views,
        portfolio_report,
        *own_asset_list,
    ],
    asset_checks=own_checks,
    jobs=[daily_balance_job, capture_fetch_job, build_day_job, repair_history],
    sensors=[balance_capture, *notifications.sensors()],
    resources=resources(),
    # One process per run: a one-day run takes seconds instead of a process start per step.
    executor=dg.in_process_executor,
)
