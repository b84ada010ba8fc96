"""The glossary of every warehouse column: what each column means, and per view where that is
more precise. The warehouse refuses to build a view or macro with a column missing here."""

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
    "net_assets": "Net assets (실제순자산금액, the 합계 row's real_nass_amt): every category, "
    "cash and foreign currency included, less credit loans, KRW. NULL when the answer had no "
    "output1 합계 row: unknown (output2's nass_tot_amt is securities only, never used for it).",
    "total_assets": "Total assets (총자산금액, output2 tot_asst_amt): every category at market "
    "value, before loans, KRW.",
    "securities_value": "Securities only (평가금액합계, output2 evlu_amt_smtl, = nass_tot_amt in "
    "KIS's answers: the 주식 and 해외주식 rows), KRW. Not the account's net assets.",
    "cash": "Cash: the deposit rows' evlu_amt added up (예수금, 예수금+CMA, 청약자예수금, chosen "
    "by category_code), KRW. NULL when the answer had no output1.",
    "loans": "Loans (대출금액합계, output2 loan_amt_smtl), KRW.",
    "previous_snapshot_date": "The previous snapshot date (NULL for the first): the account's "
    "own, or in consolidated_net_assets the previous date with any account's snapshot.",
    "days_since_previous": "Calendar days since the previous snapshot: more than 1 marks a gap "
    "(weekend, holiday, missed run); nothing is interpolated.",
    "total_assets_change": "Total assets minus the previous snapshot's, KRW.",
    "net_assets_change": "Net assets minus the previous snapshot's, KRW (NULL when either is "
    "unknown).",
    "net_assets_change_since_first": "Net assets minus the account's first known net assets, KRW.",
    "accounts": "Number of accounts with a snapshot that day.",
    "accounts_expected": "Number of accounts expected that day: each account from its first "
    "snapshot on; a configured account (table capture_accounts) up to today, an account no "
    "longer configured up to its last snapshot.",
    "is_complete": "Whether every expected account has a snapshot: false marks a total that "
    "leaves an account out (which is not a loss).",
    "missing_accounts": "The expected accounts without a snapshot (empty when complete).",
    "net_assets_change_accounts": "How many accounts the change covers: those with net assets "
    "on both this date and the previous one.",
    "net_assets_change_note": "Why the change is NULL, or what it leaves out (NULL when it "
    "covers every account of both dates).",
    "has_snapshot": "Whether the account has a snapshot that day (false: a gap).",
    "target_pct": "Target weight of the asset class, percent (targets file).",
    "tolerance_pct": "Allowed distance from the target, percentage points (targets file).",
    "drift_pct": "Actual weight minus target weight, percentage points.",
    "within_band": "Whether the actual weight is within target ± tolerance.",
    "capture_day": "A capture day (KIS_CAPTURE_DAYS, Asia/Seoul) whose capture window closed "
    "without the account's snapshot: a gap that can no longer be filled.",
    "is_simulated": "True when the data root's answers came from the KIS simulator (make demo, "
    "KIS_ENV=sim), not a real account: simulated numbers; NULL when the root holds both kinds "
    "(make doctor). The table data_source says it once.",
    "month": "The month (its first day).",
    "is_consolidated": "True on the row of every account together (account_id NULL), false on "
    "one account's row.",
    "snapshots": "Snapshots in the month.",
    "previous_month": "The previous month with a snapshot (of the account; on a consolidated "
    "row, of any account).",
    # columns of the table macros allocation_as_of and net_assets_as_of
    "as_of": "The date asked for: each account's newest snapshot on or before it.",
    "days_old": "Calendar days from the account's snapshot to as_of (0: that very day).",
}


#: What a column means in one view, where that is more precise than GLOSSARY's entry.
VIEW_GLOSSARY: dict[tuple[str, str], str] = {
    ("net_asset_history", "purchase_amount"): "Purchase amount of the whole account (the 합계 "
    "row's pchs_amt; deposits and foreign currency are sent as 0), KRW.",
    ("net_asset_history", "unrealized_pnl"): "Unrealized P&L of the whole account (the 합계 "
    "row's evlu_pfls_amt), KRW.",
    ("consolidated_net_assets", "net_assets"): "The net assets (합계 real_nass_amt) of every "
    "account with a snapshot that day, added up, KRW; a day that is not complete leaves the "
    "missing accounts out: compare like with like through net_assets_change.",
    ("consolidated_net_assets", "net_assets_change"): "Like for like: each account's change "
    "from the previous date with any snapshot, added up over the accounts with net assets on "
    "both dates only, KRW; NULL (see net_assets_change_note) when no account is on both. A "
    "missing account never shows as a loss.",
    ("consolidated_net_assets", "unrealized_pnl"): "Unrealized P&L (합계 evlu_pfls_amt) of the "
    "day's accounts added up, KRW.",
    ("net_assets_monthly", "account_id"): "KIS account number CANO-ACNT_PRDT_CD; NULL on a "
    "consolidated row (is_consolidated).",
    ("net_assets_monthly", "snapshot_date"): "The month-end snapshot: the account's last "
    "snapshot of the month (on a consolidated row, the latest of them).",
    ("net_assets_monthly", "snapshots"): "Snapshots in the month: the account's snapshot days "
    "(on a consolidated row, the days with any account's snapshot).",
    ("net_assets_monthly", "accounts"): "Accounts with a snapshot in the month (1 on an "
    "account's row).",
    ("net_assets_monthly", "accounts_expected"): "Accounts expected in the month: from the "
    "month of an account's first snapshot on; a configured account up to today, one no longer "
    "configured up to the month of its last snapshot (1 on an account's row).",
    ("net_assets_monthly", "is_complete"): "Whether every expected account has a snapshot in "
    "the month (true on an account's row).",
    ("net_assets_monthly", "missing_accounts"): "Expected accounts without any snapshot in the "
    "month.",
    ("net_assets_monthly", "net_assets"): "Month-end net assets (합계 real_nass_amt) at the "
    "account's last snapshot of the month; on a consolidated row, added up over the accounts "
    "with a snapshot in the month, each at its own last snapshot, KRW.",
    ("net_assets_monthly", "total_assets"): "Month-end total assets (tot_asst_amt), taken as "
    "net_assets is, KRW.",
    ("net_assets_monthly", "net_assets_change"): "Month-end net assets minus the previous "
    "month-end's (previous_month), KRW; on a consolidated row like for like, over the "
    "accounts with net assets at both month-ends only.",
    ("net_assets_monthly", "net_assets_change_accounts"): "How many accounts the change covers "
    "(those with net assets at both month-ends).",
    ("net_assets_monthly", "net_assets_change_note"): "Why the change is NULL, or what it "
    "leaves out (NULL when it covers every account of both months).",
}
