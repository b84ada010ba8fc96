"""Data checks on one day's tidy tables, run before anything is written.

Each check is declared once in `CHECKS` with what a failure does: `BLOCK` keeps the whole day
from being written (a schema that changed), `WITHHOLD` holds back only the account whose rows
would be wrong (an unknown layout, an amount that does not parse exactly, a duplicate), and
`WARN` writes the rows and says which account, which field and by how much. Relations between
fields come from one published sample (kis-api-facts.md), so they only warn.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.landing import Snapshot
from pipelines.kis import layouts
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS
from pipelines.lake import arrays, parquet, schema
from pipelines.storage.damage import Damage, DamagedFileError
from pipelines.storage.roots import Location

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
        "net_assets_match",
        "account_summary",
        Effect.WARN,
        "The 합계 row's real_nass_amt (net assets) equals output2 tot_asst_amt − loan_amt_smtl "
        "(likely, not known: KIS's published answers had no loan to show it). The rows are "
        "written either way; net assets are read from the 합계 row.",
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
    path: Location | None = None  # the landed answer


@dataclass
class Outcome:
    check: Check
    problems: list[str] = field(default_factory=list)
    #: Accounts a WITHHOLD check found only after flattening, as (account,) or (day, account)
    #: when the tables span days; their rows are dropped.
    withheld: set[tuple[Any, ...]] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return not self.problems


def _off(label: str, actual: Decimal | None, expected_label: str, expected: Decimal | None) -> str:
    return (
        f"{label}: {_text(actual)} ≠ {expected_label} {_text(expected)} "
        f"(off by {_text(_amount(actual) - _amount(expected))})"
    )


def _text(value: Decimal | None) -> str:
    """An amount as plain digits ("0.00000000", never "0E-8"), or NULL."""
    return "NULL" if value is None else format(value, "f")


def _amount(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


# Arrow scalars built without pa.scalar, which imports pandas (see arrays.py)
_ZERO = pc.cast(arrays.strings(["0"]), schema.AMOUNT)[0]
_ONE_32 = pc.cast(arrays.int64s([1]), pa.int32())[0]
_NULL_AMOUNT = pa.nulls(1, schema.AMOUNT)[0]
_OUTPUT1_KEYS = frozenset(OUTPUT1_FIELDS)
_OUTPUT2_KEYS = frozenset(OUTPUT2_FIELDS)


def field_problems(snap: Snapshot) -> list[str]:
    """Fields the spec lists that the answer left out, and fields it sent that the spec does
    not list (kept in the raw answer)."""
    if snap.output2.keys() == _OUTPUT2_KEYS and all(
        not isinstance(row, dict) or row.keys() == _OUTPUT1_KEYS for row in snap.output1
    ):
        return []  # the usual answer: exactly the spec's fields
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


#: The row of output1 that an output2 field equals in KIS's published sample.
OUTPUT2_ROWS = (("dncl_amt", "cash_deposit"), ("frcr_evlu_tota", "foreign_currency"))


def _keys(table: pa.Table) -> list[str]:
    """Rows are checked per account, and per day too when the table spans several days."""
    return [DAY, "account_id"] if DAY in table.column_names else ["account_id"]


#: A column tidy adds while it checks many days at once; never written.
DAY = "snapshot_date"


def _where(row: dict[str, Any]) -> str:
    day = f"{row[DAY]}: " if DAY in row else ""
    return f"{day}account {row['account_id']}"


def _answers(table: pa.Table, keys: list[str]) -> list[tuple[int, int]]:
    """The (start, stop) rows of each answer: a new one starts where the account (or day)
    changes or category_seq does not count on."""
    n = table.num_rows
    if n == 0:
        return []
    seq = table["category_seq"].combine_chunks().cast(pa.int32())
    new = pc.not_equal(seq.slice(1), pc.add(seq.slice(0, n - 1), _ONE_32))
    for key in keys:
        column = table[key].combine_chunks()
        new = pc.or_(new, pc.not_equal(column.slice(1), column.slice(0, n - 1)))
    starts = [0, *(i + 1 for i in pc.indices_nonzero(new).to_pylist())]
    return list(zip(starts, [*starts[1:], n], strict=True))


def _take(table: pa.Table, rows: list[int]) -> list[dict[str, Any]]:
    return table.take(arrays.int64s(rows)).to_pylist()


def run(
    snapshots: list[Snapshot],
    tables: dict[str, pa.Table],
    *,
    withheld: list[Withheld] | None = None,
    existing: Mapping[str, list[Location]] | None = None,
    damaged: list[Damage] | None = None,
) -> list[Outcome]:
    """Every check of `CHECKS` over accepted snapshots, the tables flattened from them, and
    the answers withheld before flattening.

    Amounts are summed and compared in Arrow per account (and day, when the tables carry a
    `snapshot_date` column for a batch of days); Python only sees one row per account and day.
    `existing` lists files the tables will replace; the first and last are read for their
    schema (a schema changes for every file at once, and footers cost a read each). One that
    cannot be read is as if missing (it is about to be replaced), noted in `damaged`.
    """
    outcomes = {(c.table, c.name): Outcome(c) for c in CHECKS}
    by_name = {c.name: c for c in CHECKS if c.name != "schema_unchanged"}
    dated = DAY in tables["asset_categories"].column_names

    def problem(name: str, text: str, *, table: str | None = None) -> None:
        outcomes[(table or by_name[name].table, name)].problems.append(text)

    for held in withheld or []:
        problem(held.check_name, held.reason)

    for snap in snapshots:
        day = f"{snap.snapshot_date}: " if dated else ""
        layout = layouts.find(snap.account.product_code, len(snap.output1))
        if layout is not None and not layout.current:
            current = layouts.for_product(snap.account.product_code)
            problem(
                "current_layout",
                f"{day}account {snap.account.id}: answered with {layout.row_count} rows, the "
                f"older layout {layout.name} without IMA (current: {current.name}, "
                f"{current.row_count} rows); labelled with {layout.name}",
            )
        for text in field_problems(snap):
            problem("documented_fields", day + text)

    categories, summary = tables["asset_categories"], tables["account_summary"]
    keys = _keys(categories)
    groups = _answers(categories, keys)
    heads = _take(categories.select(keys), [start for start, _ in groups])
    lasts = _take(
        categories.select(["is_total", "category_ko", *AMOUNTS]), [stop - 1 for _, stop in groups]
    )
    is_total = categories["is_total"].combine_chunks()
    # the 합계 row negated: an answer whose rows add up to it sums to zero, field by field
    signed = {}
    for name in AMOUNTS:
        values = categories[name].combine_chunks()
        signed[name] = pc.if_else(is_total, pc.negate(values), values)
    weights = pc.if_else(is_total, _NULL_AMOUNT, categories["whol_weit_rt"].combine_chunks())
    held_rows = pc.and_(
        pc.invert(is_total),
        pc.not_equal(categories["evlu_amt"].combine_chunks().fill_null(_ZERO), _ZERO),
    ).cast(pa.int64())
    total_rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (start, stop), head, last in zip(groups, heads, lasts, strict=True):
        where, n = _where(head), stop - start
        if not last["is_total"]:
            problem("total_row_is_sum", f"{where}: the last row is {last['category_ko']}, not 합계")
            continue
        total_rows[tuple(head[k] for k in keys)] = last
        for name in AMOUNTS:
            difference = pc.sum(signed[name].slice(start, n))
            if difference.is_valid and difference.as_py() != 0:
                added = _amount(pc.sum(categories[name].slice(start, n - 1)).as_py())
                problem(
                    "total_row_is_sum",
                    _off(f"{where}, {name}: 합계", last[name], "sum of rows", added),
                )
        evaluated = pc.sum(held_rows.slice(start, n)).as_py() or 0
        if evaluated:
            total_weight = _amount(pc.sum(weights.slice(start, n)).as_py())
            tolerance = WEIGHT_TOLERANCE_PER_ROW * evaluated
            if abs(total_weight - 100) > tolerance:
                problem(
                    "weights_sum_to_100",
                    f"{where}, whol_weit_rt: rows sum to {total_weight}, off 100 by "
                    f"{total_weight - 100} (tolerance {tolerance})",
                )

    answers = Counter(tuple(head[k] for k in keys) for head in heads)
    for key, count in answers.items():
        if count > 1:
            where = _where(dict(zip(keys, key, strict=True)))
            problem(
                "unique_categories",
                f"{where}: every category appears {count} times; withheld",
            )
            outcomes[("asset_categories", "unique_categories")].withheld.add(key)

    codes = arrays.strings([code for _, code in OUTPUT2_ROWS])
    anchored: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for row in (
        categories.filter(pc.is_in(categories["category_code"], codes))
        .select([*keys, "category_code", "category_ko", "evlu_amt"])
        .to_pylist()
    ):
        anchored.setdefault(tuple(row[k] for k in keys), {})[row["category_code"]] = row
    fields = [name for name, _ in OUTPUT2_ROWS] + ["tot_asst_amt", "loan_amt_smtl"]
    summary_rows = summary.select([*_keys(summary), *fields]).to_pylist()
    for totals_row in summary_rows:
        key = tuple(totals_row[k] for k in keys)
        where = _where(totals_row)
        for field_name, code in OUTPUT2_ROWS:
            row = anchored.get(key, {}).get(code)
            if row is not None and _amount(totals_row[field_name]) != _amount(row["evlu_amt"]):
                problem(
                    "output2_matches_rows",
                    _off(
                        f"{where}, {field_name}",
                        totals_row[field_name],
                        f"{row['category_ko']} row evlu_amt",
                        row["evlu_amt"],
                    ),
                )
        total = total_rows.get(key)
        if total is not None and _amount(totals_row["tot_asst_amt"]) != _amount(total["evlu_amt"]):
            problem(
                "total_assets_match",
                _off(
                    f"{where}, tot_asst_amt",
                    totals_row["tot_asst_amt"],
                    "합계 evlu_amt",
                    total["evlu_amt"],
                ),
            )
        if total is not None:
            gross, loans = _amount(totals_row["tot_asst_amt"]), _amount(totals_row["loan_amt_smtl"])
            if _amount(total["real_nass_amt"]) != gross - loans:
                problem(
                    "net_assets_match",
                    _off(
                        f"{where}, 합계 real_nass_amt",
                        total["real_nass_amt"],
                        f"tot_asst_amt {_text(gross)} − loan_amt_smtl {_text(loans)} =",
                        gross - loans,
                    ),
                )

    summary_keys = Counter(tuple(row[k] for k in _keys(summary)) for row in summary_rows)
    for key, count in summary_keys.items():
        if count > 1:
            where = _where(dict(zip(_keys(summary), key, strict=True)))
            problem("unique_accounts", f"{where}: {count} rows; withheld")
            outcomes[("account_summary", "unique_accounts")].withheld.add(key)

    for table_name, table in tables.items():
        declared = schema.TABLES[table_name]
        if DAY in table.column_names:
            table = table.drop_columns([DAY])
        if not table.schema.equals(declared):
            problem(
                "schema_unchanged",
                f"{table_name}: new data has schema {table.schema}, declared {declared}",
                table=table_name,
            )
        files = (existing or {}).get(table_name, [])
        for on_disk in files[:1] + files[1:][-1:]:
            found = _schema_of(on_disk, damaged)
            if found is not None and not found.equals(declared):
                problem(
                    "schema_unchanged",
                    f"{table_name}: the file on disk {on_disk} has another schema",
                    table=table_name,
                )
    return list(outcomes.values())


def _schema_of(location: Location, damaged: list[Damage] | None) -> pa.Schema | None:
    """The file's schema; None if it is missing or cannot be read (noted in `damaged`)."""
    try:
        return parquet.read_schema(location)
    except FileNotFoundError:
        return None
    except DamagedFileError as error:
        if damaged is not None:
            damaged.append(Damage.of(error, "replaced by this build, from raw"))
        return None
