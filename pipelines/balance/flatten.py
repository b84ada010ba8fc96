"""Snapshots → tidy Arrow tables: output1 as one labelled row per category, output2 as one row.

Amount strings become exact decimals; a value that is not a number, or that would lose digits,
is refused with the account, field and row named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from pipelines.balance import layouts, schema
from pipelines.balance.landing import Snapshot, SnapshotError
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS

_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
_SCALE = schema.AMOUNT.scale
_INTEGER_DIGITS = schema.AMOUNT.precision - schema.AMOUNT.scale


def parse_amount(value: Any, *, where: str) -> Decimal | None:
    """An API amount string as an exact Decimal; a blank string is a missing value (NULL)."""
    if not isinstance(value, str):
        raise SnapshotError(f"{where}: expected a string amount, got {value!r}")
    text = value.strip()
    if text == "":
        return None
    if not _NUMBER.fullmatch(text):
        raise SnapshotError(f"{where}: {value!r} is not a decimal number")
    sign = "-" if text.startswith("-") else ""
    integer, _, fraction = text.lstrip("+-").partition(".")
    integer, fraction = integer.lstrip("0") or "0", fraction.rstrip("0")
    if len(fraction) > _SCALE or len(integer) > _INTEGER_DIGITS:
        raise SnapshotError(
            f"{where}: {value!r} does not fit DECIMAL{schema.AMOUNT.precision, _SCALE}"
            " without losing digits"
        )
    return Decimal(f"{sign}{integer}.{fraction}" if fraction else f"{sign}{integer}")


def _field(row: dict[str, Any], name: str, *, where: str) -> Any:
    if name not in row:
        raise SnapshotError(f"{where}: field {name!r} is missing")
    return row[name]


def asset_categories(snapshots: Iterable[Snapshot]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in schema.ASSET_CATEGORIES.names}
    for snap in snapshots:
        account_id = snap.account.id
        try:
            layout = layouts.resolve(
                snap.account.product_code,
                len(snap.output1),
                account_id=account_id,
                snapshot_date=snap.snapshot_date,
            )
        except layouts.UnknownLayoutError as error:
            raise SnapshotError(f"{error} (raw file: {snap.path})") from None
        for seq, (category, row) in enumerate(
            zip(layout.categories, snap.output1, strict=True), start=1
        ):
            where = f"account {account_id}, output1 row {seq} ({category.ko})"
            columns["account_id"].append(account_id)
            columns["product_code"].append(snap.account.product_code)
            columns["layout"].append(layout.name)
            columns["category_seq"].append(seq)
            columns["category_code"].append(category.code)
            columns["category_ko"].append(category.ko)
            columns["category_en"].append(category.en)
            columns["is_total"].append(category.is_total)
            for name in OUTPUT1_FIELDS:
                value = _field(row, name, where=where)
                columns[name].append(parse_amount(value, where=f"{where}, field {name}"))
            columns["fetched_at"].append(snap.fetched_at)
    return pa.table(columns, schema=schema.ASSET_CATEGORIES)


def account_summary(snapshots: Sequence[Snapshot]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in schema.ACCOUNT_SUMMARY.names}
    for snap in snapshots:
        where = f"account {snap.account.id}, output2"
        columns["account_id"].append(snap.account.id)
        columns["product_code"].append(snap.account.product_code)
        columns["fetched_at"].append(snap.fetched_at)
        for name in OUTPUT2_FIELDS:
            value = _field(snap.output2, name, where=where)
            columns[name].append(parse_amount(value, where=f"{where}, field {name}"))
    return pa.table(columns, schema=schema.ACCOUNT_SUMMARY)
