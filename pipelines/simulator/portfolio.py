"""Deterministic simulated portfolios: the CTRP6548R body an account would get on a given day.

Each account holds a fixed set of categories chosen from its number; valuations move from day
to day along a smooth seeded path. Accounts whose CANO starts with 9 are "whales" whose totals
reach 19 digits, beyond what int64 or float64 hold exactly. Stocks are held partly on a credit
loan (the 주식 row's crdt_lnd_amt). output2 follows KIS's two published answers
(kis-api-facts.md): nass_tot_amt = evlu_amt_smtl = the 주식 and 해외주식 rows only, and
tot_asst_amt = the 합계 row. One account, `PORTAL_EXAMPLE_ACCOUNT`, answers KIS's published
portal "Response Example" value for value on every day.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from typing import Any

from pipelines.kis import layouts
from pipelines.kis.protocol import OUTPUT2_FIELDS, Account

#: Rows KIS sends with pchs_amt and evlu_pfls_amt 0 however much they hold (the 외화 and
#: 예수금+CMA rows of its published sample): deposits and foreign currency are not bought.
UNPRICED_CODES = layouts.CASH_DEPOSIT_CODES | {"foreign_currency"}
#: The rows output2's evlu_amt_smtl, pchs_amt_smtl and nass_tot_amt add up (securities only).
SECURITIES_CODES = ("stock", "overseas_stock")
FOREIGN_CODES = ("fx_short_term_bond", "fx_els_dls", "foreign_currency")
SIX_DECIMAL_FIELDS = frozenset({"ovrs_stck_evlu_amt1", "ovrs_bond_evlu_amt"})
WHALE_TOTAL = 9_600_000_000_000_000_000  # 19 digits, above int64's 9,223,372,036,854,775,807
#: The share of the 주식 row's purchase held on a credit loan (신용대출).
CREDIT_LOAN_SHARE = 5

#: This account answers KIS's published portal "Response Example" (19 rows, no loans) as is.
PORTAL_EXAMPLE_ACCOUNT = Account("19191919", "01")
#: A copy of ../shared/spec/published-answers/portal-response-example-19-rows.json, shipped
#: with the package (a test keeps it equal to the spec's file).
PORTAL_EXAMPLE_FILE = "portal-response-example-19-rows.json"


@cache
def _portal_example_text() -> str:
    return resources.files(__package__).joinpath(PORTAL_EXAMPLE_FILE).read_text("utf-8")


def portal_example_body() -> dict[str, Any]:
    """KIS's published portal answer, a fresh copy (faults may change it)."""
    body: dict[str, Any] = json.loads(_portal_example_text())
    return body


def _rng(*parts: object) -> random.Random:
    seed = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def _index(account: Account, code: str, day: date) -> float:
    """A price index near 1.0 that moves smoothly from day to day, plus a little daily noise."""
    rng = _rng(account.id, code, "path")
    t = day.toordinal()
    drift = sum(
        rng.uniform(0.004, 0.01)
        * math.sin(
            2 * math.pi * t / rng.uniform(period * 0.8, period) + rng.uniform(0, 2 * math.pi)
        )
        for period in (9, 31, 97, 365)
    )
    noise = _rng(account.id, code, t).gauss(0, 0.002)
    return 1.0 + drift + noise


def _holdings(account: Account, layout: layouts.Layout) -> dict[str, int]:
    """Purchase amount (KRW) per held category; categories not held are absent."""
    rng = _rng(account.id, "holdings")
    held: dict[str, int] = {}
    for category in layout.categories[:-1]:
        if category.code in layouts.CASH_DEPOSIT_CODES or rng.random() < 0.45:
            held[category.code] = rng.randrange(1_000_000, 80_000_000, 500)
    if account.cano.startswith("9"):  # scale a whale's book to a 19-digit total
        scale = Decimal(WHALE_TOTAL) / sum(held.values())
        held = {code: int(amount * scale) for code, amount in held.items()}
    return held


def _weight(part: int, whole: int) -> str:
    if whole == 0:
        return "0.00000000"
    rate = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{rate:.8f}"


def _pfls(row: dict[str, int]) -> int:
    return row["pfls"] if "pfls" in row else row["evlu"] - row["pchs"]


def output1_rows(rows: list[dict[str, int]]) -> list[dict[str, str]]:
    """output1 as KIS sends it, from each category's purchase, value and credit loan in won
    (keys pchs, evlu, loan; pfls, the profit or loss, defaults to evlu - pchs), with the 합계
    row summing them last."""
    total = {key: sum(row[key] for row in rows) for key in ("pchs", "evlu", "loan")}
    total["pfls"] = sum(_pfls(row) for row in rows)
    output1 = [
        {
            "pchs_amt": str(row["pchs"]),
            "evlu_amt": str(row["evlu"]),
            "evlu_pfls_amt": str(_pfls(row)),
            "crdt_lnd_amt": str(row["loan"]),
            "real_nass_amt": str(row["evlu"] - row["loan"]),
            "whol_weit_rt": _weight(row["evlu"], total["evlu"]),
        }
        for row in [*rows, total]
    ]
    output1[-1]["whol_weit_rt"] = "100.00000000" if total["evlu"] else "0.00000000"
    return output1


def balance_body(account: Account, day: date) -> dict[str, Any]:
    """The success body for one account as of one day: lowercase keys, amounts as strings."""
    if account == PORTAL_EXAMPLE_ACCOUNT:
        return portal_example_body()
    layout = layouts.for_product(account.product_code)
    held = _holdings(account, layout)
    rows: list[dict[str, int]] = []
    for category in layout.categories[:-1]:
        purchase = held.get(category.code, 0)
        if category.code in layouts.CASH_DEPOSIT_CODES:
            value = purchase + _rng(account.id, category.code, day).randrange(-200_000, 200_000)
            value = max(value, 0)
        else:
            index = Decimal(repr(_index(account, category.code, day)))
            value = int((purchase * index).to_integral_value(ROUND_HALF_UP))
        loan = purchase // CREDIT_LOAN_SHARE if category.code == "stock" else 0
        if category.code in UNPRICED_CODES:
            rows.append({"pchs": 0, "evlu": value, "loan": loan, "pfls": 0})
        else:
            rows.append({"pchs": purchase, "evlu": value, "loan": loan})
    total = {key: sum(row[key] for row in rows) for key in ("pchs", "evlu", "loan")}
    return {
        "output1": output1_rows(rows),
        "output2": _output2(layout, rows, total),
        "rt_cd": "0",
        "msg_cd": "KIOK0530",
        "msg1": "조회되었습니다                                                                  ",
    }


def _output2(
    layout: layouts.Layout, rows: list[dict[str, int]], total: dict[str, int]
) -> dict[str, str]:
    by_code = dict(zip((c.code for c in layout.categories), rows, strict=False))

    def value(code: str) -> int:
        return by_code[code]["evlu"] if code in by_code else 0

    securities = [by_code[code] for code in SECURITIES_CODES if code in by_code]
    pchs = sum(row["pchs"] for row in securities)
    evlu = sum(row["evlu"] for row in securities)
    cash = value("cash_deposit") + value("cash_deposit_cma")
    cma = value("cash_deposit_cma") // 2
    numbers = {
        "pchs_amt_smtl": pchs,
        "nass_tot_amt": evlu,  # 순자산총금액: securities only, as KIS sends it (not net assets)
        "loan_amt_smtl": total["loan"],
        "evlu_pfls_amt_smtl": sum(_pfls(row) for row in securities),
        "evlu_amt_smtl": evlu,
        "tot_asst_amt": total["evlu"],
        "tot_lnda_tot_ulst_lnda": total["loan"],
        "crdt_fncg_amt": total["loan"],
        "frcr_evlu_tota": value("foreign_currency"),
        "tot_dncl_amt": cash + value("subscription_deposit"),
        "cma_evlu_amt": cma,
        "dncl_amt": cash - cma,
        "ovrs_stck_evlu_amt1": value("overseas_stock"),
        "ovrs_bond_evlu_amt": value("overseas_bond"),
        "sbsc_dncl_amt": value("subscription_deposit"),
    }
    return {
        name: (
            f"{numbers.get(name, 0)}.000000"
            if name in SIX_DECIMAL_FIELDS
            else str(numbers.get(name, 0))
        )
        for name in OUTPUT2_FIELDS
    }


def foreign_rows_summed(account: Account, body: dict[str, Any]) -> dict[str, Any]:
    """The body with every foreign-currency row held, and frcr_evlu_tota the sum of them all:
    a reading of 외화평가총액 that KIS's one published sample does not rule out."""
    layout = layouts.for_product(account.product_code)
    rows = _amounts(body)
    foreign = [i for i in map(layout.position, FOREIGN_CODES) if i is not None]
    for n, index in enumerate(foreign):
        rows[index] = {"pchs": 3_000_000 * (n + 1), "evlu": 3_100_000 * (n + 1), "loan": 0}
    body = _with_rows(body, rows)
    body["output2"]["frcr_evlu_tota"] = str(sum(rows[i]["evlu"] for i in foreign))
    return body


def without_ima(account: Account, body: dict[str, Any]) -> dict[str, Any]:
    """The body in the layout before IMA (KIS's published sample): the IMA row taken out and
    the 합계 row and tot_asst_amt summed again without it."""
    ima = layouts.for_product(account.product_code).position("ima")
    assert ima is not None, "every current layout has an IMA row"
    rows = _amounts(body)
    del rows[ima]
    return _with_rows(body, rows)


def _amounts(body: dict[str, Any]) -> list[dict[str, int]]:
    """output1's rows before 합계 as purchase, value, loan and profit or loss in won."""
    return [
        {
            "pchs": int(r["pchs_amt"]),
            "evlu": int(r["evlu_amt"]),
            "loan": int(r["crdt_lnd_amt"]),
            "pfls": int(r["evlu_pfls_amt"]),
        }
        for r in body["output1"][:-1]
    ]


def _with_rows(body: dict[str, Any], rows: list[dict[str, int]]) -> dict[str, Any]:
    output1 = output1_rows(rows)
    output2 = {**body["output2"], "tot_asst_amt": output1[-1]["evlu_amt"]}
    return {**body, "output1": output1, "output2": output2}
