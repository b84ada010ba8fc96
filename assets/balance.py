"""Assets of the balance history: raw landing → tidy Parquet tables → DuckDB views."""

import base64
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from assets import io_managers
from assets.partitions import CAPTURE, daily_partitions, window_freshness
from assets.repair import sweep_leftovers
from assets.resources import KisResource
from assets.verdict import EVERY_ACCOUNT, RAW, failed_accounts_metadata, reason, run_verdict
from pipelines import health
from pipelines.errors import KisBalanceError
from pipelines.ingest import provenance
from pipelines.ingest.fetch import (
    DayAction,
    describe_source,
    land_pending,
    plan_days,
    today_in_seoul,
)
from pipelines.ingest.landing import RawLanding
from pipelines.lake import schema
from pipelines.reporting import day_summary, report
from pipelines.tidy import build as tidy
from pipelines.tidy import checks
from pipelines.warehouse import sources, warehouse

# Single-run backfills are what rebuilding a range needs; Dagster still marks the @asset
# parameter as beta, which would otherwise print on every load.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

GROUP = "kis_balance"
#: A backfill of many days is one run: one process, one fetch plan, one warehouse rebuild.
SINGLE_RUN = dg.BackfillPolicy.single_run()


@contextmanager
def explained_failures() -> Iterator[None]:
    """The project's own errors (pipelines.errors), whose message already says what is wrong,
    become a one-line failure without a traceback; anything else is a bug and keeps its own."""
    try:
        yield
    except KisBalanceError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


def _days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's days: one partition, or a whole range in a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def column_schema(arrow_schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(schema.PARTITION_COLUMN, "DATE")]
        + [dg.TableColumn(f.name, sources.duckdb_type(f.type)) for f in arrow_schema]
    )


@dg.asset(
    key=RAW,
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name=GROUP,
    kinds={"kis", "json"},
    description=(
        "Raw answers of KIS TR CTRP6548R (투자계좌자산현황조회), one immutable JSON file per "
        "account per fetch under raw/CTRP6548R/snapshot_date=…/. Today's partition fetches "
        "live; a past partition is rebuilt from what was landed on that day."
    ),
)
def kis_balance_raw(context: dg.AssetExecutionContext, kis: KisResource) -> dg.MaterializeResult:
    with explained_failures():
        return _land_days(context, kis)


def _land_days(context: dg.AssetExecutionContext, kis: KisResource) -> dg.MaterializeResult:
    settings = kis.settings()
    sweep_leftovers(context, settings)
    days, today = _days(context), today_in_seoul()
    landing = RawLanding(settings.data_root)
    source = describe_source(settings)
    # simulated and real answers never share a root: refused before anything lands
    provenance.claim(landing.storage, simulated=settings.is_simulated, server=source["server"])
    kept = land_pending(landing)  # before planning: a kept answer may be a past day's only one
    if kept:
        context.log.warning(
            f"landed {len(kept)} answer(s) an earlier run fetched but could not land: "
            + ", ".join(str(where) for where in kept)
        )
    if settings.is_simulated:
        context.log.warning(
            f"Simulator mode: balances come from the KIS simulator ({source['server']}), not "
            "from a real account. Set KIS_ENV=real with credentials to fetch real data."
        )
    plans = plan_days(days, today=today, simulated=settings.is_simulated, landing=landing)
    metadata: dict[str, Any] = {
        "actions": {str(day): plan.value for day, plan in plans.items()},
        **{f"source_{k}": v for k, v in source.items()},
    }
    failures: dict[str, Exception] = {}
    events, landed, quarantined = Counter[str](), [], {}
    for day, plan in plans.items():
        if plan is DayAction.REBUILD_FROM_RAW:
            context.log.info(f"{day}: {plan.value}")
            continue
        fetched = kis.fetch_and_land(
            landing, day, sim_as_of=day if plan is DayAction.FETCH_SIMULATED_PAST else None
        )
        # one line per day: each log line is an event Dagster stores (milliseconds apiece)
        context.log.info(
            f"{day}: {plan.value}; landed {len(fetched.landed)} file(s) under "
            f"{landing.day_dir(day)}: {', '.join(p.parent.name for p in fetched.landed) or '-'}"
        )
        landed += [p.parent.name for p in fetched.landed]
        events.update(fetched.events)
        failures.update({f"{day} {account}": error for account, error in fetched.failures.items()})
        quarantined.update({f"{day} {a}": str(where) for a, where in fetched.quarantined.items()})
    metadata["client_events"] = dict(sorted(events.items()))
    if quarantined:  # the answers that failed their accounts, for a bug report (kis-redact)
        metadata["quarantined_answers"] = {
            key.split(" ", 1)[1] if len(days) == 1 else key: where
            for key, where in quarantined.items()
        }
    metadata["fetched_accounts"] = sorted(set(landed))  # fetched and landed by this run
    metadata["landed_accounts"] = sorted(set(landed)) or sorted(
        {p.parent.name for day in days for p in landing.latest_files(day)}
    )
    failed_accounts = failed_accounts_metadata(failures, one_day=len(days) == 1)
    empty = [day for day in days if not landing.latest_files(day)]
    if empty:
        # nothing at all to build those days from: stop here, naming every failed account
        raise dg.Failure(
            description=(
                f"{len(failures)} of {len(settings.accounts)} accounts failed and nothing was "
                f"landed for {', '.join(map(str, empty))}:\n"
                # a key's failure is each of its accounts': said once
                + "\n".join(str(error) for error in dict.fromkeys(failures.values()))
            ),
            metadata={**metadata, "failed_accounts": failed_accounts},
            allow_retries=False,
        )
    for error in dict.fromkeys(failures.values()):
        context.log.error(f"{error} (the run fails at its end, after the views and the report)")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            # the run's last step fails naming these, after the other accounts are in the views
            "failed_accounts": failed_accounts,
            # one raw answer per account and day is what the tables are built from
            "dagster/row_count": sum(len(landing.latest_files(d)) for d in days),
            "landed_files": sum(len(landing.all_files(d)) for d in days),
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
            # the day's tables, like the views: stale in the UI after a window closes without
            # a run that built them
            freshness_policy=window_freshness(CAPTURE),
        )
        # the asset writes its own files; downstream assets load them as DataFrames
        .with_io_manager_key(io_managers.KEY)
        for name, table_schema in schema.TABLES.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(
            check.name, asset=check.table, description=check.description, blocking=check.blocking
        )
        for check in checks.CHECKS
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
)
def balance_tables(
    context: dg.AssetExecutionContext, kis: KisResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    settings = kis.settings()
    sweep_leftovers(context, settings)  # a build_day run lands nothing: its first step
    with explained_failures():
        result = tidy.build_days(settings.data_root, _days(context))
    check_results: dict[str, list[dg.AssetCheckResult]] = {name: [] for name in schema.TABLES}
    for outcome in result.outcomes:
        check_results[outcome.check.table].append(
            dg.AssetCheckResult(
                asset_key=outcome.check.table,
                check_name=outcome.check.name,
                passed=outcome.passed,
                severity=(
                    dg.AssetCheckSeverity.ERROR
                    if outcome.check.is_error
                    else dg.AssetCheckSeverity.WARN
                ),
                description=outcome.check.description,
                metadata={
                    "problems": outcome.problems[:50],
                    "problem_count": len(outcome.problems),
                },
            )
        )
    if result.blocked:
        for results in check_results.values():
            yield from results
        problems = [
            f"{o.check.table}.{o.check.name}: {p}" for o in result.blocked for p in o.problems
        ]
        raise dg.Failure(
            description="Blocking checks failed; nothing was written, earlier data is intact:\n"
            + "\n".join(problems[:20]),
            allow_retries=False,
        )
    for outcome in result.outcomes:
        if not outcome.passed:
            more = len(outcome.problems) - 1
            context.log.warning(
                f"{outcome.check.table}.{outcome.check.name}: {outcome.problems[0]}"
                + (f" (and {more} more)" if more else "")
            )
    for damage in result.damaged:
        context.log.warning(str(damage))
    for name in schema.TABLES:
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "dagster/row_count": result.rows(name),
                "dagster/column_schema": column_schema(schema.TABLES[name]),
                "days": len(result.days),
                "accounts": sorted(result.accounts),
                # the run's last step fails naming these, after the others are in the views
                "withheld_accounts": result.withheld,
                "path": dg.MetadataValue.path(str(result.written[name][-1])),
                # closed months (re)written as one file each by this run
                "compacted_months": sorted(
                    p.stem for p in result.compacted if p.parent.name == name
                ),
                # damaged files met (a day's file replaced, a compacted month) and what was done
                "damaged_files": [str(damage) for damage in result.damaged],
            },
            check_results=check_results[name],
        )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    deps=["asset_categories", "account_summary"],
    check_specs=[
        dg.AssetCheckSpec(
            "allocation_within_targets",
            asset="warehouse_views",
            description="Each asset class's consolidated weight is within its target band "
            "(KIS_TARGETS_FILE); a warning, so the daily run says when to rebalance.",
        )
    ],
    # A capture day without a run shows: by the window's close the views must have been
    # rebuilt since it opened (KIS_CAPTURE_WINDOW on KIS_CAPTURE_DAYS).
    freshness_policy=window_freshness(CAPTURE),
    group_name=GROUP,
    kinds={"duckdb"},
    description=(
        "warehouse.duckdb (KIS_WAREHOUSE, by default in a local data root): views "
        "asset_categories, account_summary, latest_allocation, net_asset_history, "
        "consolidated_net_assets, net_assets_monthly, consolidated_allocation and "
        "missed_captures over every day's Parquet files, and the table macros "
        "net_assets_as_of and allocation_as_of. Rebuilt whole and swapped in atomically; open "
        "it read-only from anywhere."
    ),
)
def warehouse_views(context: dg.AssetExecutionContext, kis: KisResource) -> dg.MaterializeResult:
    settings = kis.settings()
    with explained_failures():
        # every configured account, also in a run the capture sensor narrowed to a few;
        # damaged derived files behind a view are rebuilt (from raw) and the build done again
        built = health.build_warehouse(
            settings, [account.id for account in kis.settings(every_account=True).accounts]
        )
    for damage in built.healed:
        context.log.warning(str(damage))
    path = built.path
    day = _days(context)[-1]

    def read_views(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
        summary = day_summary.summarize(con, day)
        days = con.sql("SELECT count(DISTINCT snapshot_date) FROM account_summary").fetchone()
        # net_asset_history has one row per account_summary row; counting it would compute
        # its window functions over the whole history
        rows = con.sql("SELECT count(*) FROM account_summary").fetchone()
        columns = con.sql(
            "SELECT column_name, data_type, comment FROM duckdb_columns() "
            "WHERE table_name = 'net_asset_history' ORDER BY column_index"
        ).fetchall()
        return summary, days, rows, columns

    summary, days, rows, columns = warehouse.read(settings.data_root, path, read_views)
    drift = dg.AssetCheckResult(
        check_name="allocation_within_targets",
        passed=not summary.out_of_band,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "No targets file (KIS_TARGETS_FILE): nothing to compare."
            if not summary.has_targets
            else f"{len(summary.out_of_band)} asset classes outside their band on {day}: rebalance."
            if summary.out_of_band
            else f"Every targeted asset class is within its band on {day}."
        ),
        metadata={
            "out_of_band": [
                f"{name}: {weight}% vs target {target}% ± {band} ({drift:+} pp)"
                for name, weight, target, band, drift in summary.out_of_band
            ]
        },
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "views": warehouse.view_names()
            + (["allocation_drift"] if settings.targets_file else []),
            "days_of_history": days[0] if days else 0,
            # the headline view: one row per account and snapshot date
            "dagster/row_count": rows[0] if rows else 0,
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name, kind, description=text) for name, kind, text in columns
                ]
            ),
            # whole won, exact (an int, not a float), so the UI can plot it run over run
            "net_assets_krw": _whole_won(summary.net_assets),
            "total_assets_krw": _whole_won(summary.total_assets),
            "cash_krw": _whole_won(summary.cash),
            # accounts expected that day without a snapshot: the totals leave them out
            "missing_accounts": summary.missing_accounts,
            "allocation": dg.MetadataValue.md(day_summary.markdown(summary)),
            # damaged files the views read, rebuilt before the views were built again
            "healed_files": [str(damage) for damage in built.healed],
        },
        check_results=[drift],
    )


def _whole_won(amount: Any) -> int | None:
    return int(amount) if amount is not None else None


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    deps=[warehouse_views],
    group_name=GROUP,
    kinds={"html"},
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_ACCOUNT,
            asset="portfolio_report",
            description="Every account the run fetched is in the day's views and report: an "
            "account whose fetch failed (with the server's msg_cd/msg1) or whose answer was "
            "withheld fails the run by name, after the other accounts were written.",
        )
    ],
    description=(
        "The day's portfolio report, one self-contained HTML file per day (no network needed "
        "to view it): allocation by asset class and category, net assets over time, P&L by "
        "category, the account table. reports/portfolio-YYYY-MM-DD.html"
    ),
)
def portfolio_report(
    context: dg.AssetExecutionContext, kis: KisResource
) -> Iterator[dg.MaterializeResult]:
    settings = kis.settings()
    days = _days(context)

    def write_reports(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], str, list[str]]:
        paths = [report.write(con, day, settings.data_root) for day in days]
        shown = day_summary.accounts_on(con, days)
        return paths, report.render_main_chart_svg(con, days[-1]), shown

    paths, chart, shown = warehouse.read(settings.data_root, settings.warehouse, write_reports)
    # the UI's Markdown shows a data: image (an <img>, so the SVG is inert)
    image = base64.b64encode(chart.encode()).decode()
    verdict = run_verdict(context)
    problems = [f"{account}: {reason(what)}" for account, what in verdict.items()]
    yield dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(paths[-1])),
            "dagster/row_count": len(paths),
            "allocation_chart": dg.MetadataValue.md(
                f"Allocation by asset class on {days[-1]}:\n\n"
                f"![allocation by asset class](data:image/svg+xml;base64,{image})"
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=EVERY_ACCOUNT,
                passed=not problems,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"problems": problems[:50], "problem_count": len(problems)},
            )
        ],
    )
    if problems:
        raise dg.Failure(
            description=(
                f"{len(problems)} of {len(settings.accounts)} accounts failed for "
                f"{', '.join(context.partition_keys)}; "
                + day_summary.shown_text(shown)
                + ":\n"
                + "\n".join(problems)
            ),
            metadata={
                "failed_accounts": {k: v for k, v in verdict.items() if "withheld" not in v},
                "withheld_accounts": {
                    k: v["withheld"] for k, v in verdict.items() if "withheld" in v
                },
            },
            allow_retries=False,
        )
