"""Property-based tests over generated responses in every layout: labels, totals, exact
decimals, and the checks that flag a shuffled or truncated output1 (withholding the account
where its rows would be mislabelled)."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipelines.ingest.landing import Snapshot
from pipelines.kis import layouts
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.simulator.portfolio import output1_rows
from pipelines.tidy import build as tidy
from pipelines.tidy import checks, flatten

TODAY = date(2026, 11, 25)
ANCHORS = ("total", "cash_deposit", "foreign_currency")  # positions output2 or the sum pin down


@st.composite
def responses(draw: st.DrawFn) -> tuple[layouts.Layout, Account, date, dict[str, Any]]:
    """A self-consistent CTRP6548R body in any known layout, amounts up to 19 digits."""
    layout = draw(st.sampled_from(layouts.KNOWN))
    product = next(iter(layout.product_codes), None) or draw(st.sampled_from(["01", "19", "22"]))
    day = TODAY
    rows = []
    for _ in layout.categories[:-1]:
        held = draw(st.booleans())
        evlu = draw(st.integers(0, 5 * 10**17)) if held else 0
        pchs = draw(st.integers(0, 5 * 10**17)) if held else 0
        loan = draw(st.integers(0, evlu))
        rows.append({"pchs": pchs, "evlu": evlu, "loan": loan})
    output1 = output1_rows(rows)
    by_code = {c.code: row for c, row in zip(layout.categories, output1, strict=True)}
    output2 = {
        name: draw(st.sampled_from(["0", "12345", "185144504.000000"])) for name in OUTPUT2_FIELDS
    }
    output2["tot_asst_amt"] = output1[-1]["evlu_amt"]
    output2["loan_amt_smtl"] = output1[-1]["crdt_lnd_amt"]
    for field_name, code in (("dncl_amt", "cash_deposit"), ("frcr_evlu_tota", "foreign_currency")):
        if code in by_code:
            output2[field_name] = by_code[code]["evlu_amt"]
    return layout, Account("12345678", product), day, {"output1": output1, "output2": output2}


def snapshot(account: Account, day: date, body: dict[str, Any]) -> Snapshot:
    from datetime import UTC, datetime

    return Snapshot(
        account,
        day,
        datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
        body["output1"],
        body["output2"],
        Path("generated.json"),
    )


def tables_for(snap: Snapshot) -> dict:
    return {
        "asset_categories": flatten.asset_categories([snap]),
        "account_summary": flatten.account_summary([snap]),
    }


def failures(snap: Snapshot) -> dict[str, checks.Effect]:
    """Each failed check and its effect, deciding the account as the tidy step does."""
    tables, accepted, withheld = tidy.accept([snap])
    outcomes = checks.run(accepted, tables, withheld=withheld)
    return {o.check.name: o.check.effect for o in outcomes if not o.passed}


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(responses())
def test_generated_responses_label_round_trip_and_pass_every_check(generated: tuple) -> None:
    layout, account, day, body = generated
    snap = snapshot(account, day, body)
    tables = tables_for(snap)
    rows = tables["asset_categories"].to_pylist()
    assert [r["category_ko"] for r in rows] == [c.ko for c in layout.categories]
    assert [r["layout"] for r in rows] == [layout.name] * layout.row_count
    for row, sent in zip(rows, body["output1"], strict=True):
        assert [row[f] for f in OUTPUT1_FIELDS] == [Decimal(sent[f]) for f in OUTPUT1_FIELDS]
    # exact through a Parquet file as well
    buffer = io.BytesIO()
    pq.write_table(tables["asset_categories"], buffer)
    assert pq.read_table(io.BytesIO(buffer.getvalue())).to_pylist() == rows
    summary = tables["account_summary"].to_pylist()[0]
    assert [summary[f] for f in OUTPUT2_FIELDS] == [
        Decimal(body["output2"][f]) for f in OUTPUT2_FIELDS
    ]
    outcomes = checks.run([snap], tables)
    failed = [o.check.name for o in outcomes if not o.passed]
    # an answer in an old layout is labelled with it, and flagged as old: nothing else fails
    assert failed == ([] if layout.current else ["current_layout"])


@PROPERTY
@given(responses(), st.data())
def test_a_shuffle_that_moves_an_anchored_row_is_flagged(generated: tuple, data: Any) -> None:
    layout, account, day, body = generated
    order = data.draw(st.permutations(range(layout.row_count)))
    shuffled = [body["output1"][i] for i in order]
    anchored = [layout.position(code) for code in ANCHORS if layout.position(code) is not None]
    # a row whose valuation changes at a position the response itself pins down
    assume(any(shuffled[i]["evlu_amt"] != body["output1"][i]["evlu_amt"] for i in anchored))
    snap = snapshot(account, day, {**body, "output1": shuffled})
    assert failures(snap)  # written (the relations are only likely), but never silently


@PROPERTY
@given(responses(), st.data())
def test_a_truncated_output1_is_withheld_or_flagged_as_old(generated: tuple, data: Any) -> None:
    layout, account, day, body = generated
    dropped = data.draw(st.integers(0, layout.row_count - 1))
    truncated = [row for i, row in enumerate(body["output1"]) if i != dropped]
    snap = snapshot(account, day, {**body, "output1": truncated})
    failed = failures(snap)
    if layouts.find(account.product_code, len(truncated)) is None:
        assert failed["known_layout"] is checks.Effect.WITHHOLD
        assert tidy.accept([snap])[0]["asset_categories"].num_rows == 0
    else:  # a current answer that lost a row reads like the old layout: labelled, and flagged
        assert failed["current_layout"] is checks.Effect.WARN


def test_check_messages_say_account_field_and_by_how_much() -> None:
    account = Account("12345678", "01")
    from pipelines.simulator.portfolio import balance_body

    body = balance_body(account, TODAY)
    body["output1"][-1]["evlu_amt"] = str(int(body["output1"][-1]["evlu_amt"]) + 7)
    body["output2"]["dncl_amt"] = str(int(body["output2"]["dncl_amt"]) - 3)
    outcomes = {
        o.check.name: o
        for o in checks.run(
            [snapshot(account, TODAY, body)], tables_for(snapshot(account, TODAY, body))
        )
    }
    [total_problem] = outcomes["total_row_is_sum"].problems
    assert "12345678-01" in total_problem and "evlu_amt" in total_problem
    assert "off by 7" in total_problem
    [deposit_problem] = outcomes["output2_matches_rows"].problems
    assert "dncl_amt" in deposit_problem and "off by -3" in deposit_problem
    assert not outcomes["weights_sum_to_100"].problems
    [assets_problem] = outcomes["total_assets_match"].problems
    assert "off by -7" in assets_problem


@pytest.mark.parametrize(
    ("loans", "real_nass_delta", "warned"),
    [
        # a credit loan KIS reports in both places: net assets = total assets - loans
        (None, 0, False),
        # output2's loans are not what the 합계 row took off
        ("0", 0, True),
        # the 합계 row's net assets disagree with output2's total assets and loans
        (None, -1234, True),
    ],
)
def test_net_assets_are_checked_against_total_assets_less_loans(
    loans: str | None, real_nass_delta: int, warned: bool
) -> None:
    """The relation is likely, not known: a disagreement warns, naming the account, both
    values and the difference, and the rows are written all the same."""
    account = Account("12345678", "01")  # holds stocks on a credit loan
    from pipelines.simulator.portfolio import balance_body

    body = balance_body(account, TODAY)
    total = body["output1"][-1]
    assert Decimal(total["crdt_lnd_amt"]) > 0
    if loans is not None:
        body["output2"]["loan_amt_smtl"] = loans
    total["real_nass_amt"] = str(int(total["real_nass_amt"]) + real_nass_delta)
    snap = snapshot(account, TODAY, body)
    outcomes = {o.check.name: o for o in checks.run([snap], tables_for(snap))}
    outcome = outcomes["net_assets_match"]
    assert outcome.check.effect is checks.Effect.WARN
    assert outcome.check.table == "account_summary"
    if not warned:
        assert outcome.passed
        return
    [problem] = outcome.problems
    gross, credit = (
        Decimal(body["output2"]["tot_asst_amt"]),
        Decimal(body["output2"]["loan_amt_smtl"]),
    )
    expected = gross - credit
    real = Decimal(total["real_nass_amt"])
    assert "12345678-01" in problem and "real_nass_amt" in problem
    assert f"{real:.8f}" in problem and f"{expected:.8f}" in problem
    assert f"off by {real - expected:.8f}" in problem
    assert "E-" not in problem
    # written all the same: a warning never holds an account back
    tables, accepted, withheld = tidy.accept([snap])
    assert accepted and not withheld and tables["account_summary"].num_rows == 1


@pytest.mark.parametrize("table", ["asset_categories", "account_summary"])
def test_a_changed_schema_on_disk_is_reported(tmp_path: Path, table: str) -> None:
    import pyarrow as pa

    account = Account("12345678", "01")
    from pipelines.simulator.portfolio import balance_body

    snap = snapshot(account, TODAY, balance_body(account, TODAY))
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"x": [1]}), odd)
    outcomes = checks.run([snap], tables_for(snap), existing={table: [odd]})
    failed = [o for o in outcomes if not o.passed]
    assert [(o.check.table, o.check.name) for o in failed] == [(table, "schema_unchanged")]


AMOUNT_TEXTS = st.one_of(
    st.integers(-(10**19), 10**19).map(str),
    st.decimals(min_value=-(10**12), max_value=10**12, places=8, allow_nan=False).map(str),
    st.sampled_from(
        [
            "",
            " 12 ",
            "+7",
            "1e5",
            "12a",
            "１２",
            "0.123456789",
            "1.100000000",
            "9876543210987654321." + "0" * 20,
            "-0",
            "00042",
            None,
            12,
        ]
    ),
)


@PROPERTY
@given(st.lists(AMOUNT_TEXTS, min_size=1, max_size=6), st.sampled_from(OUTPUT1_FIELDS))
def test_the_vectorized_path_agrees_with_the_value_by_value_path(
    values: list[Any], field_name: str
) -> None:
    from pipelines.simulator.portfolio import balance_body

    account = Account("12345678", "01")
    body = balance_body(account, TODAY)
    for row, value in zip(body["output1"], values, strict=False):
        row[field_name] = value
    snap = snapshot(account, TODAY, body)
    outcomes = []
    for build in (flatten.asset_categories, flatten._asset_categories_one_by_one):
        try:
            outcomes.append(build([snap]).to_pylist())
        except flatten.SnapshotError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]
