"""Landed snapshots → tidy Arrow tables: labels by layout, and every amount kept exactly."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.errors import SnapshotError
from pipelines.ingest.landing import RawLanding, Snapshot, read_snapshot
from pipelines.kis import layouts
from pipelines.kis.client import BalanceResponse, Page
from pipelines.kis.protocol import BALANCE_TR_ID, OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.lake import schema
from pipelines.lake.tables import ParquetTables
from pipelines.simulator.portfolio import balance_body
from pipelines.tidy import checks, flatten

STANDARD = Account.parse("12345678-01")
PRODUCT21 = Account.parse("12345678-21")
WHALE = Account.parse("98765432-19")  # CANO starting with 9: 19-digit totals
DAY = date(2024, 5, 2)
FETCHED_AT = datetime(2024, 5, 2, 6, 30, 15, 123456, tzinfo=UTC)

BIG = "9876543210987654321"  # 19 digits, above int64's maximum
BIG_NEGATIVE = "-1234567890123456789"
WEIGHT = "99.97000000"
SIX_DECIMALS = "185144504.000000"
INTEGER_DIGITS = schema.AMOUNT.precision - schema.AMOUNT.scale
SCALE = schema.AMOUNT.scale


def make_snapshot(account: Account, body: dict[str, Any] | None = None) -> Snapshot:
    body = balance_body(account, DAY) if body is None else body
    return Snapshot(
        account=account,
        snapshot_date=DAY,
        fetched_at=FETCHED_AT,
        output1=body["output1"],
        output2=body["output2"],
        path=Path(f"/landed/{account.id}.json"),
    )


def land(root: Path, account: Account, *bodies: dict[str, Any]) -> Path:
    """Land one fetch whose pages carry `bodies` as JSON text, as the client would."""
    pages = tuple(
        Page(200, BALANCE_TR_ID, "M" if i < len(bodies) - 1 else "D", json.dumps(body))
        for i, body in enumerate(bodies)
    )
    response = BalanceResponse(account, FETCHED_AT, pages)
    return RawLanding(root).land(response, DAY, source={"env": "sim"})


def rows_of(table: pa.Table, account: Account) -> list[dict[str, Any]]:
    return [row for row in table.to_pylist() if row["account_id"] == account.id]


# -- labelling ------------------------------------------------------------------------------


@pytest.mark.parametrize("account", [STANDARD, PRODUCT21], ids=lambda a: a.id)
def test_landed_snapshot_is_read_back_as_sent(tmp_path: Path, account: Account) -> None:
    body = balance_body(account, DAY)
    path = land(tmp_path, account, body)
    snap = read_snapshot(path)
    assert snap.account == account
    assert snap.snapshot_date == DAY
    assert snap.fetched_at == FETCHED_AT
    assert snap.output1 == body["output1"]
    assert snap.output2 == body["output2"]
    assert snap.path == path


def test_asset_categories_labels_each_account_by_its_layout(tmp_path: Path) -> None:
    bodies = {account: balance_body(account, DAY) for account in (STANDARD, PRODUCT21)}
    snaps = [read_snapshot(land(tmp_path, account, body)) for account, body in bodies.items()]
    table = flatten.asset_categories(snaps)

    assert table.schema.equals(schema.ASSET_CATEGORIES)
    expected_layouts = {STANDARD: layouts.STANDARD_20, PRODUCT21: layouts.PRODUCT21_17}
    assert table.num_rows == sum(layout.row_count for layout in expected_layouts.values())
    # Rows come out in snapshot order, each account's rows contiguous.
    assert table.column("account_id").to_pylist() == [
        account.id for account in bodies for _ in range(expected_layouts[account].row_count)
    ]
    for account, layout in expected_layouts.items():
        rows = rows_of(table, account)
        n = layout.row_count
        assert [r["layout"] for r in rows] == [layout.name] * n
        assert [r["product_code"] for r in rows] == [account.product_code] * n
        assert [r["category_ko"] for r in rows] == [c.ko for c in layout.categories]
        assert [r["category_en"] for r in rows] == [c.en for c in layout.categories]
        assert [r["category_code"] for r in rows] == [c.code for c in layout.categories]
        assert [r["category_seq"] for r in rows] == list(range(1, n + 1))
        assert [r["is_total"] for r in rows] == [False] * (n - 1) + [True]
        assert rows[-1]["category_ko"] == "합계"
        assert {r["fetched_at"] for r in rows} == {FETCHED_AT}


@pytest.mark.parametrize("account", [STANDARD, PRODUCT21, WHALE], ids=lambda a: a.id)
def test_every_output1_amount_equals_the_decimal_of_its_string(account: Account) -> None:
    body = balance_body(account, DAY)
    rows = flatten.asset_categories([make_snapshot(account, body)]).to_pylist()
    assert len(rows) == len(body["output1"])
    for row, sent in zip(rows, body["output1"], strict=True):
        for name in OUTPUT1_FIELDS:
            assert isinstance(row[name], Decimal)
            assert row[name] == Decimal(sent[name]), (row["category_seq"], name)


@pytest.mark.parametrize("account", [STANDARD, PRODUCT21, WHALE], ids=lambda a: a.id)
def test_every_output2_amount_equals_the_decimal_of_its_string(account: Account) -> None:
    body = balance_body(account, DAY)
    table = flatten.account_summary([make_snapshot(account, body)])
    assert table.schema.equals(schema.ACCOUNT_SUMMARY)
    [row] = table.to_pylist()
    assert row["account_id"] == account.id
    assert row["product_code"] == account.product_code
    assert row["fetched_at"] == FETCHED_AT
    for name in OUTPUT2_FIELDS:
        assert row[name] == Decimal(body["output2"][name]), name


def test_account_summary_has_one_row_per_snapshot_in_order() -> None:
    accounts = [PRODUCT21, WHALE, STANDARD]
    table = flatten.account_summary([make_snapshot(a) for a in accounts])
    assert table.column("account_id").to_pylist() == [a.id for a in accounts]


# -- exactness beyond int64 / float64 -------------------------------------------------------


def _extreme_body() -> dict[str, Any]:
    body = copy.deepcopy(balance_body(WHALE, DAY))
    first = body["output1"][0]
    first["pchs_amt"] = BIG
    first["evlu_pfls_amt"] = BIG_NEGATIVE
    first["whol_weit_rt"] = WEIGHT
    first["real_nass_amt"] = "9" * INTEGER_DIGITS + "." + "9" * SCALE  # the widest that fits
    body["output2"]["nass_tot_amt"] = SIX_DECIMALS
    body["output2"]["tot_asst_amt"] = BIG
    body["output2"]["evlu_pfls_amt_smtl"] = BIG_NEGATIVE
    return body


def test_float_would_lose_these_digits() -> None:
    """Guards the premise of the exactness tests: these values do not survive float64."""
    for text in (BIG, BIG_NEGATIVE):
        assert float(text) != Decimal(text)
        as_pandas = pd.Series([text, WEIGHT]).astype(float)  # what read_json/to_numeric gives
        assert Decimal(as_pandas.iloc[0]) != Decimal(text)


def test_extreme_amounts_are_exact_in_arrow() -> None:
    body = _extreme_body()
    snap = make_snapshot(WHALE, body)
    first = flatten.asset_categories([snap]).to_pylist()[0]
    for name in ("pchs_amt", "evlu_pfls_amt", "whol_weit_rt", "real_nass_amt"):
        assert first[name] == Decimal(body["output1"][0][name]), name
    [summary] = flatten.account_summary([snap]).to_pylist()
    for name in ("nass_tot_amt", "tot_asst_amt", "evlu_pfls_amt_smtl"):
        assert summary[name] == Decimal(body["output2"][name]), name


def _as_text(value: str) -> str:
    """How DECIMAL(38,8) prints an exact value: always 8 decimals."""
    return f"{Decimal(value):.{SCALE}f}"


def _column_types(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
    return {name: kind for name, kind, *_ in described}


def test_extreme_amounts_are_exact_through_parquet_and_duckdb(tmp_path: Path) -> None:
    body = _extreme_body()
    snap = make_snapshot(WHALE, body)
    tables = ParquetTables(tmp_path)
    categories = tables.write("asset_categories", DAY, flatten.asset_categories([snap]))
    summary = tables.write("account_summary", DAY, flatten.account_summary([snap]))

    with duckdb.connect() as con:
        types = _column_types(con, categories)
        for name in OUTPUT1_FIELDS:
            assert types[name] == "DECIMAL(38,8)", name

        sent_first = body["output1"][0]
        got = con.execute(
            "SELECT "
            + ", ".join(f"CAST({name} AS VARCHAR)" for name in OUTPUT1_FIELDS)
            + f" FROM read_parquet('{categories}') WHERE category_seq = 1"
        ).fetchone()
        assert got is not None
        assert list(got) == [_as_text(sent_first[name]) for name in OUTPUT1_FIELDS]

        # Every amount of every row, as DuckDB reads it, equals the string the API sent.
        rows = con.execute(
            f"SELECT {', '.join(OUTPUT1_FIELDS)} FROM read_parquet('{categories}') "
            "ORDER BY category_seq"
        ).fetchall()
        assert [list(r) for r in rows] == [
            [Decimal(sent[name]) for name in OUTPUT1_FIELDS] for sent in body["output1"]
        ]

        summary_types = _column_types(con, summary)
        names = list(OUTPUT2_FIELDS)
        assert {summary_types[name] for name in names} == {"DECIMAL(38,8)"}
        got2 = con.execute(
            f"SELECT {', '.join(f'CAST({n} AS VARCHAR)' for n in names)} "
            f"FROM read_parquet('{summary}')"
        ).fetchone()
        assert got2 is not None
        assert list(got2) == [_as_text(body["output2"][n]) for n in names]
        assert _as_text(SIX_DECIMALS) in got2 and _as_text(BIG) in got2


# -- missing, malformed and oversized values ------------------------------------------------


def test_blank_amounts_become_null(tmp_path: Path) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    body["output1"][3]["crdt_lnd_amt"] = ""
    body["output1"][4]["evlu_amt"] = "   "
    body["output2"]["thdt_rcvb_amt"] = ""
    snap = make_snapshot(STANDARD, body)
    rows = flatten.asset_categories([snap]).to_pylist()
    assert rows[3]["crdt_lnd_amt"] is None
    assert rows[4]["evlu_amt"] is None
    # Neighbours are untouched: only the blank cells are NULL.
    assert rows[3]["evlu_amt"] == Decimal(body["output1"][3]["evlu_amt"])
    assert sum(row[name] is None for row in rows for name in OUTPUT1_FIELDS) == 2
    [summary] = flatten.account_summary([snap]).to_pylist()
    assert summary["thdt_rcvb_amt"] is None
    assert [n for n in OUTPUT2_FIELDS if summary[n] is None] == ["thdt_rcvb_amt"]

    path = ParquetTables(tmp_path).write("account_summary", DAY, flatten.account_summary([snap]))
    with duckdb.connect() as con:
        (is_null,) = con.execute(
            f"SELECT thdt_rcvb_amt IS NULL FROM read_parquet('{path}')"
        ).fetchone() or (None,)
    assert is_null is True


NOT_AMOUNTS: list[Any] = [
    "12a",
    "1e5",
    "1,000",
    "--1",
    ".5",
    "1.",
    "NaN",
    "Infinity",
    "0x10",
    None,
    12,
    1.5,
    True,
    [],
]


@pytest.mark.parametrize("value", NOT_AMOUNTS, ids=repr)
def test_non_numeric_output1_value_is_refused_naming_where(value: Any) -> None:
    body = copy.deepcopy(balance_body(PRODUCT21, DAY))
    row_number, field = 5, "evlu_pfls_amt"
    body["output1"][row_number - 1][field] = value
    with pytest.raises(SnapshotError) as caught:
        flatten.asset_categories([make_snapshot(PRODUCT21, body)])
    message = str(caught.value)
    assert PRODUCT21.id in message
    assert f"row {row_number}" in message
    assert layouts.PRODUCT21_17.categories[row_number - 1].ko in message
    assert field in message
    assert repr(value) in message


@pytest.mark.parametrize("value", NOT_AMOUNTS, ids=repr)
def test_non_numeric_output2_value_is_refused_naming_where(value: Any) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    body["output2"]["frcr_evlu_tota"] = value
    with pytest.raises(SnapshotError) as caught:
        flatten.account_summary([make_snapshot(STANDARD, body)])
    message = str(caught.value)
    assert STANDARD.id in message
    assert "output2" in message
    assert "frcr_evlu_tota" in message


@pytest.mark.parametrize(
    "value",
    [
        "0." + "1" * (SCALE + 1),  # one decimal too many
        "1." + "0" * SCALE + "1",
        "-0." + "0" * SCALE + "5",
        "1" + "0" * INTEGER_DIGITS,  # one integer digit too many
        "-" + "9" * (INTEGER_DIGITS + 1),
        BIG * 2,
    ],
)
def test_amounts_that_would_lose_digits_are_refused(value: str) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    body["output1"][0]["whol_weit_rt"] = value
    with pytest.raises(SnapshotError) as caught:
        flatten.asset_categories([make_snapshot(STANDARD, body)])
    message = str(caught.value)
    assert STANDARD.id in message and "whol_weit_rt" in message and "row 1" in message


@pytest.mark.parametrize(
    "value",
    [
        "0." + "1" * SCALE,  # exactly the scale
        "1." + "2" * SCALE + "000",  # extra decimals that are zeros lose nothing
        "9" * INTEGER_DIGITS,  # exactly the integer digits
        "-" + "9" * INTEGER_DIGITS + "." + "9" * SCALE,
        "0" * 40 + "7",  # leading zeros are not digits of the value
        "+42",
        " 42 ",
        "-0",
    ],
)
def test_amounts_at_the_limits_are_kept_exactly(value: str) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    body["output1"][0]["whol_weit_rt"] = value
    [first, *_] = flatten.asset_categories([make_snapshot(STANDARD, body)]).to_pylist()
    assert first["whol_weit_rt"] == Decimal(value.strip())


def test_trailing_zero_decimals_never_escape_as_arrow_errors() -> None:
    value = BIG + "." + "0" * 20  # equals BIG exactly; 39 written digits
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    body["output1"][0]["pchs_amt"] = value
    try:
        table = flatten.asset_categories([make_snapshot(STANDARD, body)])
    except SnapshotError as error:  # a clear refusal would also be acceptable
        assert STANDARD.id in str(error) and "pchs_amt" in str(error)
        return
    assert table.to_pylist()[0]["pchs_amt"] == Decimal(value)


@pytest.mark.parametrize("field", ["real_nass_amt", "pchs_amt"])
def test_missing_output1_field_becomes_null_and_is_reported(field: str) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    del body["output1"][7][field]
    snap = make_snapshot(STANDARD, body)
    rows = flatten.asset_categories([snap]).to_pylist()
    assert rows[7][field] is None
    assert rows[6][field] == Decimal(body["output1"][6][field])
    [problem] = checks.field_problems(snap)
    assert STANDARD.id in problem and "output1" in problem and field in problem
    assert "NULL" in problem


def test_missing_output2_field_becomes_null_and_extra_fields_are_reported() -> None:
    body = copy.deepcopy(balance_body(PRODUCT21, DAY))
    del body["output2"]["tot_asst_amt"]
    body["output2"]["new_field_amt"] = "12"
    snap = make_snapshot(PRODUCT21, body)
    [row] = flatten.account_summary([snap]).to_pylist()
    assert row["tot_asst_amt"] is None
    assert row["dncl_amt"] == Decimal(body["output2"]["dncl_amt"])
    missing, extra = checks.field_problems(snap)
    assert PRODUCT21.id in missing and "tot_asst_amt missing; stored as NULL" in missing
    assert "new_field_amt not in the spec" in extra


@pytest.mark.parametrize("drop", [2, 3])
def test_unknown_row_count_is_refused_with_the_raw_file(drop: int) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    del body["output1"][:drop]
    snap = make_snapshot(STANDARD, body)
    with pytest.raises(SnapshotError) as caught:
        flatten.asset_categories([snap])
    message = str(caught.value)
    assert STANDARD.id in message
    assert f"{layouts.STANDARD_20.row_count - drop} rows" in message
    assert str(snap.path) in message


def test_a_19_row_answer_today_is_labelled_with_the_old_layout() -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    del body["output1"][layouts.STANDARD_20.position("ima")]
    rows = flatten.asset_categories([make_snapshot(STANDARD, body)]).to_pylist()
    assert [r["category_ko"] for r in rows] == [c.ko for c in layouts.STANDARD_19.categories]
    assert {r["layout"] for r in rows} == {"standard_19"}


# -- raw file shapes ------------------------------------------------------------------------


def test_capitalised_output_keys_are_accepted(tmp_path: Path) -> None:
    body = balance_body(PRODUCT21, DAY)
    capitalised = {
        "rt_cd": "0",
        "msg_cd": body["msg_cd"],
        "msg1": body["msg1"],
        "Output1": body["output1"],
        "Output2": body["output2"],
    }
    snap = read_snapshot(land(tmp_path, PRODUCT21, capitalised))
    assert snap.output1 == body["output1"]
    assert snap.output2 == body["output2"]
    assert flatten.asset_categories([snap]).equals(
        flatten.asset_categories([make_snapshot(PRODUCT21, body)])
    )


def test_output2_sent_as_a_one_element_list_is_accepted(tmp_path: Path) -> None:
    body = copy.deepcopy(balance_body(STANDARD, DAY))
    body["output2"] = [body["output2"]]
    snap = read_snapshot(land(tmp_path, STANDARD, body))
    assert snap.output2 == body["output2"][0]


@pytest.mark.parametrize("account", [STANDARD, PRODUCT21], ids=lambda a: a.id)
def test_pages_are_merged_in_order(tmp_path: Path, account: Account) -> None:
    body = balance_body(account, DAY)
    split = 6
    first = {**body, "output1": body["output1"][:split]}
    second = {**body, "output1": body["output1"][split:], "output2": []}
    path = land(tmp_path, account, first, second)
    assert len(json.loads(path.read_text())["pages"]) == 2
    snap = read_snapshot(path)
    assert snap.output1 == body["output1"]
    assert snap.output2 == body["output2"]
    merged = flatten.asset_categories([snap])
    assert merged.column("category_seq").to_pylist() == list(
        range(1, layouts.for_product(account.product_code).row_count + 1)
    )
    assert merged.equals(flatten.asset_categories([make_snapshot(account, body)]))


def test_three_pages_with_output2_only_on_the_last(tmp_path: Path) -> None:
    body = balance_body(STANDARD, DAY)
    rows = body["output1"]
    pages = [
        {"rt_cd": "0", "output1": rows[:7]},
        {"rt_cd": "0", "output1": rows[7:8]},
        {"rt_cd": "0", "output1": rows[8:], "output2": body["output2"]},
    ]
    snap = read_snapshot(land(tmp_path, STANDARD, *pages))
    assert snap.output1 == rows
    assert snap.output2 == body["output2"]


def test_page_without_output1_is_refused_with_the_message(tmp_path: Path) -> None:
    error_body = {"rt_cd": "1", "msg_cd": "OPSQ2000", "msg1": "ERROR : INPUT INVALID_CHECK_ACNO"}
    path = land(tmp_path, STANDARD, error_body)
    with pytest.raises(SnapshotError) as caught:
        read_snapshot(path)
    message = str(caught.value)
    assert STANDARD.id in message and "OPSQ2000" in message and "output1" in message


def test_missing_output2_is_refused(tmp_path: Path) -> None:
    body = balance_body(STANDARD, DAY)
    path = land(tmp_path, STANDARD, {"rt_cd": "0", "output1": body["output1"]})
    with pytest.raises(SnapshotError, match="output2"):
        read_snapshot(path)


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = land(tmp_path, STANDARD, balance_body(STANDARD, DAY))
    envelope = json.loads(path.read_text())
    envelope["format"] = "something-else/2"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(envelope))
    with pytest.raises(SnapshotError, match="not a kis-balance-raw/1 envelope"):
        read_snapshot(other)
