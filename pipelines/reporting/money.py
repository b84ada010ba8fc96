"""Amounts in the report: won in the Korean way (억, 만), in plain won, exactly, and as shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

#: Korean myriad units, largest first (1경 = 10^16); amounts above 10^20 count in 경.
UNITS = ((10**16, "경"), (10**12, "조"), (10**8, "억"), (10**4, "만"))


def whole_won(amount: Decimal) -> int:
    if not Decimal(amount).is_finite():
        raise ValueError(f"not an amount: {amount}")
    return int(amount)  # truncates toward zero


def format_krw(amount: Decimal) -> str:
    """Won the Korean way: `Decimal("304136143")` → "3억 413만 6,143원", 0 → "0원".

    Below 1 won is dropped (truncated toward zero). Units up to 경 (10^16); larger amounts
    count in 경 ("12,345경 …").
    """
    won = whole_won(amount)
    rest = abs(won)
    parts = []
    for size, unit in UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count:,}{unit}")
    if rest or not parts:
        parts.append(f"{rest:,}")
    return ("-" if won < 0 else "") + " ".join(parts) + "원"


def format_won(amount: Decimal) -> str:
    """Won with thousands separators: "304,136,143원" (below 1 won truncated toward zero)."""
    return f"{whole_won(amount):,}원"


def format_krw_short(amount: Decimal) -> str:
    """The largest unit with two decimals, truncated, for labels: "3.04억원", "-9.65만원"."""
    won = whole_won(amount)
    text = f"{abs(won):,}"
    for size, unit in UNITS:
        if abs(won) >= size:
            whole, hundredths = divmod(abs(won) * 100 // size, 100)
            text = f"{whole:,}.{hundredths:02d}{unit}"
            break
    return ("-" if won < 0 else "") + text + "원"


def signed_krw(amount: Decimal) -> str:
    return ("+" if whole_won(amount) > 0 else "") + format_krw(amount)


def signed_short(amount: Decimal) -> str:
    return ("+" if whole_won(amount) > 0 else "") + format_krw_short(amount)


def exact_text(value: Decimal) -> str:
    """The exact decimal string of an amount (never an exponent: "0.00000000", not "0E-8")."""
    return format(value, "f")


def percent_of(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 80
        return part * 100 / whole


def pct_text(value: Decimal | None) -> str:
    if value is None:
        return "—"
    shown = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return f"{abs(shown) if shown == 0 else shown}%"


def exact_sum(values: Sequence[Decimal]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80  # exact for DECIMAL(38, 8) amounts, unlike the default 28 digits
        return sum(values, Decimal(0))


@dataclass(frozen=True)
class Amount:
    """An amount as a cell shows it: the Korean way, in plain won, and exactly (`data-value`)."""

    exact: str
    korean: str
    won: str
    sign: str  # "gain", "loss" or ""


def amount_cell(amount: Decimal | None, signed: bool = False) -> Amount | None:
    if amount is None:
        return None
    sign = ""
    if signed:
        sign = "gain" if amount > 0 else "loss" if amount < 0 else ""
    return Amount(
        exact=exact_text(amount),
        korean=signed_krw(amount) if signed else format_krw(amount),
        won=format_won(amount),
        sign=sign,
    )
