"""One day in a few numbers, read from the warehouse: what the Dagster UI shows per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import duckdb

from pipelines.lake import account_totals
from pipelines.warehouse.warehouse import on_day

#: net_asset_history's row for each account on one day, from that day and each account's previous
#: snapshot alone: the view's window holds every day of history (tests check both agree).
ACCOUNTS_ON_DAY = f"""
WITH totals AS ({account_totals.sql("asset_categories", "snapshot_date = ?")}),
today AS (
    SELECT s.account_id, s.product_code, t.net_assets, s.tot_asst_amt AS total_assets,
           s.evlu_amt_smtl AS securities_value, t.cash, s.loan_amt_smtl AS loans,
           t.purchase_amount, t.unrealized_pnl
    FROM account_summary s LEFT JOIN totals t USING (account_id)
    WHERE s.snapshot_date = ?
),
previous AS (
    SELECT account_id, max(snapshot_date) AS previous_snapshot_date
    FROM account_summary WHERE snapshot_date < ? GROUP BY account_id
),
previous_net AS (
    SELECT p.account_id, p.previous_snapshot_date, c.real_nass_amt AS previous_net_assets
    FROM previous p LEFT JOIN asset_categories c
      ON c.is_total AND c.account_id = p.account_id
     AND c.snapshot_date = p.previous_snapshot_date AND c.snapshot_date < ?
)
SELECT t.account_id, t.product_code, t.net_assets, t.total_assets, t.securities_value, t.cash,
       t.loans, t.purchase_amount, t.unrealized_pnl, p.previous_snapshot_date,
       ? - p.previous_snapshot_date AS days_since_previous,
       t.net_assets - p.previous_net_assets AS net_assets_change
FROM today t LEFT JOIN previous_net p USING (account_id)
ORDER BY account_id
"""


@dataclass
class DaySummary:
    day: date
    accounts: int = 0
    accounts_expected: int = 0
    missing_accounts: list[str] = field(default_factory=list)
    net_assets: Decimal | None = None
    total_assets: Decimal | None = None
    cash: Decimal | None = None
    loans: Decimal | None = None
    #: like for like: over the accounts with a snapshot on both days (change_note says so)
    net_assets_change: Decimal | None = None
    change_note: str | None = None
    #: (asset_class, market_value, weight_pct), largest first
    allocation: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)
    #: (asset_class, weight_pct, target_pct, tolerance_pct, drift_pct) outside their band
    out_of_band: list[tuple[str, Decimal, Decimal, Decimal, Decimal]] = field(default_factory=list)
    has_targets: bool = False
    #: (account_id, net_assets) of each account with a snapshot that day (ACCOUNTS_ON_DAY)
    per_account: list[tuple[str, Decimal | None]] = field(default_factory=list)


def summarize(con: duckdb.DuckDBPyConnection, day: date) -> DaySummary:
    summary = DaySummary(day)
    row = con.execute(
        on_day(
            "SELECT accounts, accounts_expected, missing_accounts, net_assets, total_assets, "
            "cash, loans, net_assets_change, net_assets_change_note "
            "FROM consolidated_net_assets WHERE snapshot_date = ?",
            day,
        )
    ).fetchone()
    if row:
        summary.accounts, summary.accounts_expected, summary.missing_accounts = row[:3]
        summary.net_assets, summary.total_assets, summary.cash, summary.loans = row[3:7]
        summary.net_assets_change, summary.change_note = row[7:]
    summary.allocation = [
        (r[0], r[1], r[2])
        for r in con.execute(
            on_day(
                "SELECT asset_class, market_value, weight_pct FROM consolidated_allocation "
                "WHERE snapshot_date = ? AND market_value <> 0 ORDER BY market_value DESC",
                day,
            )
        ).fetchall()
    ]
    summary.per_account = [
        (r[0], r[1])
        for r in con.execute(
            on_day(
                f"SELECT account_id, net_assets FROM ({ACCOUNTS_ON_DAY}) ORDER BY account_id",
                day,
            )
        ).fetchall()
    ]
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    summary.has_targets = "allocation_drift" in views
    if summary.has_targets:
        summary.out_of_band = [
            (r[0], r[1], r[2], r[3], r[4])
            for r in con.execute(
                on_day(
                    "SELECT asset_class, weight_pct, target_pct, tolerance_pct, drift_pct "
                    "FROM allocation_drift WHERE snapshot_date = ? AND NOT within_band "
                    "ORDER BY abs(drift_pct) DESC",
                    day,
                )
            ).fetchall()
        ]
    return summary


def accounts_on(con: duckdb.DuckDBPyConnection, days: list[date]) -> list[str]:
    """The accounts with a snapshot in the views on any of `days` ("YYYY-MM-DD account" when
    there are several days)."""
    listed = ", ".join(f"DATE '{day.isoformat()}'" for day in days)  # not bound: see on_day
    rows = con.execute(
        "SELECT DISTINCT snapshot_date, account_id FROM account_summary "
        f"WHERE snapshot_date IN ({listed}) ORDER BY ALL"
    ).fetchall()
    return [account if len(days) == 1 else f"{day} {account}" for day, account in rows]


def shown_text(accounts: list[str]) -> str:
    """What the views and the report hold for a run's days, said truthfully."""
    if not accounts:
        return "no account is in the views or the report for it"
    return f"in the views and the report: {', '.join(accounts)}"


def _won(amount: Decimal | None) -> str:
    return "—" if amount is None else f"{int(amount):,}원"


def markdown(summary: DaySummary) -> str:
    """A Markdown preview: totals, allocation by asset class, and any drift from targets."""
    if not summary.accounts:
        return f"No snapshot on {summary.day}."
    accounts = f"{summary.accounts} accounts"
    if summary.missing_accounts:
        accounts = (
            f"{summary.accounts} of {summary.accounts_expected} accounts (missing "
            f"{', '.join(summary.missing_accounts)}: the totals leave them out)"
        )
    change = _won(summary.net_assets_change)
    if summary.change_note:
        change += f", {summary.change_note}"
    lines = [
        f"**{summary.day}**: {accounts}, net assets {_won(summary.net_assets)} (change "
        f"{change}), total assets {_won(summary.total_assets)}, cash {_won(summary.cash)}, "
        f"loans {_won(summary.loans)}",
        "",
        "| asset class | market value | weight |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {_won(value)} | {weight}% |" for name, value, weight in summary.allocation),
    ]
    if summary.out_of_band:
        lines += [
            "",
            "**Outside the target band:**",
            "",
            "| asset class | weight | target ± band | drift |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {weight}% | {target}% ± {band} | {drift:+} pp |"
            for name, weight, target, band, drift in summary.out_of_band
        ]
    return "\n".join(lines)
