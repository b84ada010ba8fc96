"""Each account's totals from its output1 rows, per snapshot: the 합계 row's net value, purchase
amount and P&L, and the deposit rows added up as cash. One SQL text, run by compaction over a
closed month's rows (stored beside account_summary's) and by the warehouse over the rest.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.kis import layouts
from pipelines.lake import schema

#: The totals' columns, as compacted account_summary months store them and the views name them.
COLUMNS = pa.schema(
    [
        pa.field("net_assets", schema.AMOUNT),
        pa.field("purchase_amount", schema.AMOUNT),
        pa.field("unrealized_pnl", schema.AMOUNT),
        pa.field("cash", schema.AMOUNT),
    ]
)

#: The deposit rows, as an SQL list of category codes (declared in layouts.py).
CASH_CODES_SQL = ", ".join(f"'{code}'" for code in sorted(layouts.CASH_DEPOSIT_CODES))


def sql(source: str = "asset_categories", where: str = "true") -> str:
    """Per snapshot_date and account_id of `source` (a table or a parenthesized query with
    asset_categories' columns), in one filtered pass; `where` narrows the rows (e.g. to one
    day)."""
    return f"""
    SELECT snapshot_date, account_id,
           sum(real_nass_amt) FILTER (WHERE is_total) AS net_assets,
           sum(pchs_amt) FILTER (WHERE is_total) AS purchase_amount,
           sum(evlu_pfls_amt) FILTER (WHERE is_total) AS unrealized_pnl,
           sum(evlu_amt) FILTER (WHERE NOT is_total) AS cash
    FROM {source}
    WHERE (is_total OR category_code IN ({CASH_CODES_SQL})) AND ({where})
    GROUP BY snapshot_date, account_id
    """


def attach(summary: pa.Table, categories: pa.Table) -> pa.Table:
    """`summary` (account_summary rows with snapshot_date) with the totals of `categories`
    (asset_categories rows of the same days) as COLUMNS, NULL where an account has no output1
    rows; sorted by day and account."""
    names = ", ".join(f"t.{name}" for name in COLUMNS.names)
    with duckdb.connect() as con:
        con.register("summary", summary)
        con.register("categories", categories)
        joined = con.sql(
            f"SELECT s.*, {names} FROM summary s "
            f"LEFT JOIN ({sql('categories')}) t USING (snapshot_date, account_id) "
            "ORDER BY snapshot_date, account_id"
        ).to_arrow_table()
    return joined.cast(pa.schema([*summary.schema, *COLUMNS]))
