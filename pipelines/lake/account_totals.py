"""Each account's totals from its output1 rows, per snapshot: the 합계 row's net value, purchase
amount and P&L, and the deposit rows added up as cash. One SQL text, run by compaction over a
closed month's rows (stored beside account_summary's) and by the warehouse over the rest.
"""

from __future__ import annotations

from datetime import date
from decimal import MAX_PREC, Decimal, localcontext

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.kis import layouts
from pipelines.lake import arrays, schema

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
    rows, added up as `sql` does (NULLs skipped; NULL if nothing to add).

    In Python over the few rows that count (the 합계 and deposit rows), not in DuckDB or with
    pyarrow's group_by: both import pandas, which a run never needs otherwise. Tests hold this
    equal to `sql` (the views answer the same from compacted months and from daily files).
    """
    cash_codes = arrays.strings(sorted(layouts.CASH_DEPOSIT_CODES))
    counted = categories.filter(
        pc.or_(categories["is_total"], pc.is_in(categories["category_code"], cash_codes))
    )
    keys = zip(counted["snapshot_date"].to_pylist(), counted["account_id"].to_pylist(), strict=True)
    is_total = counted["is_total"].to_pylist()
    fields = {"net_assets": "real_nass_amt", "purchase_amount": "pchs_amt"}
    fields |= {"unrealized_pnl": "evlu_pfls_amt", "cash": "evlu_amt"}
    values = {name: counted[field].to_pylist() for name, field in fields.items()}
    sums: dict[tuple[date, str], dict[str, Decimal]] = {}
    with localcontext(prec=MAX_PREC):  # exact: never rounded to the default 28 digits
        for row, key in enumerate(keys):
            found = sums.setdefault(key, {})
            for name in COLUMNS.names:
                value = values[name][row]
                if value is not None and is_total[row] == (name != "cash"):
                    found[name] = found.get(name, Decimal(0)) + value
    order = zip(
        summary["snapshot_date"].to_pylist(), summary["account_id"].to_pylist(), strict=True
    )
    rows = [sums.get(key, {}) for key in order]
    columns = [_amounts([row.get(name) for row in rows]) for name in COLUMNS.names]
    return pa.Table.from_arrays(
        [*summary.columns, *columns], schema=pa.schema([*summary.schema, *COLUMNS])
    )


def _amounts(values: list[Decimal | None]) -> pa.Array:
    """Exact amounts as schema.AMOUNT, None as NULL, without pa.array (see arrays.py)."""
    text = arrays.strings(["" if v is None else format(v, "f") for v in values])
    missing = arrays.bools([v is None for v in values])
    return pc.cast(pc.if_else(missing, pa.nulls(len(values), pa.string()), text), schema.AMOUNT)
