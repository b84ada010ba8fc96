"""Snapshots → tidy Arrow tables: output1 as one labelled row per category, output2 as one row.

Amount strings become exact decimals; a value that is not a number, or that would lose digits,
is refused with the account, field and row named. A field the answer leaves out, or sends
blank, is a missing value (NULL); the checks report it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import SnapshotError
from pipelines.ingest.landing import Snapshot
from pipelines.kis import layouts
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS
from pipelines.lake import arrays, schema

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


def _field(row: Any, name: str, *, where: str) -> Any:
    """A row's value, "" (NULL) where the field is absent; a row that is no object is refused."""
    if not isinstance(row, dict):
        raise SnapshotError(f"{where}: expected an object, got {row!r}")
    return row.get(name, "")


_MISSING = object()
_LABEL_STRINGS = (
    "account_id",
    "product_code",
    "layout",
    "category_code",
    "category_ko",
    "category_en",
)
_EMPTY = arrays.strings([""])[0]  # a scalar without pa.scalar, which imports pandas
_AMOUNT_TEXT = r"^([+-]?[0-9]+(\.[0-9]+)?)?$"  # digits with an optional fraction, or blank


def _amount_column(values: list[Any]) -> pa.Array:
    """Amount strings → DECIMAL in one vectorized cast; ValueError if any value needs the
    value-by-value path (which then either parses it or names what is wrong)."""
    try:
        text = arrays.strings(values)
    except TypeError as error:
        raise ValueError("not all strings") from error
    trimmed = pc.utf8_trim_whitespace(text)
    if not pc.all(pc.match_substring_regex(trimmed, _AMOUNT_TEXT)).as_py():
        raise ValueError("not all plain decimal numbers")
    blank = pc.equal(trimmed, _EMPTY)
    try:
        return pc.cast(
            pc.if_else(blank, pa.nulls(len(trimmed), pa.string()), trimmed), schema.AMOUNT
        )
    except pa.ArrowException as error:
        raise ValueError("does not fit the decimal type as written") from error


def asset_categories(snapshots: Iterable[Snapshot]) -> pa.Table:
    """output1 of every snapshot as labelled rows: vectorized, exact, or a precise refusal."""
    snapshots = list(snapshots)
    labels: dict[str, list[Any]] = {name: [] for name in schema.ASSET_CATEGORIES.names}
    for snap in snapshots:
        layout = _layout(snap)
        n = layout.row_count
        account_id = snap.account.id
        labels["account_id"] += [account_id] * n
        labels["product_code"] += [snap.account.product_code] * n
        labels["layout"] += [layout.name] * n
        labels["category_seq"] += range(1, n + 1)
        labels["category_code"] += [c.code for c in layout.categories]
        labels["category_ko"] += [c.ko for c in layout.categories]
        labels["category_en"] += [c.en for c in layout.categories]
        labels["is_total"] += [c.is_total for c in layout.categories]
        labels["fetched_at"] += [snap.fetched_at] * n
        for name in OUTPUT1_FIELDS:
            labels[name] += [
                row.get(name, "") if isinstance(row, dict) else _MISSING for row in snap.output1
            ]
    try:
        amounts = {name: _amount_column(labels.pop(name)) for name in OUTPUT1_FIELDS}
    except ValueError:
        return _asset_categories_one_by_one(snapshots)
    columns = {
        **{name: arrays.strings(labels[name]) for name in _LABEL_STRINGS},
        "category_seq": arrays.int16s(labels["category_seq"]),
        "is_total": arrays.bools(labels["is_total"]),
        "fetched_at": arrays.timestamps(labels["fetched_at"]),
    }
    return pa.table({**columns, **amounts}, schema=schema.ASSET_CATEGORIES)


def _layout(snap: Snapshot) -> layouts.Layout:
    try:
        return layouts.resolve(
            snap.account.product_code, len(snap.output1), account_id=snap.account.id
        )
    except layouts.UnknownLayoutError as error:
        raise SnapshotError(f"{error} (raw file: {snap.path})") from None


def _asset_categories_one_by_one(snapshots: Iterable[Snapshot]) -> pa.Table:
    """The exact reference path: parses value by value and names any bad value precisely."""
    columns: dict[str, list[Any]] = {name: [] for name in schema.ASSET_CATEGORIES.names}
    for snap in snapshots:
        account_id = snap.account.id
        layout = _layout(snap)
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
    """output2 of every snapshot as one row each: vectorized, exact, or a precise refusal."""
    columns = {
        "account_id": arrays.strings([s.account.id for s in snapshots]),
        "product_code": arrays.strings([s.account.product_code for s in snapshots]),
        "fetched_at": arrays.timestamps([s.fetched_at for s in snapshots]),
    }
    try:
        amounts = {
            name: _amount_column(
                [
                    s.output2.get(name, "") if isinstance(s.output2, dict) else _MISSING
                    for s in snapshots
                ]
            )
            for name in OUTPUT2_FIELDS
        }
    except ValueError:
        return _account_summary_one_by_one(snapshots)
    return pa.table({**columns, **amounts}, schema=schema.ACCOUNT_SUMMARY)


def _account_summary_one_by_one(snapshots: Sequence[Snapshot]) -> pa.Table:
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
