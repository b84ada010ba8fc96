"""Deterministic simulated portfolios: the CTRP6548R body an account would get on a given day.

Each account holds a fixed set of categories chosen from its number; valuations move from day
to day along a smooth seeded path. Accounts whose CANO starts with 9 are "whales" whose totals
reach 19 digits, beyond what int64 or float64 hold exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pipelines.kis import layouts
from pipelines.kis.protocol import OUTPUT2_FIELDS, Account

CASH_CODES = frozenset({"cash_deposit", "cash_deposit_cma", "subscription_deposit"})
FOREIGN_CODES = ("fx_short_term_bond", "fx_els_dls", "foreign_currency")
SIX_DECIMAL_FIELDS = frozenset({"nass_tot_amt", "ovrs_stck_evlu_amt1", "ovrs_bond_evlu_amt"})
WHALE_TOTAL = 9_600_000_000_000_000_000  # 19 digits, above int64's 9,223,372,036,854,775,807


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
        if category.code in CASH_CODES or rng.random() < 0.45:
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


def output1_rows(rows: list[dict[str, int]]) -> list[dict[str, str]]:
    """output1 as KIS sends it, from each category's purchase, value and credit loan in won
    (keys pchs, evlu, loan), with the 합계 row summing them last."""
    total = {key: sum(row[key] for row in rows) for key in ("pchs", "evlu", "loan")}
    output1 = [
        {
            "pchs_amt": str(row["pchs"]),
            "evlu_amt": str(row["evlu"]),
            "evlu_pfls_amt": str(row["evlu"] - row["pchs"]),
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
    layout = layouts.for_product(account.product_code)
    held = _holdings(account, layout)
    rows: list[dict[str, int]] = []
    for category in layout.categories[:-1]:
        purchase = held.get(category.code, 0)
        if category.code in CASH_CODES:
            value = purchase + _rng(account.id, category.code, day).randrange(-200_000, 200_000)
            value = max(value, 0)
            purchase = value
        else:
            index = Decimal(repr(_index(account, category.code, day)))
            value = int((purchase * index).to_integral_value(ROUND_HALF_UP))
        loan = purchase // 5 if category.code == "stock" else 0
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

    securities = [row for code, row in by_code.items() if code not in CASH_CODES]
    pchs = sum(row["pchs"] for row in securities)
    evlu = sum(row["evlu"] for row in securities)
    cash = value("cash_deposit") + value("cash_deposit_cma")
    cma = value("cash_deposit_cma") // 2
    numbers = {
        "pchs_amt_smtl": pchs,
        "nass_tot_amt": total["evlu"] - total["loan"],
        "loan_amt_smtl": total["loan"],
        "evlu_pfls_amt_smtl": evlu - pchs,
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
    """output1's rows before 합계 as purchase, value and loan in won."""
    return [
        {"pchs": int(r["pchs_amt"]), "evlu": int(r["evlu_amt"]), "loan": int(r["crdt_lnd_amt"])}
        for r in body["output1"][:-1]
    ]


def _with_rows(body: dict[str, Any], rows: list[dict[str, int]]) -> dict[str, Any]:
    output1 = output1_rows(rows)
    output2 = {**body["output2"], "tot_asst_amt": output1[-1]["evlu_amt"]}
    return {**body, "output1": output1, "output2": output2}
