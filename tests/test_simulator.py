"""The KIS simulator over real HTTP on loopback, driven with plain `requests` like a third party.

Nothing here goes through KisClient: these tests pin the wire protocol the simulator speaks
(spec page /work/shared/spec/inquire-account-balance.md and kis-api-facts.md).
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests

from pipelines.kis import layouts, protocol
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS
from pipelines.kis.tokens import SEOUL
from pipelines.settings import SIM_ACCOUNTS
from pipelines.simulator import portfolio
from pipelines.simulator.portfolio import PORTAL_EXAMPLE_ACCOUNT, UNPRICED_CODES
from pipelines.simulator.server import Simulator

SPEC_PAGE = Path("/work/shared/spec/inquire-account-balance.md")
#: KIS's published portal "Response Example", as copied beside the spec (not shipped).
PORTAL_EXAMPLE = Path("/work/shared/spec/published-answers/portal-response-example-19-rows.json")
TIMEOUT = (2.0, 10.0)
APP_KEY = "PSsimulatorTestAppKey000000000000000"
APP_SECRET = "simulator-test-app-secret-" + "x" * 40
AMOUNT_FIELDS = ("pchs_amt", "evlu_amt", "evlu_pfls_amt", "crdt_lnd_amt", "real_nass_amt")
INT64_MAX = 2**63 - 1
PAST_DAY = "2024-03-15"


# -- helpers -------------------------------------------------------------------------------
def issue(base_url: str, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> requests.Response:
    return requests.post(
        base_url + protocol.TOKEN_PATH,
        json={"grant_type": "client_credentials", "appkey": app_key, "appsecret": app_secret},
        timeout=TIMEOUT,
    )


def token_for(base_url: str, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> str:
    response = issue(base_url, app_key, app_secret)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str) and token
    return token


def spec_headers(
    token: str, app_key: str = APP_KEY, app_secret: str = APP_SECRET
) -> dict[str, str]:
    """Every header the spec marks required, for a personal customer."""
    return {
        "content-type": "application/json; charset=utf-8",
        "authorization": f"Bearer {token}",
        "appkey": app_key,
        "appsecret": app_secret,
        "tr_id": "CTRP6548R",
        "custtype": "P",
    }


def spec_query(cano: str = "12345678", product_code: str = "01") -> dict[str, str]:
    return {"CANO": cano, "ACNT_PRDT_CD": product_code, "INQR_DVSN_1": "", "BSPR_BF_DT_APLY_YN": ""}


def get_balance(
    base_url: str,
    headers: dict[str, str],
    query: dict[str, str],
    *,
    as_of: str | None = None,
) -> requests.Response:
    if as_of is not None:
        headers = {**headers, protocol.SIM_AS_OF_HEADER: as_of}
    return requests.get(
        base_url + protocol.BALANCE_PATH, headers=headers, params=query, timeout=TIMEOUT
    )


def body_of(
    simulator: Simulator,
    cano: str = "12345678",
    product_code: str = "01",
    *,
    as_of: str | None = PAST_DAY,
    token: str | None = None,
) -> dict[str, Any]:
    token = token or token_for(simulator.base_url)
    response = get_balance(
        simulator.base_url, spec_headers(token), spec_query(cano, product_code), as_of=as_of
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rt_cd"] == "0", body
    return body


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Simulator]:
    """One simulator for the tests that only read bodies, without the 20/s rate limit."""
    with Simulator(rate_limit=None) as sim:
        yield sim


@pytest.fixture(scope="module")
def token(shared_sim: Simulator) -> str:
    return token_for(shared_sim.base_url)


# -- token endpoint ----------------------------------------------------------------------
def test_token_issuance_answers_the_documented_fields(simulator: Simulator) -> None:
    before = datetime.now(SEOUL)
    response = issue(simulator.base_url)
    after = datetime.now(SEOUL)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "access_token_token_expired"}
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    expired_text = body["access_token_token_expired"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", expired_text)
    # Korea time, about 24 hours from now (a UTC or local-time stamp would be hours off).
    expires_at = datetime.strptime(expired_text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SEOUL)
    assert before + timedelta(hours=24) - timedelta(seconds=2) <= expires_at
    assert expires_at <= after + timedelta(hours=24)
    assert simulator.requests["token_issued"] == 1


def test_tokens_differ_between_issuances() -> None:
    with Simulator(token_interval=0) as sim:
        first, second = token_for(sim.base_url), token_for(sim.base_url)
    assert first != second


def test_second_issuance_within_the_interval_is_refused_with_egw00133(
    simulator: Simulator,
) -> None:
    assert issue(simulator.base_url).status_code == 200
    response = issue(simulator.base_url)
    assert response.status_code == 403
    body = response.json()
    assert body["error_code"] == "EGW00133"
    assert body["error_description"]
    assert "access_token" not in body
    assert simulator.requests["token_issued"] == 1


def test_throttle_is_per_app_key(simulator: Simulator) -> None:
    assert issue(simulator.base_url, "APP-KEY-ONE", "secret-one").status_code == 200
    assert issue(simulator.base_url, "APP-KEY-TWO", "secret-two").status_code == 200
    assert issue(simulator.base_url, "APP-KEY-ONE", "secret-one").status_code == 403
    assert simulator.requests["token_issued"] == 2


def test_token_interval_zero_allows_repeats() -> None:
    with Simulator(token_interval=0) as sim:
        statuses = [issue(sim.base_url).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert sim.requests["token_issued"] == 3


def test_throttle_lifts_after_the_interval() -> None:
    now = [1_750_000_000.0]
    with Simulator(clock=lambda: now[0]) as sim:
        assert issue(sim.base_url).status_code == 200
        now[0] += 59
        assert issue(sim.base_url).status_code == 403
        now[0] += 2  # 61 s after the first issuance
        assert issue(sim.base_url).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"grant_type": "password", "appkey": APP_KEY, "appsecret": APP_SECRET},
        {"grant_type": "client_credentials", "appkey": APP_KEY},
        {"grant_type": "client_credentials", "appsecret": APP_SECRET},
    ],
    ids=["wrong-grant", "no-secret", "no-key"],
)
def test_incomplete_token_request_is_refused(simulator: Simulator, payload: dict[str, str]) -> None:
    response = requests.post(
        simulator.base_url + protocol.TOKEN_PATH, json=payload, timeout=TIMEOUT
    )
    assert response.status_code == 403
    assert response.json()["error_code"] == "EGW00103"
    assert simulator.requests["token_issued"] == 0


# -- balance: the success body ---------------------------------------------------------
def test_balance_with_every_spec_header_answers_lowercase_keys(
    shared_sim: Simulator, token: str
) -> None:
    before = shared_sim.requests["balance"]
    response = get_balance(shared_sim.base_url, spec_headers(token), spec_query())
    assert shared_sim.requests["balance"] == before + 1
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["tr_id"] == "CTRP6548R"
    assert response.headers["tr_cont"] in ("D", "E")  # one page: the last
    body = response.json()
    assert list(body) == [key.lower() for key in body]
    assert set(body) == {"rt_cd", "msg_cd", "msg1", "output1", "output2"}
    assert "Output1" not in body and "Output2" not in body
    assert body["rt_cd"] == "0"
    assert body["msg_cd"] == "KIOK0530"
    assert body["msg1"].endswith(" ") and body["msg1"].strip() == "조회되었습니다"
    assert isinstance(body["output1"], list)
    assert isinstance(body["output2"], dict)


@pytest.mark.parametrize(("product_code", "rows"), [("01", 20), ("21", 17), ("19", 20)])
def test_output1_row_count_depends_on_the_product_code(
    shared_sim: Simulator, token: str, product_code: str, rows: int
) -> None:
    body = body_of(shared_sim, product_code=product_code, token=token)
    assert len(body["output1"]) == rows
    for row in body["output1"]:
        assert tuple(row) == OUTPUT1_FIELDS


@pytest.mark.parametrize("product_code", ["01", "21"])
def test_every_amount_is_a_numeric_string(
    shared_sim: Simulator, token: str, product_code: str
) -> None:
    body = body_of(shared_sim, product_code=product_code, token=token)
    values = [v for row in body["output1"] for v in row.values()] + list(body["output2"].values())
    assert values
    for value in values:
        assert isinstance(value, str), value
        assert re.fullmatch(r"-?\d+(\.\d+)?", value), value
    for row in body["output1"]:
        for field in AMOUNT_FIELDS:
            assert re.fullmatch(r"-?\d+", row[field]), (field, row[field])
        assert re.fullmatch(r"\d+\.\d{8}", row["whol_weit_rt"])


def test_output2_has_exactly_the_protocol_fields(shared_sim: Simulator, token: str) -> None:
    body = body_of(shared_sim, token=token)
    assert len(OUTPUT2_FIELDS) == 25
    assert list(body["output2"]) == list(OUTPUT2_FIELDS)


def _spec_table(section_start: str, section_end: str) -> list[tuple[str, str]]:
    """(element, 한글명) rows of one table of the spec page, between two markers."""
    text = SPEC_PAGE.read_text(encoding="utf-8")
    start = text.index(section_start)
    end = text.index(section_end, start + len(section_start))
    rows = re.findall(
        r"^([a-z][a-z0-9_]*)\s*\|\s*([^|]+?)\s*\|\s*String\s*\|", text[start:end], re.M
    )
    return [(name, ko) for name, ko in rows]


@pytest.mark.skipif(not SPEC_PAGE.is_file(), reason="spec page not available")
def test_output_field_lists_match_the_spec_page() -> None:
    output2 = _spec_table("Output2 | 응답상세2", "## 예시")
    assert output2 == list(OUTPUT2_FIELDS.items())
    output1 = _spec_table("Output1 | 응답상세", "Output2 | 응답상세2")
    assert tuple(name for name, _ in output1) == OUTPUT1_FIELDS


@pytest.mark.parametrize("cano", ["12345678", "87654321", "50505050", "90000001"])
@pytest.mark.parametrize("product_code", ["01", "21"])
def test_total_row_is_the_exact_sum_of_the_other_rows(
    shared_sim: Simulator, token: str, cano: str, product_code: str
) -> None:
    rows = body_of(shared_sim, cano, product_code, token=token)["output1"]
    *parts, total = rows
    for field in AMOUNT_FIELDS:
        assert sum(Decimal(row[field]) for row in parts) == Decimal(total[field]), field
    assert Decimal(total["whol_weit_rt"]) == 100
    layout = layouts.for_product(product_code)
    for category, row in zip(layout.categories[:-1], parts, strict=True):
        if category.code in UNPRICED_CODES:  # as KIS's sample sends 외화 and 예수금+CMA
            assert row["pchs_amt"] == row["evlu_pfls_amt"] == "0", category.code
        else:  # per-row identity of the simulated book
            assert Decimal(row["evlu_pfls_amt"]) == Decimal(row["evlu_amt"]) - Decimal(
                row["pchs_amt"]
            )
        assert Decimal(row["real_nass_amt"]) == Decimal(row["evlu_amt"]) - Decimal(
            row["crdt_lnd_amt"]
        )


@pytest.mark.parametrize("cano", ["12345678", "87654321", "90000001"])
@pytest.mark.parametrize("product_code", ["01", "21"])
def test_output2_agrees_with_output1(
    shared_sim: Simulator, token: str, cano: str, product_code: str
) -> None:
    body = body_of(shared_sim, cano, product_code, token=token)
    rows, out2 = body["output1"], body["output2"]
    total = rows[-1]
    by_code = dict(
        zip((c.code for c in layouts.for_product(product_code).categories), rows, strict=True)
    )
    stocks = [by_code[code] for code in ("stock", "overseas_stock") if code in by_code]
    # as in both published answers: nass_tot_amt = evlu_amt_smtl = 주식 + 해외주식 only, and
    # tot_asst_amt the whole account
    securities = sum(Decimal(row["evlu_amt"]) for row in stocks)
    assert Decimal(out2["nass_tot_amt"]) == Decimal(out2["evlu_amt_smtl"]) == securities
    assert Decimal(out2["pchs_amt_smtl"]) == sum(Decimal(row["pchs_amt"]) for row in stocks)
    assert Decimal(out2["tot_asst_amt"]) == Decimal(total["evlu_amt"])
    assert Decimal(out2["loan_amt_smtl"]) == Decimal(total["crdt_lnd_amt"])
    assert Decimal(total["real_nass_amt"]) == Decimal(out2["tot_asst_amt"]) - Decimal(
        out2["loan_amt_smtl"]
    )
    if product_code == "01":  # standard layout: row 17 외화, row 18 예수금
        assert Decimal(out2["dncl_amt"]) == Decimal(rows[17]["evlu_amt"])
        assert Decimal(out2["frcr_evlu_tota"]) == Decimal(rows[16]["evlu_amt"])
        assert Decimal(out2["ovrs_stck_evlu_amt1"]) == Decimal(rows[8]["evlu_amt"])
        assert Decimal(out2["sbsc_dncl_amt"]) == Decimal(rows[18]["evlu_amt"])
    else:  # product 21: row 14 외화평가금액
        assert Decimal(out2["frcr_evlu_tota"]) == Decimal(rows[13]["evlu_amt"])
    # Decimal-formatted fields carry six decimals, as the real service sends them.
    assert re.fullmatch(r"-?\d+\.000000", out2["ovrs_stck_evlu_amt1"])
    assert re.fullmatch(r"-?\d+", out2["nass_tot_amt"])


def test_a_default_account_holds_stocks_on_a_credit_loan(shared_sim: Simulator, token: str) -> None:
    """The demo's accounts show net assets below total assets: one carries a credit loan."""
    with_loans = []
    for account in SIM_ACCOUNTS:
        body = body_of(shared_sim, account.cano, account.product_code, token=token)
        total, out2 = body["output1"][-1], body["output2"]
        if Decimal(out2["loan_amt_smtl"]) > 0:
            with_loans.append(account.id)
            assert Decimal(total["real_nass_amt"]) < Decimal(out2["tot_asst_amt"])
    assert with_loans == ["12345678-01"]


def test_one_account_answers_kis_published_portal_example_value_for_value(
    shared_sim: Simulator, token: str
) -> None:
    """PORTAL_EXAMPLE_ACCOUNT answers the package's copy of KIS's portal example, whatever
    the day, and the copy is the spec's file (when it is beside the project)."""
    shipped = json.loads(
        resources.files(portfolio.__package__)
        .joinpath(portfolio.PORTAL_EXAMPLE_FILE)
        .read_text("utf-8")
    )
    if PORTAL_EXAMPLE.is_file():
        assert (
            PORTAL_EXAMPLE.read_bytes()
            == (
                resources.files(portfolio.__package__).joinpath(portfolio.PORTAL_EXAMPLE_FILE)
            ).read_bytes()
        )
    for as_of in (PAST_DAY, None):
        body = body_of(
            shared_sim,
            PORTAL_EXAMPLE_ACCOUNT.cano,
            PORTAL_EXAMPLE_ACCOUNT.product_code,
            as_of=as_of,
            token=token,
        )
        assert body == shipped
    assert len(shipped["output1"]) == 19
    assert shipped["output2"]["tot_asst_amt"] == shipped["output1"][-1]["real_nass_amt"]
    assert shipped["output2"]["tot_asst_amt"] == "1651869889547"


@pytest.mark.parametrize("cano", ["12345678", "87654321", "90000001"])
@pytest.mark.parametrize("product_code", ["01", "21"])
def test_weights_sum_to_100_within_rounding(
    shared_sim: Simulator, token: str, cano: str, product_code: str
) -> None:
    parts = body_of(shared_sim, cano, product_code, token=token)["output1"][:-1]
    weights = [Decimal(row["whol_weit_rt"]) for row in parts]
    assert all(0 <= w <= 100 for w in weights)
    assert abs(sum(weights) - 100) <= Decimal("0.01") * len(parts)


# -- determinism and movement ------------------------------------------------------------
def test_same_account_and_day_gives_an_identical_body(shared_sim: Simulator, token: str) -> None:
    headers, query = spec_headers(token), spec_query()
    first = get_balance(shared_sim.base_url, headers, query, as_of=PAST_DAY)
    second = get_balance(shared_sim.base_url, headers, query, as_of=PAST_DAY)
    assert first.json()["rt_cd"] == "0"
    assert first.content == second.content


def test_same_day_is_identical_across_simulator_instances(simulator: Simulator) -> None:
    body = body_of(simulator)
    with Simulator() as other:
        assert body_of(other) == body


def test_valuations_move_from_day_to_day(shared_sim: Simulator, token: str) -> None:
    days = ["2024-03-13", "2024-03-14", "2024-03-15"]
    totals = [
        body_of(shared_sim, as_of=day, token=token)["output1"][-1]["evlu_amt"] for day in days
    ]
    assert len(set(totals)) == len(days)
    # the book itself (what was paid) stays put; only the valuation moves
    stock = [body_of(shared_sim, as_of=day, token=token)["output1"][0] for day in days]
    assert len({row["pchs_amt"] for row in stock}) == 1


def test_without_as_of_the_simulator_answers_for_today(shared_sim: Simulator, token: str) -> None:
    today = datetime.now(SEOUL).date().isoformat()
    assert body_of(shared_sim, as_of=None, token=token) == body_of(
        shared_sim, as_of=today, token=token
    )


def test_different_accounts_differ(shared_sim: Simulator, token: str) -> None:
    one = body_of(shared_sim, "12345678", "01", token=token)
    other = body_of(shared_sim, "87654321", "01", token=token)
    assert one["output1"] != other["output1"]
    assert one["output2"]["tot_asst_amt"] != other["output2"]["tot_asst_amt"]


def test_future_as_of_date_is_refused(shared_sim: Simulator, token: str) -> None:
    future = (datetime.now(SEOUL).date() + timedelta(days=2)).isoformat()
    response = get_balance(shared_sim.base_url, spec_headers(token), spec_query(), as_of=future)
    body = response.json()
    assert body["rt_cd"] != "0"
    assert "output1" not in body
    assert future in body["msg1"]


@pytest.mark.parametrize("cano", ["90000001", "98765432"])
@pytest.mark.parametrize("product_code", ["01", "21"])
def test_whale_total_exceeds_int64(
    shared_sim: Simulator, token: str, cano: str, product_code: str
) -> None:
    for day in (PAST_DAY, "2023-07-01", None):
        body = body_of(shared_sim, cano, product_code, as_of=day, token=token)
        total = body["output1"][-1]["evlu_amt"]
        assert re.fullmatch(r"\d{19}", total), total
        assert int(total) > INT64_MAX


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer garbage", "Basic abc.def", "Bearer abc." + "0" * 64],
    ids=["missing", "empty", "no-token", "garbage", "wrong-scheme", "forged-signature"],
)
def test_bad_authorization_is_egw00121(
    shared_sim: Simulator, token: str, authorization: str | None
) -> None:
    headers = spec_headers(token)
    if authorization is None:
        del headers["authorization"]
    else:
        headers["authorization"] = authorization
    response = get_balance(shared_sim.base_url, headers, spec_query())
    body = response.json()
    assert body["rt_cd"] == "1"
    assert body["msg_cd"] == "EGW00121"
    assert "output1" not in body


def test_scheme_is_case_insensitive(shared_sim: Simulator, token: str) -> None:
    headers = {**spec_headers(token), "authorization": f"bearer {token}"}
    assert get_balance(shared_sim.base_url, headers, spec_query()).json()["rt_cd"] == "0"


def test_non_ascii_authorization_is_egw00121(shared_sim: Simulator, token: str) -> None:
    headers = {**spec_headers(token), "authorization": "Bearer \u00fc.\u00fc"}
    body = get_balance(shared_sim.base_url, headers, spec_query()).json()
    assert body["msg_cd"] == "EGW00121"


@pytest.mark.parametrize("tr_id", ["TTTC8434R", "", "ctrp6548r"])
def test_wrong_tr_id_is_refused(shared_sim: Simulator, token: str, tr_id: str) -> None:
    headers = {**spec_headers(token), "tr_id": tr_id}
    body = get_balance(shared_sim.base_url, headers, spec_query()).json()
    assert body["rt_cd"] != "0"
    assert body["msg_cd"] == "OPSQ0002"
    assert "output1" not in body


def test_unknown_custtype_is_refused(shared_sim: Simulator, token: str) -> None:
    headers = {**spec_headers(token), "custtype": "X"}
    body = get_balance(shared_sim.base_url, headers, spec_query()).json()
    assert body["rt_cd"] != "0"
    assert "CUSTTYPE" in body["msg1"]


@pytest.mark.parametrize("missing", ["INQR_DVSN_1", "BSPR_BF_DT_APLY_YN", "CANO", "ACNT_PRDT_CD"])
def test_missing_query_key_is_an_error_naming_it(
    shared_sim: Simulator, token: str, missing: str
) -> None:
    query = spec_query()
    del query[missing]
    body = get_balance(shared_sim.base_url, spec_headers(token), query).json()
    assert body["rt_cd"] != "0"
    assert missing in body["msg1"]
    assert "output1" not in body


@pytest.mark.parametrize(
    ("cano", "product_code"),
    [
        ("00000000", "01"),
        ("00000000", "21"),
        ("1234567", "01"),
        ("12345678", "1"),
        ("abcdefgh", "01"),
    ],
)
def test_invalid_account_is_opsq2000(
    shared_sim: Simulator, token: str, cano: str, product_code: str
) -> None:
    response = get_balance(shared_sim.base_url, spec_headers(token), spec_query(cano, product_code))
    body = response.json()
    assert body["rt_cd"] == "1"
    assert body["msg_cd"] == "OPSQ2000"
    assert body["msg1"] == "ERROR : INPUT INVALID_CHECK_ACNO"
    assert "output1" not in body


def test_non_ascii_digit_account_is_opsq2000(shared_sim: Simulator, token: str) -> None:
    fullwidth = "".join(chr(ord("０") + int(d)) for d in "12345678")
    body = get_balance(shared_sim.base_url, spec_headers(token), spec_query(fullwidth)).json()
    assert body["msg_cd"] == "OPSQ2000"


@pytest.mark.parametrize("as_of", ["yesterday", "2024-02-30", "15.03.2024"])
def test_malformed_as_of_header_is_refused(shared_sim: Simulator, token: str, as_of: str) -> None:
    response = get_balance(shared_sim.base_url, spec_headers(token), spec_query(), as_of=as_of)
    body = response.json()
    assert body["rt_cd"] != "0"
    assert as_of in body["msg1"]
    assert "output1" not in body


def test_token_used_with_another_appsecret_is_refused(shared_sim: Simulator, token: str) -> None:
    headers = spec_headers(token, app_secret="another-app-secret")
    body = get_balance(shared_sim.base_url, headers, spec_query()).json()
    assert body["rt_cd"] != "0"
    assert body["msg_cd"] == "EGW00205"
    assert "output1" not in body
    other_key = get_balance(
        shared_sim.base_url, spec_headers(token, app_key="ANOTHER-APP-KEY"), spec_query()
    ).json()
    assert other_key["rt_cd"] != "0"


def test_expired_token_is_egw00123() -> None:
    now = [1_750_000_000.0]
    with Simulator(clock=lambda: now[0]) as sim:
        token = token_for(sim.base_url)
        headers = spec_headers(token)
        assert get_balance(sim.base_url, headers, spec_query()).json()["rt_cd"] == "0"
        now[0] += 24 * 3600 + 1
        body = get_balance(sim.base_url, headers, spec_query()).json()
    assert body["rt_cd"] == "1"
    assert body["msg_cd"] == "EGW00123"


def test_token_survives_a_simulator_restart(shared_sim: Simulator, token: str) -> None:
    with Simulator() as restarted:
        body = get_balance(restarted.base_url, spec_headers(token), spec_query()).json()
    assert body["rt_cd"] == "0"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/uapi/domestic-stock/v1/trading/inquire-balance"),
        ("GET", "/"),
        ("POST", "/oauth2/token"),
        ("GET", protocol.TOKEN_PATH),
        ("POST", protocol.BALANCE_PATH),
    ],
)
def test_unknown_path_is_404(shared_sim: Simulator, token: str, method: str, path: str) -> None:
    before = dict(shared_sim.requests)
    response = requests.request(
        method,
        shared_sim.base_url + path,
        headers=spec_headers(token),
        params=spec_query(),
        json={} if method == "POST" else None,
        timeout=TIMEOUT,
    )
    assert response.status_code == 404
    assert response.json()["rt_cd"] != "0"
    assert dict(shared_sim.requests) == before  # neither a token nor a balance was served


# -- the standalone console entry point ----------------------------------------------------
def simulator_command() -> list[str]:
    """`.venv/bin/kis-simulator`, or the module itself if the console script is missing."""
    script = Path(sys.executable).parent / "kis-simulator"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "pipelines.simulator.server"]


def _read_line_containing(proc: subprocess.Popen[str], needle: str, deadline: float) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:  # EOF: the process died
                break
            seen.append(line)
            if needle in line:
                return line
    raise AssertionError(f"no {needle!r} line from kis-simulator; got {seen!r}")


def test_console_entry_point_serves_tokens_and_balances() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*simulator_command(), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line_containing(proc, "listening", time.monotonic() + 30)
        base_url = f"http://127.0.0.1:{port}"
        assert base_url in line
        token = token_for(base_url)
        assert issue(base_url).json()["error_code"] == "EGW00133"  # default interval 60 s
        response = get_balance(base_url, spec_headers(token), spec_query("12345678", "21"))
        assert response.status_code == 200
        body = response.json()
        assert body["rt_cd"] == "0"
        assert len(body["output1"]) == 17
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_console_entry_point_rejects_a_bad_port() -> None:
    result = subprocess.run(
        [*simulator_command(), "--port", "not-a-port"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "--port" in result.stderr


def test_as_of_day_is_a_date_in_seoul() -> None:
    # 2024-03-15 00:30 in Seoul is still 2024-03-14 in UTC: the simulator's "today" is Seoul's.
    seoul_half_past_midnight = datetime(2024, 3, 15, 0, 30, tzinfo=SEOUL).timestamp()
    with Simulator(clock=lambda: seoul_half_past_midnight) as sim:
        token = token_for(sim.base_url)
        today = get_balance(sim.base_url, spec_headers(token), spec_query(), as_of="2024-03-15")
        assert today.json()["rt_cd"] == "0"
        tomorrow = get_balance(sim.base_url, spec_headers(token), spec_query(), as_of="2024-03-16")
        assert tomorrow.json()["rt_cd"] != "0"


# -- maintenance --------------------------------------------------------------------------
def test_maintenance_answers_every_request_with_a_503_page_from_the_first_request() -> None:
    with Simulator(faults="*:maintenance=1.5") as sim:
        time.sleep(0.5)  # the outage counts from the first request, not from the start
        started = time.monotonic()
        refused = issue(sim.base_url)
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("text/html")
        assert "점검" in refused.text
        balance = get_balance(sim.base_url, spec_headers("any"), spec_query())
        assert balance.status_code == 503 and "점검" in balance.text
        assert sim.requests["balance"] == sim.requests["balance 12345678-01"] == 1
        time.sleep(max(0.0, 1.5 - (time.monotonic() - started)) + 0.1)
        token = token_for(sim.base_url)
        assert get_balance(sim.base_url, spec_headers(token), spec_query()).status_code == 200
        assert sim.requests["maintenance"] == 2


def test_maintenance_of_one_account_leaves_tokens_and_the_others_alone() -> None:
    with Simulator(faults="12345678-21:maintenance=60") as sim:
        token = token_for(sim.base_url)
        headers = spec_headers(token)
        assert get_balance(sim.base_url, headers, spec_query("12345678", "01")).status_code == 200
        assert get_balance(sim.base_url, headers, spec_query("12345678", "21")).status_code == 503
