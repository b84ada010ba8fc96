"""The warehouse's reporting views and table macros, as SQL text.

The base views `asset_categories` and `account_summary` keep the KIS field names; the views
here use plain English names. Every column of every view must have an entry in glossary.py:
the warehouse refuses to build otherwise.
"""

from __future__ import annotations

import re

#: Every account's expected span: from its first snapshot, up to today if it is configured
#: (in capture_accounts; every account is, when that table is empty), else up to its last.
ACCOUNT_SPANS = """
    SELECT account_id, min(snapshot_date) AS first_day, max(snapshot_date) AS last_day,
           account_id IN (SELECT account_id FROM capture_accounts)
           OR NOT EXISTS (SELECT 1 FROM capture_accounts) AS configured
    FROM account_summary GROUP BY account_id
"""


def _expected_accounts(periods: str, period: str, present: str) -> str:
    """accounts_expected and missing_accounts per row of `periods` (a date, or a month: its
    column `period`): the accounts whose span (ACCOUNT_SPANS) reaches into the period, and
    those of them without a row in `present` for it."""
    end = f"last_day(p.{period})" if period == "month" else f"p.{period}"
    return f"""
    SELECT p.{period}, count(*) AS accounts_expected,
           coalesce(list(sp.account_id ORDER BY sp.account_id)
                        FILTER (WHERE s.account_id IS NULL), []) AS missing_accounts
    FROM {periods} p
    JOIN ({ACCOUNT_SPANS}) sp
      ON sp.first_day <= {end} AND (sp.configured OR sp.last_day >= p.{period})
    LEFT JOIN {present} s ON s.account_id = sp.account_id AND s.{period} = p.{period}
    GROUP BY p.{period}
    """


#: account_summary's rows with their totals from output1 (lake/account_totals.py): a source the
#: warehouse gives the views that read it (`with_sources`), from compacted months or by day.
ACCOUNT_DAYS = "account_days"
#: The base views each source reads (what a damaged file of theirs reaches).
SOURCE_TABLES = {ACCOUNT_DAYS: ("account_summary", "asset_categories")}


def with_sources(sql: str, sources: dict[str, str]) -> str:
    """`sql` with each source (name → query) it reads from or joins replaced by its query, as a
    subquery: DuckDB would materialize a common table expression read twice (a view's stored SQL
    loses NOT MATERIALIZED), and then a filter on the view would no longer reach the scans."""
    for name, query in sources.items():
        subquery = f"({query})"
        sql = re.sub(rf"\b(FROM|JOIN) {name}\b", lambda m: f"{m[1]} {subquery}", sql)  # noqa: B023
    return sql


#: latest_allocation's columns (allocation_as_of's too).
ALLOCATION_COLUMNS = """
    snapshot_date, account_id, product_code, layout, category_seq, category_code,
    category_ko, category_en, asset_class, is_total,
    pchs_amt AS purchase_amount, evlu_amt AS market_value,
    evlu_pfls_amt AS unrealized_pnl, crdt_lnd_amt AS credit_loan,
    real_nass_amt AS net_value, whol_weit_rt AS weight_pct, fetched_at
"""


def _like_for_like(period: str, previous: str) -> str:
    """A consolidated row's net_assets_change, net_assets_change_accounts and
    net_assets_change_note, from the columns like_for_like, net_assets_change_accounts,
    accounts and previous_accounts of `c`; `previous` is the previous period as text."""
    both = f"'on both this {period} and ' || {previous}"
    return f"""
        CASE WHEN c.net_assets_change_accounts > 0 THEN c.like_for_like END
            AS net_assets_change,
        c.net_assets_change_accounts,
        CASE
            WHEN {previous} IS NULL
                THEN 'the first {period} with a snapshot: nothing to compare with'
            WHEN c.net_assets_change_accounts = 0
                THEN 'no account has net assets ' || {both} || ': no change is computed'
            WHEN c.net_assets_change_accounts < greatest(c.accounts, c.previous_accounts)
                THEN 'like for like over ' || c.net_assets_change_accounts
                     || ' account(s) with net assets ' || {both} || ' (' || c.accounts
                     || ' this {period}, ' || c.previous_accounts || ' then)'
        END AS net_assets_change_note
    """


#: The column that marks simulated data, from the one-row table data_source (a root holds
#: answers of one kind only: pipelines/ingest/provenance.py).
IS_SIMULATED = "(SELECT is_simulated FROM data_source) AS is_simulated"

DERIVED_VIEWS: dict[str, tuple[str, str]] = {
    "latest_allocation": (
        "Each account's newest snapshot, one row per category (합계 row included).",
        f"""
        SELECT {ALLOCATION_COLUMNS}
        FROM asset_categories
        QUALIFY snapshot_date = max(snapshot_date) OVER (PARTITION BY account_id)
        """,
    ),
    "net_asset_history": (
        "Per account and snapshot date: net assets (the 합계 row's real_nass_amt), total "
        "assets, securities, cash, loans and P&L, with the change from the previous snapshot "
        "and from the first. Gaps show in days_since_previous.",
        f"""
        SELECT
            snapshot_date, account_id, product_code, net_assets, tot_asst_amt AS total_assets,
            evlu_amt_smtl AS securities_value, cash, loan_amt_smtl AS loans, purchase_amount,
            unrealized_pnl,
            lag(snapshot_date) OVER w AS previous_snapshot_date,
            snapshot_date - lag(snapshot_date) OVER w AS days_since_previous,
            tot_asst_amt - lag(tot_asst_amt) OVER w AS total_assets_change,
            net_assets - lag(net_assets) OVER w AS net_assets_change,
            net_assets - first_value(net_assets IGNORE NULLS) OVER w
                AS net_assets_change_since_first,
            fetched_at,
            {IS_SIMULATED}
        FROM {ACCOUNT_DAYS}
        WINDOW w AS (PARTITION BY account_id ORDER BY snapshot_date)
        """,
    ),
    "allocation_history": (
        "Weights over time per account: each category's weight and its asset class's weight "
        "(합계 rows left out).",
        """
        SELECT snapshot_date, account_id, asset_class, category_code, category_en,
               evlu_amt AS market_value,
               exact_percent(evlu_amt, sum(evlu_amt) OVER day) AS weight_pct,
               exact_percent(sum(evlu_amt) OVER (PARTITION BY snapshot_date, account_id,
                                                  asset_class),
                             sum(evlu_amt) OVER day) AS asset_class_weight_pct
        FROM asset_categories
        WHERE NOT is_total
        WINDOW day AS (PARTITION BY snapshot_date, account_id)
        """,
    ),
    "pnl_by_category": (
        "Unrealized P&L per account, day and category, with the return on the purchase amount.",
        """
        SELECT snapshot_date, account_id, asset_class, category_code, category_ko, category_en,
               pchs_amt AS purchase_amount, evlu_amt AS market_value,
               evlu_pfls_amt AS unrealized_pnl,
               exact_percent(evlu_pfls_amt, pchs_amt) AS return_pct
        FROM asset_categories
        WHERE NOT is_total
        """,
    ),
    "consolidated_allocation": (
        "All accounts together, per snapshot date and asset class (one model across the "
        "standard and product-21 layouts): amounts summed, weight in percent of the day.",
        """
        WITH classes AS (
            SELECT snapshot_date, asset_class,
                   count(DISTINCT account_id) AS accounts,
                   sum(pchs_amt) AS purchase_amount,
                   sum(evlu_amt) AS market_value,
                   sum(evlu_pfls_amt) AS unrealized_pnl
            FROM asset_categories
            WHERE NOT is_total
            GROUP BY snapshot_date, asset_class
        )
        SELECT *, exact_percent(market_value,
                                sum(market_value) OVER (PARTITION BY snapshot_date)) AS weight_pct
        FROM classes
        """,
    ),
    "consolidated_net_assets": (
        "All accounts together per snapshot date: how many of the expected accounts are in, "
        "their net assets, total assets, securities, cash, loans and P&L added up, and the "
        "change from the previous date with any snapshot, like for like (over the accounts on "
        "both dates only).",
        f"""
        WITH dates AS (
            -- per date alone (narrow), so a filter on snapshot_date reaches the sums below
            SELECT snapshot_date, count(*) AS accounts,
                   lag(snapshot_date) OVER (ORDER BY snapshot_date) AS previous_snapshot_date,
                   lag(count(*)) OVER (ORDER BY snapshot_date) AS previous_accounts
            FROM account_summary GROUP BY snapshot_date
        ),
        expected AS ({_expected_accounts("dates", "snapshot_date", "account_summary")}),
        steps AS (
            -- each account's change, as net_asset_history has it, over the keys and net assets
            -- alone: a filter on snapshot_date reaches the amounts' scan below
            SELECT snapshot_date, account_id,
                   lag(snapshot_date) OVER w AS previous_snapshot_date,
                   net_assets - lag(net_assets) OVER w AS net_assets_change
            FROM {ACCOUNT_DAYS}
            WINDOW w AS (PARTITION BY account_id ORDER BY snapshot_date)
        ),
        sums AS (
            SELECT a.snapshot_date,
                   sum(a.net_assets) AS net_assets, sum(a.tot_asst_amt) AS total_assets,
                   sum(a.evlu_amt_smtl) AS securities_value, sum(a.cash) AS cash,
                   sum(a.loan_amt_smtl) AS loans, sum(a.unrealized_pnl) AS unrealized_pnl,
                   sum(k.net_assets_change)
                       FILTER (WHERE k.previous_snapshot_date = d.previous_snapshot_date)
                       AS like_for_like,
                   count(k.net_assets_change)
                       FILTER (WHERE k.previous_snapshot_date = d.previous_snapshot_date)
                       AS net_assets_change_accounts
            FROM {ACCOUNT_DAYS} a
            JOIN steps k USING (snapshot_date, account_id)
            JOIN dates d USING (snapshot_date)
            GROUP BY a.snapshot_date
        ),
        c AS (SELECT * FROM sums JOIN dates USING (snapshot_date))
        SELECT c.snapshot_date, c.accounts, e.accounts_expected,
               c.accounts = e.accounts_expected AS is_complete, e.missing_accounts,
               c.net_assets, c.total_assets, c.securities_value, c.cash, c.loans,
               c.unrealized_pnl, c.previous_snapshot_date,
               {_like_for_like("date", "CAST(c.previous_snapshot_date AS VARCHAR)")},
               {IS_SIMULATED}
        FROM c JOIN expected e USING (snapshot_date)
        """,
    ),
    "net_assets_monthly": (
        "Month-end net assets per account and for every account together (is_consolidated), "
        "with the change from the previous month-end and the month's snapshot count. An "
        "account counts at its own last snapshot of the month; the consolidated change is like "
        "for like (over the accounts at both month-ends only).",
        f"""
        WITH history AS (
            SELECT CAST(date_trunc('month', snapshot_date) AS DATE) AS month, snapshot_date,
                   account_id, net_assets, total_assets
            FROM net_asset_history
        ),
        ends AS (
            SELECT month, account_id, snapshot_date, net_assets, total_assets,
                   count(*) OVER m AS snapshots
            FROM history
            WINDOW m AS (PARTITION BY account_id, month)
            QUALIFY snapshot_date = max(snapshot_date) OVER m
        ),
        per_account AS (
            SELECT *, lag(month) OVER w AS previous_month,
                   net_assets - lag(net_assets) OVER w AS net_assets_change
            FROM ends
            WINDOW w AS (PARTITION BY account_id ORDER BY month)
        ),
        months AS (
            SELECT month, count(DISTINCT snapshot_date) AS snapshots,
                   lag(month) OVER (ORDER BY month) AS previous_month
            FROM history GROUP BY month
        ),
        expected AS ({_expected_accounts("months", "month", "per_account")}),
        sums AS (
            SELECT a.month, any_value(m.snapshots) AS snapshots,
                   any_value(m.previous_month) AS previous_month,
                   max(a.snapshot_date) AS snapshot_date, count(*) AS accounts,
                   sum(a.net_assets) AS net_assets, sum(a.total_assets) AS total_assets,
                   sum(a.net_assets_change) FILTER (WHERE a.previous_month = m.previous_month)
                       AS like_for_like,
                   count(a.net_assets_change) FILTER (WHERE a.previous_month = m.previous_month)
                       AS net_assets_change_accounts
            FROM per_account a JOIN months m USING (month)
            GROUP BY a.month
        ),
        c AS (SELECT *, lag(accounts) OVER (ORDER BY month) AS previous_accounts FROM sums)
        SELECT month, account_id, false AS is_consolidated, snapshot_date, snapshots,
               1 AS accounts, 1 AS accounts_expected, true AS is_complete,
               CAST([] AS VARCHAR[]) AS missing_accounts, net_assets, total_assets,
               previous_month, net_assets_change,
               CAST(net_assets_change IS NOT NULL AS BIGINT) AS net_assets_change_accounts,
               CASE
                   WHEN previous_month IS NULL
                       THEN 'the first month with a snapshot: nothing to compare with'
                   WHEN net_assets_change IS NULL
                       THEN 'net assets unknown at one of the two month-ends'
               END AS net_assets_change_note
        FROM per_account
        UNION ALL BY NAME
        SELECT c.month, CAST(NULL AS VARCHAR) AS account_id, true AS is_consolidated,
               c.snapshot_date, c.snapshots, c.accounts, e.accounts_expected,
               c.accounts = e.accounts_expected AS is_complete, e.missing_accounts,
               c.net_assets, c.total_assets, c.previous_month,
               {_like_for_like("month", "strftime(c.previous_month, '%Y-%m')")}
        FROM c JOIN expected e USING (month)
        """,
    ),
    "snapshot_calendar": (
        "Every day from each account's first snapshot to the newest, with whether a snapshot "
        "exists: the gaps (weekends, holidays, missed runs) as rows.",
        """
        WITH bounds AS (
            SELECT account_id, min(snapshot_date) AS first_day,
                   (SELECT max(snapshot_date) FROM account_summary) AS last_day
            FROM account_summary GROUP BY account_id
        ),
        days AS (
            SELECT account_id, CAST(day AS DATE) AS snapshot_date
            FROM bounds, generate_series(first_day, last_day, INTERVAL 1 DAY) AS t(day)
        )
        SELECT d.snapshot_date, d.account_id, s.account_id IS NOT NULL AS has_snapshot
        FROM days d LEFT JOIN account_summary s USING (account_id, snapshot_date)
        """,
    ),
    "missed_captures": (
        "Capture days (KIS_CAPTURE_DAYS) whose window (KIS_CAPTURE_WINDOW) has closed without a "
        "snapshot of a configured account, from the history's first day (or the account's "
        "first snapshot, if later) to today: the days lost for good.",
        """
        WITH clock AS (
            SELECT *, timezone(time_zone, now()) AS local_now FROM capture_settings
        ),
        closed_days AS (
            SELECT CAST(g.day AS DATE) AS capture_day
            FROM clock c,
                 generate_series(CAST(c.first_day AS TIMESTAMP), c.local_now, INTERVAL 1 DAY)
                     AS g(day)
            WHERE list_contains(c.weekdays, isodow(g.day))
              AND g.day + to_minutes(c.window_end_minute) <= c.local_now
        ),
        accounts AS (
            SELECT a.account_id,
                   greatest(c.first_day, coalesce(min(s.snapshot_date), c.first_day)) AS since
            FROM capture_accounts a CROSS JOIN capture_settings c
            LEFT JOIN account_summary s USING (account_id)
            GROUP BY a.account_id, c.first_day
        )
        SELECT d.capture_day, a.account_id
        FROM closed_days d JOIN accounts a ON d.capture_day >= a.since
        WHERE NOT EXISTS (
            SELECT 1 FROM account_summary s
            WHERE s.account_id = a.account_id AND s.snapshot_date = d.capture_day
        )
        """,
    ),
}

#: Table macros: name → (comment, SQL of one parameter `d`, a DATE or an ISO date string).
#: `FROM net_assets_as_of(DATE '2026-03-31')`: every account's newest snapshot on or before d.
TABLE_MACROS: dict[str, tuple[str, str]] = {
    "net_assets_as_of": (
        "net_asset_history as of a date: FROM net_assets_as_of(DATE '2026-03-31') gives each "
        "account's newest snapshot on or before it, with its date and days_old.",
        """
        SELECT CAST(d AS DATE) AS as_of, CAST(d AS DATE) - snapshot_date AS days_old, *
        FROM net_asset_history
        WHERE snapshot_date <= CAST(d AS DATE)
        QUALIFY snapshot_date = max(snapshot_date) OVER (PARTITION BY account_id)
        """,
    ),
    "allocation_as_of": (
        "latest_allocation as of a date: FROM allocation_as_of(DATE '2026-03-31') gives each "
        "account's newest snapshot on or before it, one row per category, with its date.",
        f"""
        SELECT CAST(d AS DATE) AS as_of, CAST(d AS DATE) - snapshot_date AS days_old,
               {ALLOCATION_COLUMNS}
        FROM asset_categories
        WHERE snapshot_date <= CAST(d AS DATE)
        QUALIFY snapshot_date = max(snapshot_date) OVER (PARTITION BY account_id)
        """,
    ),
}


#: Created only when a targets file is configured (with the allocation_targets table).
DRIFT_VIEW = (
    "allocation_drift",
    "Consolidated weight of each targeted asset class against its target and tolerance band, "
    "per snapshot date.",
    """
    WITH days AS (SELECT DISTINCT snapshot_date FROM consolidated_allocation)
    SELECT d.snapshot_date, t.asset_class,
           coalesce(c.weight_pct, 0) AS weight_pct, t.target_pct, t.tolerance_pct,
           coalesce(c.weight_pct, 0) - t.target_pct AS drift_pct,
           abs(coalesce(c.weight_pct, 0) - t.target_pct) <= t.tolerance_pct AS within_band
    FROM days d CROSS JOIN allocation_targets t
    LEFT JOIN consolidated_allocation c
           ON c.snapshot_date = d.snapshot_date AND c.asset_class = t.asset_class
    """,
)
