"""Data checks on one day's tidy tables, run before anything is written.

Each check is declared once in `CHECKS` (name, table, whether a failure blocks the write) and
says which account, which field and by how much when it fails.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.balance import layouts, schema
from pipelines.balance.landing import Snapshot
from pipelines.kis.protocol import OUTPUT1_FIELDS

AMOUNTS = tuple(f for f in OUTPUT1_FIELDS if f != "whol_weit_rt")
WEIGHT_TOLERANCE_PER_ROW = Decimal("0.01")  # each row's weight is rounded to 2 decimals


@dataclass(frozen=True)
class Check:
    name: str
    table: str
    blocking: bool
    description: str


CHECKS: tuple[Check, ...] = (
    Check(
        "known_layout",
        "asset_categories",
        True,
        "Every account's output1 matches a known layout for its product code and row count.",
    ),
    Check(
        "total_row_is_sum",
        "asset_categories",
        True,
        "The 합계 row is last and equals the sum of the other rows for every amount.",
    ),
    Check(
        "weights_sum_to_100",
        "asset_categories",
        False,
        "Weights (whol_weit_rt) of the non-total rows sum to 100 within the API's rounding.",
    ),
    Check(
        "unique_categories", "asset_categories", True, "No duplicate (account, date, category) row."
    ),
    Check(
        "schema_unchanged",
        "asset_categories",
        True,
        "The Parquet schema equals the declared one and the one already on disk.",
    ),
    Check(
        "output2_matches_rows",
        "account_summary",
        True,
        "output2.dncl_amt equals the 예수금 row and frcr_evlu_tota the 외화 row, where the "
        "layout has them: a shifted row would break this.",
    ),
    Check(
        "total_assets_match",
        "account_summary",
        False,
        "output2.tot_asst_amt equals the 합계 row's evlu_amt.",
    ),
    Check("unique_accounts", "account_summary", True, "One row per account and date."),
    Check(
        "schema_unchanged",
        "account_summary",
        True,
        "The Parquet schema equals the declared one and the one already on disk.",
    ),
)


@dataclass
class Outcome:
    check: Check
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def _python_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, without fetched_at: no check needs it, and converting a zoned timestamp
    makes pyarrow import pandas (see arrays.py)."""
    return table.drop_columns(["fetched_at"]).to_pylist()


def _rows_by_account(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(_python_rows(table), key=lambda r: (r["account_id"], r["category_seq"])):
        rows[row["account_id"]].append(row)
    return rows


def _amount(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


def run(
    snapshots: list[Snapshot],
    tables: dict[str, pa.Table],
    *,
    existing: dict[str, Path] | None = None,
) -> list[Outcome]:
    """Every check of `CHECKS` over one day's snapshots and the tables flattened from them."""
    outcomes = {(c.table, c.name): Outcome(c) for c in CHECKS}

    def problem(table: str, name: str, text: str) -> None:
        outcomes[(table, name)].problems.append(text)

    for snap in snapshots:
        try:
            layouts.resolve(
                snap.account.product_code,
                len(snap.output1),
                account_id=snap.account.id,
                snapshot_date=snap.snapshot_date,
            )
        except layouts.UnknownLayoutError as error:
            problem("asset_categories", "known_layout", str(error))

    categories = _rows_by_account(tables["asset_categories"])
    summary = {row["account_id"]: row for row in _python_rows(tables["account_summary"])}
    for account, rows in categories.items():
        *parts, total = rows
        if not total["is_total"]:
            problem(
                "asset_categories",
                "total_row_is_sum",
                f"account {account}: the last row is {total['category_ko']}, not 합계",
            )
        for name in AMOUNTS:
            added = sum((_amount(r[name]) for r in parts), Decimal(0))
            if added != _amount(total[name]):
                problem(
                    "asset_categories",
                    "total_row_is_sum",
                    f"account {account}, {name}: 합계 {total[name]} ≠ sum of rows {added} "
                    f"(off by {_amount(total[name]) - added})",
                )
        evaluated = [r for r in parts if _amount(r["evlu_amt"]) != 0]
        weights = sum((_amount(r["whol_weit_rt"]) for r in parts), Decimal(0))
        tolerance = WEIGHT_TOLERANCE_PER_ROW * max(len(evaluated), 1)
        if evaluated and abs(weights - 100) > tolerance:
            problem(
                "asset_categories",
                "weights_sum_to_100",
                f"account {account}, whol_weit_rt: rows sum to {weights}, off 100 by "
                f"{weights - 100} (tolerance {tolerance})",
            )
        seen = Counter((r["category_seq"], r["category_code"]) for r in rows)
        for (seq, code), count in seen.items():
            if count > 1:
                problem(
                    "asset_categories",
                    "unique_categories",
                    f"account {account}: category {seq} {code} appears {count} times",
                )

        totals = summary.get(account)
        if totals is None:
            continue
        by_code = {r["category_code"]: r for r in rows}
        for field_name, code in (
            ("dncl_amt", "cash_deposit"),
            ("frcr_evlu_tota", "foreign_currency"),
        ):
            if code in by_code and _amount(totals[field_name]) != _amount(
                by_code[code]["evlu_amt"]
            ):
                row = by_code[code]
                problem(
                    "account_summary",
                    "output2_matches_rows",
                    f"account {account}, {field_name}: {totals[field_name]} ≠ "
                    f"{row['category_ko']} row evlu_amt {row['evlu_amt']} (off by "
                    f"{_amount(totals[field_name]) - _amount(row['evlu_amt'])})",
                )
        if _amount(totals["tot_asst_amt"]) != _amount(total["evlu_amt"]):
            problem(
                "account_summary",
                "total_assets_match",
                f"account {account}, tot_asst_amt: {totals['tot_asst_amt']} ≠ 합계 evlu_amt "
                f"{total['evlu_amt']} (off by "
                f"{_amount(totals['tot_asst_amt']) - _amount(total['evlu_amt'])})",
            )

    for account, count in Counter(tables["account_summary"]["account_id"].to_pylist()).items():
        if count > 1:
            problem("account_summary", "unique_accounts", f"account {account}: {count} rows")

    for table_name, table in tables.items():
        declared = schema.TABLES[table_name]
        if not table.schema.equals(declared):
            problem(
                table_name,
                "schema_unchanged",
                f"{table_name}: new data has schema {table.schema}, declared {declared}",
            )
        on_disk = (existing or {}).get(table_name)
        if on_disk and on_disk.exists() and not pq.read_schema(on_disk).equals(declared):
            problem(
                table_name,
                "schema_unchanged",
                f"{table_name}: the file on disk {on_disk} has another schema",
            )
    return list(outcomes.values())
