"""kis-redact: account numbers masked everywhere, no credentials, and amounts replaced while
zeros, signs, decimals and every sum the original had are kept exactly."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipelines.commands import redact as redaction
from pipelines.commands.redact import Amount, RedactionError, fake_cano, redact
from pipelines.commands.redact.amounts import amount_at
from pipelines.ingest.landing import RawLanding, read_snapshot
from pipelines.kis import layouts, protocol
from pipelines.kis.client import BalanceResponse, Credentials, KisClient, Page
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.kis.tokens import TokenCache
from pipelines.lake.tables import ParquetTables
from pipelines.simulator.portfolio import balance_body, output1_rows
from pipelines.simulator.server import Simulator
from pipelines.tidy import build as tidy
from pipelines.tidy import checks, flatten
from tests.test_replay import land_copy

KEY = b"test-redaction-key"
DAY = date(2025, 12, 15)
FETCHED_AT = datetime(2025, 12, 15, 9, 31, 7, tzinfo=UTC)
SOURCE = {"env": "sim", "server": "embedded simulator (loopback)", "simulated": True}
AMOUNTS = tuple(f for f in OUTPUT1_FIELDS if f != "whol_weit_rt")


def land(
    root: Path,
    account: Account,
    bodies: list[str | dict[str, Any]],
    *,
    source: dict[str, Any] | None = None,
    day: date = DAY,
) -> Path:
    """A landed file, written by RawLanding, with these page bodies (dicts become JSON)."""
    pages = tuple(
        Page(
            200,
            protocol.BALANCE_TR_ID,
            "M" if n < len(bodies) - 1 else "D",
            body if isinstance(body, str) else json.dumps(body, ensure_ascii=False),
        )
        for n, body in enumerate(bodies)
    )
    response = BalanceResponse(account, FETCHED_AT, pages)
    return RawLanding(root).land(response, day, source=source or SOURCE)


def envelope_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def parts(envelope: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """output1 rows over every page and each page's output2, from an envelope."""
    rows: list[dict[str, str]] = []
    summaries: list[dict[str, str]] = []
    for page in envelope["pages"]:
        body = json.loads(page["body"])
        rows += protocol.body_key(body, "output1")
        summary = protocol.body_key(body, "output2")
        summaries += summary if isinstance(summary, list) else [summary]
    return rows, summaries


def sign(text: str) -> int:
    value = Decimal(text)
    return (value > 0) - (value < 0)


def decimals(text: str) -> int:
    return len(text.strip().partition(".")[2])


def amounts_of(envelope: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, text) of every amount, weights aside, in file order."""
    rows, summaries = parts(envelope)
    found = [(f"row {i} {k}", row[k]) for i, row in enumerate(rows) for k in AMOUNTS]
    found += [(f"output2 {n} {k}", s[k]) for n, s in enumerate(summaries) for k in s]
    return found


def assert_shape_kept(original: dict[str, Any], copy: dict[str, Any]) -> None:
    """Zeros are zeros as written, signs and decimals kept, within the spec's 19 characters."""
    before, after = amounts_of(original), amounts_of(copy)
    assert [w for w, _ in before] == [w for w, _ in after]
    for (where, old), (_, new) in zip(before, after, strict=True):
        if Decimal(old) == 0:
            assert new == old, where
        assert sign(new) == sign(old), (where, old, new)
        assert decimals(new) == decimals(old), (where, old, new)
        assert len(new) <= 19, (where, new)


def assert_sums_kept(original: dict[str, Any], copy: dict[str, Any]) -> None:
    """합계 = sum of the rows where it was; every output2 field that equalled an output1 value
    still equals one of the values it equalled (two cells that were equal by chance need not
    stay equal), and output2 fields that were equal still are."""
    rows, summaries = parts(original)
    new_rows, new_summaries = parts(copy)
    for name in AMOUNTS:
        was = Decimal(rows[-1][name]) == sum(Decimal(r[name]) for r in rows[:-1])
        now = Decimal(new_rows[-1][name]) == sum(Decimal(r[name]) for r in new_rows[:-1])
        assert was == now, name
    cells = [(i, k) for i, row in enumerate(rows) for k in AMOUNTS]
    for summary, new_summary in zip(summaries, new_summaries, strict=True):
        for name, text in summary.items():
            if Decimal(text) == 0:
                continue
            equal = [(i, k) for i, k in cells if Decimal(rows[i][k]) == Decimal(text)]
            if equal:
                new_value = Decimal(new_summary[name])
                assert any(Decimal(new_rows[i][k]) == new_value for i, k in equal), name
            for other, other_text in summary.items():
                if Decimal(other_text) == Decimal(text):
                    assert Decimal(new_summary[other]) == Decimal(new_summary[name])


def outcomes(envelope: dict[str, Any], tmp_path: Path) -> dict[str, list[str]]:
    """Which checks fail on a file's answer: check name → the fields its problems name."""
    path = tmp_path / f"check-{id(envelope)}.json"
    path.write_text(json.dumps(envelope, ensure_ascii=False))
    snap = read_snapshot(path)
    tables = {
        "asset_categories": flatten.asset_categories([snap]),
        "account_summary": flatten.account_summary([snap]),
    }
    return {
        f"{o.check.table}.{o.check.name}": [
            (re.match(r"account [^,:]+, (\w+)", p) or re.match("", p)).group(1 if "," in p else 0)
            for p in o.problems
        ]
        for o in checks.run([snap], tables)
    }


# -- account numbers ------------------------------------------------------------------------
def test_the_account_number_is_masked_everywhere(tmp_path: Path) -> None:
    account = Account("13572468", "21")
    body = balance_body(account, DAY)
    body["msg1"] = "계좌 13572468-21 조회되었습니다"
    body["output2"]["cano_echo"] = "13572468"
    body["output2"]["acnt_echo"] = "1357246821"
    path = land(tmp_path, account, [body])

    copy = redact(envelope_of(path), key=KEY)
    text = copy.text()

    fake = fake_cano("13572468", KEY)
    assert "13572468" not in text
    assert len(fake) == 8 and fake.isdigit() and fake != "13572468"
    assert copy.account_id == f"{fake}-21" == copy.envelope["account_id"]
    assert copy.envelope["request"]["params"]["CANO"] == fake
    assert copy.envelope["request"]["params"]["ACNT_PRDT_CD"] == "21"  # the layout needs it
    [page] = copy.envelope["pages"]
    masked = json.loads(page["body"])
    assert masked["msg1"] == f"계좌 {fake}-21 조회되었습니다"
    assert masked["output2"]["cano_echo"] == fake
    assert masked["output2"]["acnt_echo"] == f"{fake}21"
    assert masked["output1"] == body["output1"]  # amounts as received without amounts_seed
    assert copy.envelope["redacted"]["amounts"] == "as received"
    # stable per key, different for another key
    assert fake_cano("13572468", KEY) == fake != fake_cano("13572468", b"another key")
    assert fake_cano("13572469", KEY) != fake


def test_an_amount_that_contains_the_account_number_is_refused_unless_replaced(
    tmp_path: Path,
) -> None:
    account = Account("13572468", "01")
    body = balance_body(account, DAY)
    body["output1"][0]["pchs_amt"] = "9135724680"
    body["output1"][0]["evlu_pfls_amt"] = str(
        int(body["output1"][0]["evlu_amt"]) - int(body["output1"][0]["pchs_amt"])
    )
    envelope = envelope_of(land(tmp_path, account, [body]))
    with pytest.raises(RedactionError, match="--amounts"):
        redact(envelope, key=KEY)
    assert "13572468" not in redact(envelope, key=KEY, amounts_seed=1).text()


def test_the_default_key_is_made_once_and_owner_only(isolated_env: Path) -> None:
    key = redaction.default_key()
    path = redaction.default_key_path()
    assert path.is_file() and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert redaction.default_key() == key


@pytest.mark.parametrize(
    ("server", "kept"),
    [
        (protocol.REAL_BASE_URL, True),
        ("https://openapi.koreainvestment.com:9443/", True),
        ("http://127.0.0.1:8765", True),
        ("http://localhost:8765", True),
        ("embedded simulator (loopback)", True),
        ("https://kis-proxy.example.internal:9443", False),
        ("https://user:pw@openapi.koreainvestment.com:9443", False),
        ("https://openapi.koreainvestment.com:9443/?key=x", False),
        ("http://192.168.0.10:8765", False),
    ],
)
def test_the_server_is_kept_only_when_it_says_nothing_about_the_user(
    tmp_path: Path, server: str, kept: bool
) -> None:
    account = Account("12345678", "01")
    source = {"env": "real", "server": server, "simulated": False, "host": "my-laptop"}
    path = land(tmp_path, account, [balance_body(account, DAY)], source=source)
    copied = redact(envelope_of(path), key=KEY).envelope["source"]
    assert copied["server"] == (server if kept else redaction.REDACTED)
    assert copied["env"] == "real" and copied["simulated"] is False
    assert copied["host"] == redaction.REDACTED  # what the pipeline does not write is not kept


@pytest.mark.parametrize(
    ("place", "value"),
    [
        ("request", {"appsecret": "x"}),
        ("body", {"access_token": "eyJ0eXAiOiJKV1Qi"}),
        ("body", {"note": "Bearer eyJ0eXAiOiJKV1Qi.abc"}),
        ("body", {"note": "prefix my-own-app-secret-value suffix"}),
    ],
)
def test_a_file_with_credentials_is_refused(
    tmp_path: Path, place: str, value: dict[str, str]
) -> None:
    account = Account("12345678", "01")
    body: dict[str, Any] = balance_body(account, DAY)
    if place == "body":
        body.update(value)
    envelope = envelope_of(land(tmp_path, account, [body]))
    if place == "request":
        envelope["request"].update(value)
    with pytest.raises(RedactionError, match="Not writing a copy"):
        redact(envelope, key=KEY, forbidden=["my-own-app-secret-value"])


def test_not_a_landed_file_is_refused() -> None:
    with pytest.raises(RedactionError, match="kis-balance-raw/1"):
        redact({"format": "something else"}, key=KEY)


def test_bodies_keep_their_key_order_and_separators(tmp_path: Path) -> None:
    account = Account("12345678", "01")
    body = {"rt_cd": "0", "msg_cd": "KIOK0530", **balance_body(account, DAY)}
    compact = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    spaced = json.dumps(body, ensure_ascii=True)
    for text in (compact, spaced):
        path = land(tmp_path / str(len(text)), account, [text])
        for seed in (None, 3):
            [page] = redact(envelope_of(path), key=KEY, amounts_seed=seed).envelope["pages"]
            redone = json.loads(page["body"])
            assert list(redone) == list(body)
            assert list(redone["output2"]) == list(body["output2"])
            assert [list(r) for r in redone["output1"]] == [list(r) for r in body["output1"]]
            assert page["body"] == json.dumps(
                redone,
                ensure_ascii=text is spaced,
                separators=(",", ":") if text is compact else (", ", ": "),
            )
        assert redact(envelope_of(path), key=KEY).envelope["pages"][0]["body"] == text.replace(
            "12345678", fake_cano("12345678", KEY)
        )


# -- amounts --------------------------------------------------------------------------------
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cano=st.integers(10_000_000, 99_999_999).map(str),
    product=st.sampled_from(["01", "21", "22"]),
    day=st.dates(date(2024, 1, 1), date(2025, 12, 31)),
    seed=st.integers(0, 2**32),
)
def test_amounts_keep_zeros_signs_decimals_and_every_sum(
    tmp_path_factory: pytest.TempPathFactory, cano: str, product: str, day: date, seed: int
) -> None:
    account = Account(cano, product)
    path = land(tmp_path_factory.mktemp("d"), account, [balance_body(account, day)], day=day)
    original = envelope_of(path)

    copy = redact(original, key=KEY, amounts_seed=seed).envelope

    assert_shape_kept(original, copy)
    assert_sums_kept(original, copy)
    rows, _ = parts(copy)
    assert rows[-1]["whol_weit_rt"] == parts(original)[0][-1]["whol_weit_rt"]
    changed = [
        (old, new)
        for (_, old), (_, new) in zip(amounts_of(original), amounts_of(copy), strict=True)
        if Decimal(old) != 0
    ]
    assert sum(old != new for old, new in changed) >= len(changed) * 0.9
    assert outcomes(copy, tmp_path_factory.mktemp("c")) == outcomes(
        original, tmp_path_factory.mktemp("c")
    )


@st.composite
def any_body(draw: st.DrawFn) -> tuple[Account, dict[str, Any]]:
    """Any consistent answer in any known layout: amounts up to 19 digits, losses, and output2
    fields that copy a row, sum a few rows, or stand alone (some with 6 decimals)."""
    layout = draw(st.sampled_from(layouts.KNOWN))
    product = next(iter(layout.product_codes), None) or draw(st.sampled_from(["01", "22"]))
    rows = []
    for _ in layout.categories[:-1]:
        held = draw(st.booleans())
        evlu = draw(st.integers(0, 5 * 10**17)) if held else 0
        pchs = draw(st.integers(0, 5 * 10**17)) if held else 0
        rows.append({"pchs": pchs, "evlu": evlu, "loan": draw(st.integers(0, evlu))})
    output1 = output1_rows(rows)
    output2 = {}
    for name in OUTPUT2_FIELDS:
        kind = draw(st.sampled_from(["zero", "row", "rows", "own", "negative"]))
        picked = draw(st.lists(st.sampled_from(output1), min_size=2, max_size=3, unique_by=id))
        field_name = draw(st.sampled_from(AMOUNTS))
        value = {
            "zero": "0",
            "row": picked[0][field_name],
            "rows": str(sum(int(r[field_name]) for r in picked)),
            "own": str(draw(st.integers(1, 10**18))),
            "negative": str(-draw(st.integers(1, 10**6))),
        }[kind]
        six = draw(st.booleans()) and not value.startswith("-")
        output2[name] = f"{value}.000000" if six else value
    body = {"output1": output1, "output2": output2, "rt_cd": "0", "msg_cd": "KIOK0530"}
    return Account("12345678", product), body


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answer=any_body(), seed=st.integers(0, 2**32))
def test_any_answer_keeps_its_shape_and_sums(
    tmp_path_factory: pytest.TempPathFactory, answer: tuple[Account, dict[str, Any]], seed: int
) -> None:
    account, body = answer
    rows = body["output1"]
    for name in AMOUNTS:  # a 합계 of 0 over nonzero rows cannot be redrawn (see the module)
        assume(rows[-1][name] != "0" or all(r[name] == "0" for r in rows))
    path = land(tmp_path_factory.mktemp("d"), account, [body])
    original = envelope_of(path)
    copy = redact(original, key=KEY, amounts_seed=seed)
    assert_shape_kept(original, copy.envelope)
    assert_sums_kept(original, copy.envelope)
    assert not [note for note in copy.notes if note.startswith("not kept")]


def sample_like_body() -> tuple[dict[str, Any], dict[str, str]]:
    """A 19-row answer shaped like the vendor's sample: 주식, 해외주식, three foreign-currency
    rows, 예수금, a loss; output2 relations as the facts file lists them, plus
    frcr_evlu_tota = the sum of every foreign-currency row and tot_asst_amt =
    tot_dncl_amt + evlu_amt_smtl, the way the real-account post had it."""
    layout = layouts.STANDARD_19
    values = {
        "stock": (1_029_140, 1_036_720),
        "overseas_stock": (180_000_000, 185_144_504),
        "fx_short_term_bond": (5_000_000, 5_000_000),
        "fx_els_dls": (7_000_000, 6_500_313),
        "foreign_currency": (129_105, 129_105),
        "cash_deposit_cma": (25_170, 25_170),
        "bond": (1_000_000, 999_687),
    }
    rows = [
        {"pchs": values.get(c.code, (0, 0))[0], "evlu": values.get(c.code, (0, 0))[1], "loan": 0}
        for c in layout.categories[:-1]
    ]
    output1 = output1_rows(rows)
    for row in output1[:-1]:  # the sample's weights are truncated, not rounded
        whole = Decimal(output1[-1]["evlu_amt"])
        row["whol_weit_rt"] = (
            f"{(Decimal(row['evlu_amt']) * 100 / whole).quantize(Decimal('0.01'), ROUND_DOWN):.8f}"
        )
    by_code = {c.code: r for c, r in zip(layout.categories, output1, strict=True)}
    stocks = int(by_code["stock"]["evlu_amt"]) + int(by_code["overseas_stock"]["evlu_amt"])
    stock_cost = int(by_code["stock"]["pchs_amt"]) + int(by_code["overseas_stock"]["pchs_amt"])
    foreign = sum(
        int(by_code[c]["evlu_amt"])
        for c in ("fx_short_term_bond", "fx_els_dls", "foreign_currency")
    )
    deposit = int(by_code["cash_deposit_cma"]["evlu_amt"])
    output2 = dict.fromkeys(OUTPUT2_FIELDS, "0")
    output2.update(
        {
            "pchs_amt_smtl": str(stock_cost),
            "nass_tot_amt": f"{stocks}.000000",
            "evlu_pfls_amt_smtl": str(stocks - stock_cost),
            "evlu_amt_smtl": str(stocks),
            "tot_asst_amt": str(deposit + stocks),
            "frcr_evlu_tota": str(foreign),
            "tot_dncl_amt": str(deposit),
            "dncl_amt": str(deposit),
            "thdt_rcvb_amt": "-313",
            "ovrs_stck_evlu_amt1": f"{by_code['overseas_stock']['evlu_amt']}.000000",
        }
    )
    return {
        "rt_cd": "0",
        "msg_cd": "KIOK0530",
        "msg1": "조회되었습니다",
        "output1": output1,
        "output2": output2,
    }, {c.code: str(i) for i, c in enumerate(layout.categories)}


@pytest.mark.parametrize("seed", range(5))
def test_relations_found_in_the_original_hold_in_the_copy(tmp_path: Path, seed: int) -> None:
    body, index = sample_like_body()
    path = land(tmp_path, Account("12345678", "01"), [body])
    copy = redact(envelope_of(path), key=KEY, amounts_seed=seed)
    rows, [out2] = parts(copy.envelope)

    def evlu(code: str) -> Decimal:
        return Decimal(rows[int(index[code])]["evlu_amt"])

    foreign = evlu("fx_short_term_bond") + evlu("fx_els_dls") + evlu("foreign_currency")
    assert Decimal(out2["frcr_evlu_tota"]) == foreign
    assert Decimal(out2["evlu_amt_smtl"]) == evlu("stock") + evlu("overseas_stock")
    assert Decimal(out2["nass_tot_amt"]) == Decimal(out2["evlu_amt_smtl"])
    assert decimals(out2["nass_tot_amt"]) == 6
    assert Decimal(out2["tot_asst_amt"]) == Decimal(out2["tot_dncl_amt"]) + Decimal(
        out2["evlu_amt_smtl"]
    )
    assert Decimal(out2["ovrs_stck_evlu_amt1"]) == evlu("overseas_stock")
    assert Decimal(out2["thdt_rcvb_amt"]) < 0
    for row in rows:
        assert Decimal(row["evlu_pfls_amt"]) == Decimal(row["evlu_amt"]) - Decimal(row["pchs_amt"])
    total = Decimal(rows[-1]["evlu_amt"])
    for row in rows[:-1]:  # truncated as in the original
        share = (Decimal(row["evlu_amt"]) * 100 / total).quantize(Decimal("0.01"), ROUND_DOWN)
        assert Decimal(row["whol_weit_rt"]) == share
    assert any("frcr_evlu_tota" in note for note in copy.notes)
    assert not any(note.startswith("not kept") for note in copy.notes)


def test_a_broken_total_stays_broken(tmp_path: Path) -> None:
    account = Account("12345678", "01")
    with Simulator(faults=f"{account.id}:bad_total=1") as sim:
        path = fetch_and_land(sim, account, tmp_path)
    original = envelope_of(path)
    copy = redact(original, key=KEY, amounts_seed=5).envelope
    failing = outcomes(copy, tmp_path)
    assert failing == outcomes(original, tmp_path)
    assert failing["asset_categories.total_row_is_sum"] == ["evlu_amt"]
    rows, _ = parts(copy)
    assert Decimal(rows[-1]["pchs_amt"]) == sum(Decimal(r["pchs_amt"]) for r in rows[:-1])


def test_the_same_seed_gives_the_same_copy(tmp_path: Path) -> None:
    account = Account("12345678", "21")
    envelope = envelope_of(land(tmp_path, account, [balance_body(account, DAY)]))
    first = redact(envelope, key=KEY, amounts_seed=42).text()
    assert redact(envelope, key=KEY, amounts_seed=42).text() == first
    other = redact(envelope, key=KEY, amounts_seed=43)
    assert other.text() != first
    assert other.account_id == json.loads(first)["account_id"]
    assert envelope == envelope_of(next(tmp_path.glob("raw/**/*.json")))  # not modified


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("129105", Decimal(42), "42"),
        ("-184500", Decimal(-7), "-7"),
        ("185144504.000000", Decimal(12), "12.000000"),
        ("  +313 ", Decimal(5), "  +5 "),
        ("0.00000000", Decimal(0), "0.00000000"),
        ("99.97000000", Decimal("12.5"), "12.50000000"),
        ("1", Decimal("2.25"), "2.25"),  # never rounds a derived value away
    ],
)
def test_a_new_value_is_written_like_the_old_one(text: str, value: Decimal, expected: str) -> None:
    holder = {"x": text}
    cell = amount_at(holder, "x", "test")
    assert isinstance(cell, Amount)
    assert cell.render(value) == expected


# -- a real answer over loopback, through the pipeline --------------------------------------
def fetch_and_land(sim: Simulator, account: Account, root: Path) -> Path:
    client = KisClient(
        sim.base_url,
        Credentials("PSredactKey", "redact-secret"),
        token_cache=TokenCache(root / "tokens"),
        clock=lambda: FETCHED_AT,
    )
    response = client.inquire_account_balance(account, sim_as_of=DAY)
    return RawLanding(root / "landed").land(response, DAY, source=SOURCE)


def tidy_rows(path: Path, root: Path) -> list[dict[str, Any]]:
    """asset_categories as written to Parquet after the tidy step, one dict per row."""
    landed = land_copy(path, root)
    result = tidy.build_days(root, [DAY])
    assert not [o for o in result.outcomes if o.check.blocking and o.problems]
    table = pq.read_table(ParquetTables(root).path("asset_categories", DAY))
    assert landed.exists()
    return table.drop_columns(["fetched_at"]).to_pylist()


def test_a_redacted_answer_replays_with_the_same_structure(tmp_path: Path) -> None:
    account = Account("98765432", "01")  # 19-digit amounts, over three pages
    with Simulator(faults=f"{account.id}:pages=3") as sim:
        path = fetch_and_land(sim, account, tmp_path)
    assert len(envelope_of(path)["pages"]) == 3
    copy = tmp_path / "copy.json"
    redacted = redact(envelope_of(path), key=KEY, amounts_seed=9).envelope
    copy.write_text(json.dumps(redacted, ensure_ascii=False))
    _, summaries = parts(redacted)
    assert len(summaries) == 3 and summaries[0] == summaries[1] == summaries[2]
    assert_shape_kept(envelope_of(path), redacted)
    assert_sums_kept(envelope_of(path), redacted)

    before = tidy_rows(path, tmp_path / "before")
    after = tidy_rows(copy, tmp_path / "after")

    assert len(before) == len(after) == 20
    for old, new in zip(before, after, strict=True):
        assert new["account_id"] == f"{fake_cano('98765432', KEY)}-01"
        for name in ("layout", "category_seq", "category_code", "category_ko", "is_total"):
            assert new[name] == old[name]
        for name in AMOUNTS:
            assert (new[name] is None) == (old[name] is None)
            assert (new[name] > 0) == (old[name] > 0) and (new[name] < 0) == (old[name] < 0)
    total = after[-1]
    for name in AMOUNTS:
        assert total[name] == sum(row[name] for row in after[:-1])


def test_the_command_writes_a_copy_and_says_what_it_kept(tmp_path: Path) -> None:
    account = Account("12345678", "01")
    path = land(tmp_path, account, [balance_body(account, DAY)])
    out = tmp_path / "copy.json"
    command = Path(sys.executable).with_name("kis-redact")
    env = {**os.environ, "KIS_APP_SECRET": "never-in-a-copy-secret"}
    done = subprocess.run(
        [command, str(path), "--amounts", "--seed", "7", "--salt", "s", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fake = fake_cano("12345678", b"s")
    assert f"account masked as {fake}-01" in done.stderr
    assert "seed 7" in done.stderr and "tot_asst_amt" in done.stderr
    assert "12345678" not in out.read_text() + done.stderr
    assert (
        json.loads(out.read_text()) == redact(envelope_of(path), key=b"s", amounts_seed=7).envelope
    )

    to_stdout = subprocess.run(
        [command, str(path), "--salt", "s"], capture_output=True, text=True, check=True
    )
    assert json.loads(to_stdout.stdout)["account_id"] == f"{fake}-01"

    refused = subprocess.run(
        [command, str(path), "-o", str(path)], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1 and "overwrite" in refused.stderr

    body = balance_body(account, DAY)
    body["msg1"] = "never-in-a-copy-secret"
    leaky = land(tmp_path / "leaky", account, [body])
    refused = subprocess.run(
        [command, str(leaky)], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode == 1 and "Not writing a copy" in refused.stderr
    assert not refused.stdout


def test_the_command_refuses_what_is_not_an_answer_in_one_line(tmp_path: Path) -> None:
    account = Account("12345678", "01")
    raw = land(tmp_path, account, [balance_body(account, DAY)])
    assert not tidy.build_days(tmp_path, [DAY]).blocked
    parquet = ParquetTables(tmp_path).path("asset_categories", DAY)
    not_json = tmp_path / "notes.json"
    not_json.write_text("not json at all\n")
    binary = tmp_path / "answer.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    command = Path(sys.executable).with_name("kis-redact")
    for path, says in [
        (raw.parent, "a directory, not a file"),
        (parquet, "a Parquet file"),
        (not_json, "not JSON"),
        (binary, "not UTF-8 text"),
        (tmp_path / "nowhere.json", "no such file"),
    ]:
        done = subprocess.run([command, str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 1 and not done.stdout, (path, done.stderr)
        [line] = done.stderr.splitlines()
        assert line.startswith(f"kis-redact: {path}: {says}"), line
        assert "give one landed raw file" in line
        assert "Errno" not in line and "codec" not in line
