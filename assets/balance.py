"""Assets of the balance history: raw landing → tidy Parquet tables → DuckDB views."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from assets.partitions import daily_partitions
from assets.resources import KisConfig
from pipelines.balance import flatten, schema, warehouse
from pipelines.balance.fetch import (
    DayAction,
    MissingRawError,
    describe_source,
    fetch_and_land,
    plan_day,
    today_in_seoul,
)
from pipelines.balance.landing import RawLanding, SnapshotError, read_snapshot
from pipelines.balance.tables import ParquetTables
from pipelines.kis.protocol import KisApiError
from pipelines.settings import SettingsError

GROUP = "kis_balance"
RAW = dg.AssetKey("kis_balance_raw")


#: Errors whose message already says what is wrong: shown as-is in the UI, without a traceback.
EXPLAINED_ERRORS = (MissingRawError, SettingsError, SnapshotError, ValueError)


@contextmanager
def explained_failures() -> Iterator[None]:
    try:
        yield
    except EXPLAINED_ERRORS as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


def _day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def column_schema(arrow_schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(schema.PARTITION_COLUMN, "DATE")]
        + [dg.TableColumn(f.name, warehouse.duckdb_type(f.type)) for f in arrow_schema]
    )


@dg.asset(
    key=RAW,
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"kis", "json"},
    description=(
        "Raw answers of KIS TR CTRP6548R (투자계좌자산현황조회), one immutable JSON file per "
        "account per fetch under raw/CTRP6548R/snapshot_date=…/. Today's partition fetches "
        "live; a past partition is rebuilt from what was landed on that day."
    ),
)
def kis_balance_raw(context: dg.AssetExecutionContext, kis: KisConfig) -> dg.MaterializeResult:
    with explained_failures():
        return _land_day(context, kis)


def _land_day(context: dg.AssetExecutionContext, kis: KisConfig) -> dg.MaterializeResult:
    settings = kis.settings()
    day, today = _day(context), today_in_seoul()
    landing = RawLanding(settings.data_root)
    source = describe_source(settings)
    if settings.is_simulated:
        context.log.warning(
            f"Simulator mode: balances come from the KIS simulator ({source['server']}), not "
            "from a real account. Set KIS_ENV=real with credentials to fetch real data."
        )
    action = plan_day(
        day, today=today, simulated=settings.is_simulated, landed=bool(landing.latest_files(day))
    )
    context.log.info(f"{day}: {action.value}")
    metadata: dict[str, Any] = {
        "action": action.value,
        **{f"source_{k}": v for k, v in source.items()},
    }
    if action is DayAction.REBUILD_FROM_RAW:
        files = landing.latest_files(day)
        return dg.MaterializeResult(
            metadata={
                **metadata,
                "landed_accounts": [p.parent.name for p in files],
                "landed_files": len(landing.all_files(day)),
            }
        )
    report = fetch_and_land(
        settings,
        landing,
        day,
        sim_as_of=day if action is DayAction.FETCH_SIMULATED_PAST else None,
    )
    for path in report.landed:
        context.log.info(f"landed {path}")
    metadata["client_events"] = dict(sorted(report.events.items()))
    metadata["landed_accounts"] = [p.parent.name for p in report.landed]
    if report.failures:
        raise dg.Failure(
            description=(
                f"{len(report.failures)} of {len(settings.accounts)} accounts failed for {day}"
                f" (landed: {', '.join(metadata['landed_accounts']) or 'none'}):\n"
                + "\n".join(str(error) for error in report.failures.values())
            ),
            metadata={
                **metadata,
                "failed_accounts": {
                    account: (
                        {"msg_cd": error.msg_cd, "msg1": error.msg1}
                        if isinstance(error, KisApiError)
                        else {"error": str(error)}
                    )
                    for account, error in report.failures.items()
                },
            },
            allow_retries=False,
        )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "landed_files": len(landing.all_files(day)),
        }
    )


TABLE_DESCRIPTIONS = {
    "asset_categories": (
        "output1 flattened: one row per account and asset category, labelled in Korean and "
        "English by the layout of the account's product code (20 rows, 17 for product code "
        "21). Amounts are exact DECIMAL(38,8)."
    ),
    "account_summary": (
        "output2: one row per account with its 25 totals under their KIS names, exact "
        "DECIMAL(38,8)."
    ),
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            deps=[RAW],
            group_name=GROUP,
            kinds={"parquet"},
            partitions_def=daily_partitions,
            description=f"{TABLE_DESCRIPTIONS[name]} parquet/{name}/snapshot_date=…/data.parquet",
            metadata={"dagster/column_schema": column_schema(table_schema)},
        )
        for name, table_schema in schema.TABLES.items()
    ],
    partitions_def=daily_partitions,
)
def balance_tables(
    context: dg.AssetExecutionContext, kis: KisConfig
) -> Iterator[dg.MaterializeResult]:
    settings = kis.settings()
    day = _day(context)
    with explained_failures():
        files = RawLanding(settings.data_root).latest_files(day)
        if not files:
            raise MissingRawError(
                f"No raw balance landed for {day}: materialize {RAW.to_user_string()} first"
            )
        try:
            snapshots = [read_snapshot(path) for path in files]
            tables = {
                "asset_categories": flatten.asset_categories(snapshots),
                "account_summary": flatten.account_summary(snapshots),
            }
        except SnapshotError as error:
            raise SnapshotError(
                f"{day}: {error}. Nothing was written; earlier data is intact."
            ) from error
    store = ParquetTables(settings.data_root)
    for name, table in tables.items():
        path = store.write(name, day, table)
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "dagster/row_count": table.num_rows,
                "dagster/column_schema": column_schema(table.schema),
                "accounts": sorted({s.account.id for s in snapshots}),
                "path": dg.MetadataValue.path(str(path)),
            },
        )


@dg.asset(
    partitions_def=daily_partitions,
    deps=["asset_categories", "account_summary"],
    group_name=GROUP,
    kinds={"duckdb"},
    description=(
        "warehouse.duckdb in the data root: views asset_categories, account_summary, "
        "latest_allocation and net_asset_history over every day's Parquet files. Rebuilt whole "
        "and swapped in atomically; open it read-only from anywhere."
    ),
)
def warehouse_views(context: dg.AssetExecutionContext, kis: KisConfig) -> dg.MaterializeResult:
    settings = kis.settings()
    path = warehouse.build(settings.data_root)
    day = _day(context)
    with duckdb.connect(str(path), read_only=True) as con:
        days = con.sql("SELECT count(DISTINCT snapshot_date) FROM account_summary").fetchone()
        net = con.execute(
            "SELECT sum(net_assets) FROM net_asset_history WHERE snapshot_date = ?", [day]
        ).fetchone()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "views": warehouse.view_names(),
            "days_of_history": days[0] if days else 0,
            "net_assets_krw": str(net[0]) if net and net[0] is not None else None,
        }
    )
