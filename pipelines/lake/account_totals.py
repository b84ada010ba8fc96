"""Each account's totals from its output1 rows, per snapshot: the 합계 row's net value, purchase
amount and P&L, and the deposit rows added up as cash. Declared once (FROM_OUTPUT1), added up by
the warehouse in SQL for the months read by day (`sql`) and by compaction in Python for closed
months (`attach`, stored beside account_summary's columns).
"""

from __future__ import annotations

from datetime import date
from decimal import MAX_PREC, Decimal, localcontext

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.kis import layouts
from pipelines.lake import arrays, schema

#: Each total → (the output1 field added up, whether from the 합계 row; else the deposit rows).
FROM_OUTPUT1 = {
    "net_assets": ("real_nass_amt", True),
    "purchase_amount": ("pchs_amt", True),
    "unrealized_pnl": ("evlu_pfls_amt", True),
    "cash": ("evlu_amt", False),
}
#: The totals' columns, as compacted account_summary months store them and the views name them.
COLUMNS = pa.schema([pa.field(name, schema.AMOUNT) for name in FROM_OUTPUT1])

#: The deposit rows, as an SQL list of category codes (declared in layouts.py).
CASH_CODES_SQL = ", ".join(f"'{code}'" for code in sorted(layouts.CASH_DEPOSIT_CODES))


def sql(source: str = "asset_categories", where: str = "true") -> str:
    """Per snapshot_date and account_id of `source` (a table or a parenthesized query with
    asset_categories' columns), in one filtered pass; `where` narrows the rows (e.g. to one
    day)."""
    sums = ", ".join(
        f"sum({field}) FILTER (WHERE {'' if of_total else 'NOT '}is_total) AS {name}"
        for name, (field, of_total) in FROM_OUTPUT1.items()
    )
    return f"""
    SELECT snapshot_date, account_id, {sums}
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
    values = {name: counted[field].to_pylist() for name, (field, _) in FROM_OUTPUT1.items()}
    sums: dict[tuple[date, str], dict[str, Decimal]] = {}
    with localcontext(prec=MAX_PREC):  # exact: never rounded to the default 28 digits
        for row, key in enumerate(keys):
            found = sums.setdefault(key, {})
            for name, (_, of_total) in FROM_OUTPUT1.items():
                value = values[name][row]
                if value is not None and is_total[row] == of_total:
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
