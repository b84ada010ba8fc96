"""The warehouse's reporting views (SQL) and the glossary that comments every column.

The base views `asset_categories` and `account_summary` keep the KIS field names; the views
here use plain English names. Every column of every view must have a glossary entry: the
warehouse refuses to build otherwise.
"""

from __future__ import annotations

from pipelines.kis.protocol import OUTPUT2_FIELDS

OUTPUT1_KO = {
    "pchs_amt": "매입금액 purchase amount (KRW)",
    "evlu_amt": "평가금액 market value (KRW)",
    "evlu_pfls_amt": "평가손익금액 unrealized profit or loss (KRW)",
    "crdt_lnd_amt": "신용대출금액 credit loan (KRW)",
    "real_nass_amt": "실제순자산금액 net value: market value less credit loan (KRW)",
    "whol_weit_rt": "전체비중율 weight in the account, percent as sent by KIS",
}

GLOSSARY: dict[str, str] = {
    "snapshot_date": "Day of the snapshot (Asia/Seoul); days without a snapshot have no rows.",
    "account_id": "KIS account number CANO-ACNT_PRDT_CD.",
    "product_code": "ACNT_PRDT_CD, the account product code (21 uses the 17-row layout).",
    "layout": "Name of the output1 layout that labelled the rows (pipelines/kis/layouts.py).",
    "category_seq": "1-based position of the row in output1.",
    "category_code": "Stable snake_case name of the category, the same across layouts.",
    "category_ko": "Category label as the KIS spec spells it.",
    "category_en": "Category label in English.",
    "asset_class": "Roll-up of categories across layouts: equity, fund, bond, structured, "
    "managed, cash, fx, alternative, other (total for 합계).",
    "is_total": "True for the 합계 (total) row.",
    "fetched_at": "When the answer was received (UTC).",
    **{name: f"output1 {text}." for name, text in OUTPUT1_KO.items()},
    **{name: f"output2 {ko} (KRW)." for name, ko in OUTPUT2_FIELDS.items()},
    "purchase_amount": "Purchase amount (매입금액), KRW.",
    "market_value": "Market value (평가금액), KRW.",
    "unrealized_pnl": "Unrealized profit or loss (평가손익), KRW.",
    "credit_loan": "Credit loan (신용대출금액), KRW.",
    "net_value": "Market value less credit loan (실제순자산금액), KRW.",
    "weight_pct": "Weight in percent of the whole it belongs to (4 decimals, exact).",
    "asset_class_weight_pct": "Weight of the row's asset class in the account that day, percent.",
    "return_pct": "Unrealized P&L in percent of the purchase amount (NULL when nothing was "
    "bought).",
    "total_assets": "Total assets (총자산금액, tot_asst_amt), KRW.",
    "net_assets": "Net assets (순자산총금액, nass_tot_amt), KRW.",
    "securities_value": "Market value of securities (평가금액합계, evlu_amt_smtl), KRW.",
    "previous_snapshot_date": "The account's previous snapshot date (NULL for the first).",
    "days_since_previous": "Calendar days since the previous snapshot: more than 1 marks a gap "
    "(weekend, holiday, missed run); nothing is interpolated.",
    "total_assets_change": "Total assets minus the previous snapshot's, KRW.",
    "net_assets_change": "Net assets minus the previous snapshot's, KRW.",
    "net_assets_change_since_first": "Net assets minus the account's first snapshot's, KRW.",
    "accounts": "Number of accounts with a snapshot that day.",
    "has_snapshot": "Whether the account has a snapshot that day (false: a gap).",
    "target_pct": "Target weight of the asset class, percent (targets file).",
    "tolerance_pct": "Allowed distance from the target, percentage points (targets file).",
    "drift_pct": "Actual weight minus target weight, percentage points.",
    "within_band": "Whether the actual weight is within target ± tolerance.",
    "capture_day": "A capture day (KIS_CAPTURE_DAYS, Asia/Seoul) whose capture window closed "
    "without the account's snapshot: a gap that can no longer be filled.",
}

DERIVED_VIEWS: dict[str, tuple[str, str]] = {
    "latest_allocation": (
        "Each account's newest snapshot, one row per category (합계 row included).",
        """
        SELECT snapshot_date, account_id, product_code, layout, category_seq, category_code,
               category_ko, category_en, asset_class, is_total,
               pchs_amt AS purchase_amount, evlu_amt AS market_value,
               evlu_pfls_amt AS unrealized_pnl, crdt_lnd_amt AS credit_loan,
               real_nass_amt AS net_value, whol_weit_rt AS weight_pct, fetched_at
        FROM asset_categories
        QUALIFY snapshot_date = max(snapshot_date) OVER (PARTITION BY account_id)
        """,
    ),
    "net_asset_history": (
        "Per account and snapshot date: total assets, net assets, P&L, and the change from the "
        "previous snapshot and from the first. Gaps show in days_since_previous.",
        """
        SELECT
            snapshot_date,
            account_id,
            product_code,
            tot_asst_amt AS total_assets,
            nass_tot_amt AS net_assets,
            pchs_amt_smtl AS purchase_amount,
            evlu_amt_smtl AS securities_value,
            evlu_pfls_amt_smtl AS unrealized_pnl,
            lag(snapshot_date) OVER w AS previous_snapshot_date,
            snapshot_date - lag(snapshot_date) OVER w AS days_since_previous,
            tot_asst_amt - lag(tot_asst_amt) OVER w AS total_assets_change,
            nass_tot_amt - lag(nass_tot_amt) OVER w AS net_assets_change,
            nass_tot_amt - first_value(nass_tot_amt) OVER w AS net_assets_change_since_first,
            fetched_at
        FROM account_summary
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
        "All accounts together per snapshot date: total and net assets, P&L, and the change "
        "from the previous date with any snapshot.",
        """
        WITH days AS (
            SELECT snapshot_date, count(*) AS accounts,
                   sum(tot_asst_amt) AS total_assets, sum(nass_tot_amt) AS net_assets,
                   sum(evlu_pfls_amt_smtl) AS unrealized_pnl
            FROM account_summary GROUP BY snapshot_date
        )
        SELECT *, net_assets - lag(net_assets) OVER (ORDER BY snapshot_date) AS net_assets_change
        FROM days
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
