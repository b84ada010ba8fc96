"""One amount of a balance answer for kis-redact, and the new values drawn for it: same sign,
zero stays zero, same decimals, at most the spec's 19 characters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from random import Random
from typing import Any

WEIGHT = "whol_weit_rt"
#: (difference, minuend, subtrahend): output1 fields that relate within one row.
ROW_DIFFERENCES = (
    ("evlu_pfls_amt", "evlu_amt", "pchs_amt"),
    ("real_nass_amt", "evlu_amt", "crdt_lnd_amt"),
)
FRESH_DIGITS = (3, 9)
MAX_CHARS = 19  # the spec's length of an amount
ATTEMPTS = 200
ALL_SUBSETS_UP_TO = 12  # nonzero rows of one field: beyond this, only a few rows in or out
NUMBER = re.compile(r"(\s*)([+-]?)([0-9]+)(?:\.([0-9]+))?(\s*)")


@dataclass(eq=False)
class Amount:
    """One amount string in a body: where it sits, what it said, and its new value."""

    where: str
    holder: dict[str, Any]
    key: str
    text: str
    value: Decimal
    new: Decimal | None = None

    @property
    def _parts(self) -> tuple[str, ...]:
        match = NUMBER.fullmatch(self.text)
        assert match is not None
        return tuple(part or "" for part in match.groups())

    @property
    def decimals(self) -> int:
        return len(self._parts[3])

    @property
    def has_fraction(self) -> bool:
        return self._parts[3].strip("0") != ""

    @property
    def sign(self) -> int:
        return sign_of(self.value)

    def render(self, value: Decimal) -> str:
        """`value` written the way this amount was: padding, explicit plus, decimals."""
        if value == 0 and self.value == 0:
            return self.text
        lead, plus, _, _, trail = self._parts
        magnitude = abs(value)
        needed = max(0, -magnitude.normalize().as_tuple().exponent)  # type: ignore[operator]
        digits = f"{magnitude:.{max(self.decimals, needed)}f}"
        sign = "-" if value < 0 else ("+" if plus == "+" and value > 0 else "")
        return f"{lead}{sign}{digits}{trail}"


def sign_of(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def amount_at(holder: dict[str, Any], key: str, where: str) -> Amount | None:
    text = holder.get(key)
    if not isinstance(text, str) or not NUMBER.fullmatch(text):
        return None
    return Amount(f"{where} {key}", holder, key, text, Decimal(text.strip()))


def fresh_value(cell: Amount, rng: Random) -> Decimal:
    """A random value of the cell's shape: zero stays zero, sign and fraction kept."""
    if cell.value == 0:
        return Decimal(0)
    digits = rng.randint(*FRESH_DIGITS)
    value = Decimal(rng.randrange(10 ** (digits - 1), 10**digits))
    if cell.has_fraction:
        value += Decimal(rng.randrange(1, 10**cell.decimals)).scaleb(-cell.decimals)
    return value * cell.sign


def subtrahend_value(minuend: Decimal, cell: Amount, difference: Amount, rng: Random) -> Decimal:
    """A value for `cell` such that `minuend` - value has the sign `difference` had."""
    if cell.value == 0:
        return Decimal(0)
    if difference.value == 0:
        return minuend
    if minuend != 0:
        for _ in range(50):
            value = Decimal(rng.randrange(1, 2 * int(abs(minuend)) + 2)) * cell.sign
            if sign_of(minuend - value) == difference.sign:
                return value
    return fresh_value(cell, rng)


def weight_of(part: Decimal, whole: Decimal, rounding: str) -> Decimal:
    if whole == 0:
        return Decimal(0)
    with localcontext() as context:
        context.prec = 60
        return (part * 100 / whole).quantize(Decimal("0.01"), rounding=rounding)
