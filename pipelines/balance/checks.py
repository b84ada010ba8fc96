"""Data checks on one day's tidy tables, run before anything is written.

Each check is declared once in `CHECKS` with what a failure does: `BLOCK` keeps the whole day
from being written (a schema that changed), `WITHHOLD` holds back only the account whose rows
would be wrong (an unknown layout, an amount that does not parse exactly, a duplicate), and
`WARN` writes the rows and says which account, which field and by how much. Relations between
fields come from one published sample (kis-api-facts.md), so they only warn.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.balance import layouts, schema
from pipelines.balance.landing import Snapshot
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS
from pipelines.storage import Location, open_input

AMOUNTS = tuple(f for f in OUTPUT1_FIELDS if f != "whol_weit_rt")
WEIGHT_TOLERANCE_PER_ROW = Decimal("0.01")  # each row's weight is rounded to 2 decimals


class Effect(enum.Enum):
    BLOCK = "nothing of the day is written"
    WITHHOLD = "that account's answer is held back; the other accounts are written"
    WARN = "written, with a warning"


@dataclass(frozen=True)
class Check:
    name: str
    table: str
    effect: Effect
    description: str

    @property
    def blocking(self) -> bool:
        """Stops the day (and what is built on it) from being written: a Dagster blocking check."""
        return self.effect is Effect.BLOCK

    @property
    def is_error(self) -> bool:
        return self.effect is not Effect.WARN


CHECKS: tuple[Check, ...] = (
    Check(
        "known_layout",
        "asset_categories",
        Effect.WITHHOLD,
        "Every account's answer is readable and its output1 matches a known layout for its "
        "product code and row count; an account that does not is withheld.",
    ),
    Check(
        "exact_amounts",
        "asset_categories",
        Effect.WITHHOLD,
        "Every amount of output1 and output2 is a decimal number that fits DECIMAL(38,8) "
        "exactly; an account with one that is not is withheld.",
    ),
    Check(
        "current_layout",
        "asset_categories",
        Effect.WARN,
        "Every account answers in the current layout (with the IMA row); an answer in the "
        "older 19-row (16 for product code 21) layout is labelled with it and warned about.",
    ),
    Check(
        "total_row_is_sum",
        "asset_categories",
        Effect.WARN,
        "The 합계 row is last and equals the sum of the other rows for every amount.",
    ),
    Check(
        "weights_sum_to_100",
        "asset_categories",
        Effect.WARN,
        "Weights (whol_weit_rt) of the non-total rows sum to 100 within the API's rounding.",
    ),
    Check(
        "unique_categories",
        "asset_categories",
        Effect.WITHHOLD,
        "No duplicate (account, date, category) row; an account with one is withheld.",
    ),
    Check(
        "schema_unchanged",
        "asset_categories",
        Effect.BLOCK,
        "The Parquet schema equals the declared one and the one already on disk.",
    ),
    Check(
        "documented_fields",
        "account_summary",
        Effect.WARN,
        "Every output1 row and output2 carry exactly the spec's fields: a missing field is "
        "stored as NULL, a field the spec does not list stays in the raw answer; both are "
        "reported.",
    ),
    Check(
        "output2_matches_rows",
        "account_summary",
        Effect.WARN,
        "output2.dncl_amt equals the 예수금 row and frcr_evlu_tota the 외화 row, where the "
        "layout has them, as in KIS's published sample (a shifted row would break this).",
    ),
    Check(
        "total_assets_match",
        "account_summary",
        Effect.WARN,
        "output2.tot_asst_amt equals the 합계 row's evlu_amt.",
    ),
    Check(
        "unique_accounts",
        "account_summary",
        Effect.WITHHOLD,
        "One row per account and date; an account with more is withheld.",
    ),
    Check(
        "schema_unchanged",
        "account_summary",
        Effect.BLOCK,
        "The Parquet schema equals the declared one and the one already on disk.",
    ),
)


@dataclass(frozen=True)
class Withheld:
    """An account's answer held back by a WITHHOLD check before it was flattened."""

    check_name: str
    account_id: str
    reason: str


@dataclass
class Outcome:
    check: Check
    problems: list[str] = field(default_factory=list)
    #: Accounts a WITHHOLD check found only after flattening; their rows are dropped.
    withheld: set[str] = field(default_factory=set)

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


def _off(label: str, actual: Decimal | None, expected_label: str, expected: Decimal | None) -> str:
    return (
        f"{label}: {actual} ≠ {expected_label} {expected} "
        f"(off by {_amount(actual) - _amount(expected)})"
    )


def field_problems(snap: Snapshot) -> list[str]:
    """Fields the spec lists that the answer left out, and fields it sent that the spec does
    not list (kept in the raw answer)."""
    account = snap.account.id
    problems = []
    for where, expected, rows in (
        ("output2", OUTPUT2_FIELDS, [snap.output2]),
        ("output1", OUTPUT1_FIELDS, snap.output1),
    ):
        present = [set(row) for row in rows if isinstance(row, dict)]
        missing = sorted({name for keys in present for name in expected if name not in keys})
        extra = sorted({name for keys in present for name in keys if name not in expected})
        if missing:
            problems.append(
                f"account {account}, {where}: {', '.join(missing)} missing; stored as NULL"
            )
        if extra:
            problems.append(
                f"account {account}, {where}: {', '.join(extra)} not in the spec; kept in the "
                "raw answer only"
            )
    return problems


def run(
    snapshots: list[Snapshot],
    tables: dict[str, pa.Table],
    *,
    withheld: list[Withheld] | None = None,
    existing: Mapping[str, Location] | None = None,
) -> list[Outcome]:
    """Every check of `CHECKS` over one day's accepted snapshots, the tables flattened from
    them, and the answers withheld before flattening."""
    outcomes = {(c.table, c.name): Outcome(c) for c in CHECKS}
    by_name = {c.name: c for c in CHECKS if c.name != "schema_unchanged"}

    def problem(name: str, text: str, *, table: str | None = None) -> None:
        outcomes[(table or by_name[name].table, name)].problems.append(text)

    for held in withheld or []:
        problem(held.check_name, held.reason)

    for snap in snapshots:
        layout = layouts.find(snap.account.product_code, len(snap.output1))
        if layout is not None and not layout.current:
            current = layouts.for_product(snap.account.product_code)
            problem(
                "current_layout",
                f"account {snap.account.id}: answered with {layout.row_count} rows, the older "
                f"layout {layout.name} without IMA (current: {current.name}, "
                f"{current.row_count} rows); labelled with {layout.name}",
            )
        for text in field_problems(snap):
            problem("documented_fields", text)

    categories = _rows_by_account(tables["asset_categories"])
    summary = {row["account_id"]: row for row in _python_rows(tables["account_summary"])}
    for account, rows in categories.items():
        *parts, total = rows
        if not total["is_total"]:
            problem(
                "total_row_is_sum",
                f"account {account}: the last row is {total['category_ko']}, not 합계",
            )
        for name in AMOUNTS:
            added = sum((_amount(r[name]) for r in parts), Decimal(0))
            if added != _amount(total[name]):
                problem(
                    "total_row_is_sum",
                    _off(f"account {account}, {name}: 합계", total[name], "sum of rows", added),
                )
        evaluated = [r for r in parts if _amount(r["evlu_amt"]) != 0]
        weights = sum((_amount(r["whol_weit_rt"]) for r in parts), Decimal(0))
        tolerance = WEIGHT_TOLERANCE_PER_ROW * max(len(evaluated), 1)
        if evaluated and abs(weights - 100) > tolerance:
            problem(
                "weights_sum_to_100",
                f"account {account}, whol_weit_rt: rows sum to {weights}, off 100 by "
                f"{weights - 100} (tolerance {tolerance})",
            )
        seen = Counter((r["category_seq"], r["category_code"]) for r in rows)
        for (seq, code), count in seen.items():
            if count > 1:
                problem(
                    "unique_categories",
                    f"account {account}: category {seq} {code} appears {count} times; withheld",
                )
                outcomes[("asset_categories", "unique_categories")].withheld.add(account)

        totals = summary.get(account)
        if totals is None:
            continue
        by_code = {r["category_code"]: r for r in rows}
        for field_name, code in (
            ("dncl_amt", "cash_deposit"),
            ("frcr_evlu_tota", "foreign_currency"),
        ):
            row = by_code.get(code)
            if row is not None and _amount(totals[field_name]) != _amount(row["evlu_amt"]):
                problem(
                    "output2_matches_rows",
                    _off(
                        f"account {account}, {field_name}",
                        totals[field_name],
                        f"{row['category_ko']} row evlu_amt",
                        row["evlu_amt"],
                    ),
                )
        if _amount(totals["tot_asst_amt"]) != _amount(total["evlu_amt"]):
            problem(
                "total_assets_match",
                _off(
                    f"account {account}, tot_asst_amt",
                    totals["tot_asst_amt"],
                    "합계 evlu_amt",
                    total["evlu_amt"],
                ),
            )

    for account, count in Counter(tables["account_summary"]["account_id"].to_pylist()).items():
        if count > 1:
            problem("unique_accounts", f"account {account}: {count} rows; withheld")
            outcomes[("account_summary", "unique_accounts")].withheld.add(account)

    for table_name, table in tables.items():
        declared = schema.TABLES[table_name]
        if not table.schema.equals(declared):
            problem(
                "schema_unchanged",
                f"{table_name}: new data has schema {table.schema}, declared {declared}",
                table=table_name,
            )
        on_disk = (existing or {}).get(table_name)
        if on_disk and on_disk.exists() and not _schema_of(on_disk).equals(declared):
            problem(
                "schema_unchanged",
                f"{table_name}: the file on disk {on_disk} has another schema",
                table=table_name,
            )
    return list(outcomes.values())


def _schema_of(location: Location) -> pa.Schema:
    with open_input(location) as source:
        return pq.read_schema(source)
