"""The Dagster Definitions of the KIS balance history: load with `-m pipelines.definitions`."""

import dagster as dg

from assets.automation import balance_capture, daily_balance_job
from assets.balance import balance_tables, kis_balance_raw, portfolio_report, warehouse_views
from assets.resources import KisConfig

defs = dg.Definitions(
    assets=[kis_balance_raw, balance_tables, warehouse_views, portfolio_report],
    jobs=[daily_balance_job],
    sensors=[balance_capture],
    resources={"kis": KisConfig()},
    # One process per run: a one-day run takes seconds instead of a process start per step.
    executor=dg.in_process_executor,
)
