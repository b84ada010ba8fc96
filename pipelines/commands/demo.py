"""`make demo`: a month of simulated history plus today's partition, then a look at the result.

Always runs against the simulator, into data/demo/ (simulator mode's data root; KIS_DATA_ROOT if
you set one in simulator mode). If your configuration selects real mode, its KIS_DATA_ROOT and
KIS_WAREHOUSE are left alone: simulated numbers never mix with your real history. Its days are
the capture days (KIS_CAPTURE_DAYS) of the past month and today, if today is one.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import date, timedelta

import dagster as dg
import duckdb

from pipelines.ingest.capture import CaptureSettings
from pipelines.ingest.fetch import today_in_seoul
from pipelines.settings import Settings, capture_from_env, default_data_root
from pipelines.warehouse import warehouse

HISTORY_DAYS = 30
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
DEMO_QUERIES = (
    "SELECT snapshot_date, account_id, net_assets, total_assets, cash, loans, net_assets_change\n"
    "FROM net_asset_history ORDER BY snapshot_date DESC, account_id LIMIT 6",
    "SELECT snapshot_date, accounts, is_complete, net_assets, total_assets, cash, loans,\n"
    "       net_assets_change FROM consolidated_net_assets ORDER BY snapshot_date DESC LIMIT 3",
    "SELECT account_id, category_ko, category_en, market_value, weight_pct\n"
    "FROM latest_allocation WHERE market_value <> 0 AND NOT is_total ORDER BY ALL",
    "SELECT asset_class, accounts, market_value, weight_pct FROM consolidated_allocation\n"
    "WHERE snapshot_date = (SELECT max(snapshot_date) FROM consolidated_allocation)\n"
    "ORDER BY market_value DESC",
)
#: Runs' own logs go to the Dagster UI; the terminal shows one line per day (errors in full).
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def demo_days(today: date, capture: CaptureSettings, days: int = HISTORY_DAYS) -> list[date]:
    """The capture days of the past month (when the capture sensor would have run), and today
    if it is one."""
    return capture.capture_days(today - timedelta(days=days), today)


def headline(con: duckdb.DuckDBPyConnection) -> str:
    """The newest day's consolidated figures in one line, in whole won."""
    row = con.execute(
        "SELECT snapshot_date, accounts, accounts_expected, net_assets, total_assets, cash, "
        "loans, securities_value FROM consolidated_net_assets "
        "ORDER BY snapshot_date DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return "No snapshot in the warehouse."
    day, accounts, expected, *amounts = row
    net, total, cash, loans, securities = (
        "unknown" if a is None else f"{int(a):,}원" for a in amounts
    )
    return (
        f"Net assets on {day} ({accounts} of {expected} accounts): {net}; total assets "
        f"{total}, cash {cash}, loans {loans}; securities only (nass_tot_amt) {securities}.\n"
    )


def failed(result: dg.ExecuteInProcessResult) -> int:
    """Print why a run failed (each failed step's one-line reason) and return the exit status."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        reason = data.user_failure_data.description if data.user_failure_data else None
        print(f"  {event.step_key}: {reason or (data.error.message if data.error else '?')}")
    return 1


def main() -> int:
    configured = Settings.from_env()
    today = today_in_seoul()
    days = demo_days(today, capture_from_env(), HISTORY_DAYS)
    # The partitions are built when the assets are imported: from the demo's first day.
    os.environ["KIS_HISTORY_START"] = days[0].isoformat()
    from assets.balance import balance_tables, kis_balance_raw, portfolio_report, warehouse_views
    from assets.resources import KisResource
    from pipelines.definitions import resources

    if configured.is_simulated:
        data_root, warehouse_file = configured.data_root, configured.warehouse
    else:  # never beside real history, in the data root or in KIS_WAREHOUSE
        data_root = default_data_root("sim")
        warehouse_file = data_root / warehouse.FILE_NAME
    kis = KisResource(
        env="sim",
        base_url="",
        accounts="",
        data_root=str(data_root),
        warehouse=str(warehouse_file),
    )
    settings = kis.settings()
    if not configured.is_simulated:
        print(f"Your settings select real mode; the demo writes simulated data to {data_root}")
    print(
        f"Simulator mode: the embedded KIS simulator answers for accounts "
        f"{', '.join(a.id for a in settings.accounts)} (no credentials, nothing leaves this "
        "machine)."
    )
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    started = time.perf_counter()
    every_asset = [kis_balance_raw, balance_tables, warehouse_views, portfolio_report]
    for day in days:  # each day's answers and tables, as the capture sensor would have
        result = dg.materialize(
            every_asset,
            partition_key=day.isoformat(),
            resources=resources(kis),
            instance=instance,
            selection=[kis_balance_raw.key, *balance_tables.keys],
            raise_on_error=False,
            run_config=QUIET,
        )
        status = "ok" if result.success else "FAILED"
        print(f"  {day} {'(today) ' if day == today else ''}{status}")
        if not result.success:
            return failed(result)
    # the views once and every day's report, in one run over the whole range: no partition of
    # theirs is left missing in the UI
    result = dg.materialize(
        every_asset,
        tags={RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()},
        resources=resources(kis),
        instance=instance,
        selection=[warehouse_views.key, portfolio_report.key],
        raise_on_error=False,
        run_config=QUIET,
    )
    print(f"  views and {len(days)} reports {'ok' if result.success else 'FAILED'}")
    if not result.success:
        return failed(result)
    print(f"Materialized {len(days)} daily partitions in {time.perf_counter() - started:.1f} s.\n")

    warehouse_path = settings.warehouse
    with warehouse.connect(settings.data_root, warehouse_path) as con:
        for sql in DEMO_QUERIES:
            print(sql + ";")
            con.sql(sql).show(max_rows=40, max_width=200)
        print(headline(con))
    print(f"Data root:  {settings.data_root}")
    print(f"  raw JSON  {settings.data_root / 'raw'}")
    print(f"  Parquet   {settings.data_root / 'parquet'}  (one file per table and day)")
    print(f"  compacted {settings.data_root / 'compacted'}  (closed months, what the views read)")
    print(
        f"  DuckDB    {warehouse_path}  (views: {', '.join(warehouse.view_names())}; "
        f"table macros: {', '.join(warehouse.macro_names())})"
    )
    print("Export:     make export   (the main views to CSV and Parquet in exports/)")
    print("Query it:   make sql   (a DuckDB shell on the warehouse, read-only)")
    print(
        f"Report:     {settings.data_root / 'reports' / f'portfolio-{days[-1]}.html'}"
        "  (open it in a browser; it needs no network)"
    )
    print("Dagster UI: make ui  (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
