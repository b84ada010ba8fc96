"""Redacted copies of landed balance files (kis-balance-raw/1) and of quarantined answers
(kis-balance-quarantine/1) to attach to a bug report.

Account numbers are masked everywhere; with an `amounts_seed` every amount is replaced by a
random value that keeps zeros, signs, decimals and which values add up to which. `kis-redact`
(`main`) is the command; the rest is plain functions.

What the amounts keep, and how (each relation is detected in the original, then re-derived):
- within a row: `evlu_pfls_amt` = `evlu_amt` - `pchs_amt` and `real_nass_amt` = `evlu_amt` -
  `crdt_lnd_amt`, where the original had them;
- the last (합계) row: per field, the sum of the other rows where it was, else a fresh value
  that is still not the sum (a broken total stays broken);
- `whol_weit_rt`: recomputed from the new `evlu_amt` as each row's share of the 합계 row's
  (or of the rows' sum, if that is what the original's weights were made from), at 2
  decimals, truncated as KIS does or rounded half-up if the original's were; the 합계 row's
  weight is kept;
- each output2 field equal to a row's value (the 합계 row first), to an earlier page's output2,
  to the sum of a few rows of one field (e.g. every foreign-currency row, 주식 + 해외주식,
  everything but cash), or to another output2 field plus or minus a value already derived,
  is derived the same way from the new values; anything else gets a fresh value.
New values do not depend on the originals' magnitudes (3 to 9 integer digits, so sums stay
within the spec's 19 characters). A whole draw is repeated until every value keeps its sign
and zero; what no draw could keep (a 합계 of exactly 0 over nonzero rows) is reported.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import ipaddress
import itertools
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import urlsplit

from pipelines.ingest import landing
from pipelines.kis import layouts, protocol
from pipelines.kis.protocol import Account
from pipelines.storage.files import private_dirs

#: Keys that would carry a credential; a landed file never has them, and a copy never will.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "appkey",
        "appsecret",
        "app_key",
        "app_secret",
        "secretkey",
        "access_token",
        "token",
        "personalseckey",
        "approval_key",
    }
)
#: Servers whose name says nothing about the user: KIS's own domains and loopback.
PUBLIC_HOSTS = frozenset({"openapi.koreainvestment.com", protocol.PAPER_TRADING_HOST, "localhost"})
PUBLIC_SERVER_TEXTS = frozenset({"embedded simulator (loopback)"})
SOURCE_KEYS_KEPT = frozenset({"env", "simulated", "as_of"})
REDACTED = "(redacted)"
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
_NUMBER = re.compile(r"(\s*)([+-]?)([0-9]+)(?:\.([0-9]+))?(\s*)")


class RedactionError(ValueError):
    """The file cannot be redacted safely; nothing is written."""


# -- account numbers ------------------------------------------------------------------------
def default_key_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kis-balance-history" / "redaction-key"


def default_key(path: Path | None = None) -> bytes:
    """This machine's masking key (created on first use, owner-only): the same account gets
    the same fake number in every copy made here, and nobody else can map it back."""
    path = path or default_key_path()
    private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        key = secrets.token_bytes(32)
        handle.write(key)
    return key


def fake_cano(cano: str, key: bytes) -> str:
    """A stable fake 8-digit CANO: a keyed hash of the real one (a plain hash of 10^8 possible
    numbers would be reversed in minutes)."""
    digest = hmac.new(key, cano.encode(), hashlib.sha256).digest()
    for start in range(0, len(digest) - 7, 4):
        fake = f"{int.from_bytes(digest[start : start + 8], 'big') % 10**8:08d}"
        if fake != cano:
            return fake
    raise AssertionError("unreachable: every window of the digest gave the real number")


# -- amounts --------------------------------------------------------------------------------
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
        match = _NUMBER.fullmatch(self.text)
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
        return _sign(self.value)

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


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def _amount(holder: dict[str, Any], key: str, where: str) -> Amount | None:
    text = holder.get(key)
    if not isinstance(text, str) or not _NUMBER.fullmatch(text):
        return None
    return Amount(f"{where} {key}", holder, key, text, Decimal(text.strip()))


def _fresh(cell: Amount, rng: Random) -> Decimal:
    """A random value of the cell's shape: zero stays zero, sign and fraction kept."""
    if cell.value == 0:
        return Decimal(0)
    digits = rng.randint(*FRESH_DIGITS)
    value = Decimal(rng.randrange(10 ** (digits - 1), 10**digits))
    if cell.has_fraction:
        value += Decimal(rng.randrange(1, 10**cell.decimals)).scaleb(-cell.decimals)
    return value * cell.sign


def _subtrahend(minuend: Decimal, cell: Amount, difference: Amount, rng: Random) -> Decimal:
    """A value for `cell` such that `minuend` - value has the sign `difference` had."""
    if cell.value == 0:
        return Decimal(0)
    if difference.value == 0:
        return minuend
    if minuend != 0:
        for _ in range(50):
            value = Decimal(rng.randrange(1, 2 * int(abs(minuend)) + 2)) * cell.sign
            if _sign(minuend - value) == difference.sign:
                return value
    return _fresh(cell, rng)


def _weight(part: Decimal, whole: Decimal, rounding: str) -> Decimal:
    if whole == 0:
        return Decimal(0)
    with localcontext() as context:
        context.prec = 60
        return (part * 100 / whole).quantize(Decimal("0.01"), rounding=rounding)


Step = tuple[Amount, Callable[[Random], Decimal]]


@dataclass
class AmountPlan:
    """How every amount of a file gets its new value: steps in dependency order."""

    cells: list[Amount] = field(default_factory=list)
    weights: list[Amount] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    #: What was found to add up, in words, for the command's report.
    relations: list[str] = field(default_factory=list)

    def derive(self, cell: Amount, compute: Callable[[Random], Decimal]) -> None:
        self.steps.append((cell, compute))

    def draw(self, rng: Random, avoid: Iterable[str] = ()) -> list[str]:
        """One draw of every new value; the problems that make it unusable (none: keep it).

        `avoid`: texts no new value may contain (the real account numbers)."""
        for cell in [*self.cells, *self.weights]:
            cell.new = None
        for cell, compute in self.steps:
            cell.new = compute(rng)
        problems = []
        for cell in self.cells:
            assert cell.new is not None, cell.where
            if _sign(cell.new) != cell.sign:
                problems.append(f"{cell.where}: sign of {cell.text.strip()!r} not kept")
        for cell in [*self.cells, *self.weights]:
            assert cell.new is not None, cell.where
            text = cell.render(cell.new)
            if len(text.strip()) > max(MAX_CHARS, len(cell.text.strip())):
                problems.append(f"{cell.where}: longer than {MAX_CHARS} characters")
            if len(text.strip().partition(".")[2]) != cell.decimals:
                problems.append(f"{cell.where}: needs more decimals than {cell.text.strip()!r}")
            if any(cano in text for cano in avoid):
                problems.append(f"{cell.where}: contains the account number")
        return problems

    def write(self) -> None:
        for cell in [*self.cells, *self.weights]:
            assert cell.new is not None
            cell.holder[cell.key] = cell.render(cell.new)


def _value_of(cell: Amount) -> Callable[[Random], Decimal]:
    def value(rng: Random) -> Decimal:
        assert cell.new is not None, f"{cell.where} is used before it is drawn"
        return cell.new

    return value


def _constant(value: Decimal) -> Callable[[Random], Decimal]:
    return lambda rng: value


def _sum_of(cells: list[Amount]) -> Callable[[Random], Decimal]:
    def total(rng: Random) -> Decimal:
        return sum((_value_of(cell)(rng) for cell in cells), Decimal(0))

    return total


def _row_label(layout: layouts.Layout | None, index: int) -> str:
    if layout is None:
        return f"output1 row {index + 1}"
    return f"output1 row {index + 1} ({layout.categories[index].ko})"


def plan_amounts(
    rows: list[dict[str, Any]], summaries: list[dict[str, Any]], product_code: str
) -> AmountPlan:
    """Find what adds up to what among a file's amounts, and how to re-derive it."""
    plan = AmountPlan()
    layout = next(
        (
            known
            for known in layouts.KNOWN
            if known.serves(product_code) and known.row_count == len(rows)
        ),
        None,
    )
    row_cells: list[dict[str, Amount]] = []
    for index, row in enumerate(rows):
        cells: dict[str, Amount] = {}
        if isinstance(row, dict):
            for key in row:
                cell = _amount(row, key, _row_label(layout, index))
                if cell is None:
                    continue
                if key == WEIGHT:
                    plan.weights.append(cell)
                else:
                    cells[key] = cell
                    plan.cells.append(cell)
        row_cells.append(cells)
    parts, total = (row_cells[:-1], row_cells[-1]) if len(row_cells) > 1 else (row_cells, {})

    for cells in parts:
        _plan_row(plan, cells)
    for key, cell in total.items():
        members = [cells[key] for cells in parts if key in cells]
        if cell.value == sum((m.value for m in members), Decimal(0)):
            plan.derive(cell, _sum_of(members))
        else:
            plan.derive(cell, _fresh_unlike(cell, _sum_of(members)))
            plan.relations.append(f"{cell.where}: not the sum of the rows (kept that way)")
    _plan_weights(plan, parts, total)

    known: dict[Decimal, Amount] = {}
    for cells in [total, *parts]:
        for cell in cells.values():
            if cell.value != 0:
                known.setdefault(cell.value, cell)
    subsets = _subset_sums(parts)
    earlier: list[dict[str, Amount]] = []
    for number, summary in enumerate(summaries, start=1):
        where = "output2" if len(summaries) == 1 else f"output2 (page {number})"
        cells = {}
        for key in summary:
            cell = _amount(summary, key, where)
            if cell is not None:
                cells[key] = cell
                plan.cells.append(cell)
        _plan_summary(plan, cells, earlier, known, subsets)
        earlier.append(cells)
    return plan


def _fresh_unlike(cell: Amount, other: Callable[[Random], Decimal]) -> Callable[[Random], Decimal]:
    def value(rng: Random) -> Decimal:
        avoid = other(rng)
        while True:
            new = _fresh(cell, rng)
            if new != avoid or cell.value == 0:
                return new

    return value


def _plan_row(plan: AmountPlan, cells: dict[str, Amount]) -> None:
    drawn: set[str] = set()

    def fresh(key: str) -> None:
        if key not in drawn:
            plan.derive(cells[key], _fresh_step(cells[key]))
            drawn.add(key)

    for difference, minuend, subtrahend in ROW_DIFFERENCES:
        if not all(key in cells for key in (difference, minuend, subtrahend)):
            continue
        if difference in drawn or (
            cells[difference].value != cells[minuend].value - cells[subtrahend].value
        ):
            continue
        fresh(minuend)
        if subtrahend not in drawn:
            plan.derive(
                cells[subtrahend],
                _subtrahend_step(cells[minuend], cells[subtrahend], cells[difference]),
            )
            drawn.add(subtrahend)
        plan.derive(cells[difference], _difference(cells[minuend], cells[subtrahend]))
        drawn.add(difference)
    for key in cells:
        fresh(key)


def _fresh_step(cell: Amount) -> Callable[[Random], Decimal]:
    return lambda rng: _fresh(cell, rng)


def _subtrahend_step(
    minuend: Amount, cell: Amount, difference: Amount
) -> Callable[[Random], Decimal]:
    return lambda rng: _subtrahend(_value_of(minuend)(rng), cell, difference, rng)


def _difference(minuend: Amount, subtrahend: Amount) -> Callable[[Random], Decimal]:
    return lambda rng: _value_of(minuend)(rng) - _value_of(subtrahend)(rng)


def _plan_weights(
    plan: AmountPlan, parts: list[dict[str, Amount]], total: dict[str, Amount]
) -> None:
    """Row weights recomputed from the new evlu_amt: as shares of the 합계 row's (or, if that
    is what reproduces the original weights, of the rows' sum), truncated or rounded as the
    original's were. Weights that cannot be recomputed are kept."""
    weights = {id(cell.holder): cell for cell in plan.weights}
    pairs = [
        (weights[id(cells["evlu_amt"].holder)], cells["evlu_amt"])
        for cells in parts
        if "evlu_amt" in cells and id(cells["evlu_amt"].holder) in weights
    ]
    evlu = [cells["evlu_amt"] for cells in parts if "evlu_amt" in cells]
    added = sum((e.value for e in evlu), Decimal(0))
    bases: list[tuple[str, Callable[[Random], Decimal], Decimal]] = []
    if "evlu_amt" in total:
        whole = total["evlu_amt"]
        bases.append(("the 합계 row's evlu_amt", _value_of(whole), whole.value))
    summed = ("the rows' evlu_amt summed", _sum_of(evlu), added)
    # a 합계 that is not the sum: the rows' sum first, if the weights were made from it
    bases.insert(0 if bases and bases[0][2] != added else len(bases), summed)
    choice = None
    for base in bases:
        for rounding in (ROUND_DOWN, ROUND_HALF_UP):
            if pairs and all(w.value == _weight(e.value, base[2], rounding) for w, e in pairs):
                choice = (base, rounding)
                break
        if choice:
            break
    if pairs and choice is None and "evlu_amt" in total:
        choice = (next(b for b in bases if b is not summed), ROUND_DOWN)
    recomputed = set()
    if choice is not None:
        (what, base_value, _), rounding = choice
        for weight, part in pairs:
            plan.derive(weight, _weight_step(part, base_value, rounding))
            recomputed.add(id(weight))
        how = "truncated" if rounding == ROUND_DOWN else "rounded half-up"
        plan.relations.append(f"{WEIGHT}: each row's share of {what}, {how} to 2 decimals")
    for weight in plan.weights:
        if id(weight) not in recomputed:
            plan.derive(weight, _constant(weight.value))


def _weight_step(
    part: Amount, whole: Callable[[Random], Decimal], rounding: str
) -> Callable[[Random], Decimal]:
    return lambda rng: _weight(_value_of(part)(rng), whole(rng), rounding)


def _subset_sums(parts: list[dict[str, Amount]]) -> dict[Decimal, list[Amount]]:
    """Sums of two or more nonzero rows of one field → the smallest such set of cells."""
    sums: dict[Decimal, list[Amount]] = {}
    fields = dict.fromkeys(key for cells in parts for key in cells)
    for key in fields:
        nonzero = [cells[key] for cells in parts if key in cells and cells[key].value != 0]
        count = len(nonzero)
        if count <= ALL_SUBSETS_UP_TO:
            sizes: Iterable[int] = range(2, count + 1)
        else:
            sizes = sorted({2, 3, count - 3, count - 2, count - 1, count})
        for size in sizes:
            for members in itertools.combinations(nonzero, size):
                sums.setdefault(sum((m.value for m in members), Decimal(0)), list(members))
    return sums


def _plan_summary(
    plan: AmountPlan,
    cells: dict[str, Amount],
    earlier: list[dict[str, Amount]],
    known: dict[Decimal, Amount],
    subsets: dict[Decimal, list[Amount]],
) -> None:
    pending = []
    for key, cell in cells.items():
        if cell.value == 0:
            plan.derive(cell, _constant(Decimal(0)))
        else:
            pending.append(key)

    def settle(key: str, compute: Callable[[Random], Decimal], how: str | None) -> None:
        plan.derive(cells[key], compute)
        known.setdefault(cells[key].value, cells[key])
        pending.remove(key)
        if how:
            plan.relations.append(f"{cells[key].where} = {how}")

    progress = True
    while progress and pending:
        progress = False
        for key in list(pending):
            cell = cells[key]
            same = next((e[key] for e in earlier if key in e and e[key].value == cell.value), None)
            if same is not None:
                settle(key, _value_of(same), None)
            elif cell.value in known:
                source = known[cell.value]
                settle(key, _value_of(source), source.where)
            elif cell.value in subsets:
                members = subsets[cell.value]
                settle(key, _sum_of(members), " + ".join(m.where for m in members))
            else:
                continue
            progress = True
        if progress:
            continue
        for key in list(pending):
            found = _pair(cells, key, pending, known)
            if found is None:
                continue
            other, base, sign = found
            if other in pending:  # draw the other one so that this one keeps its sign
                if sign < 0 and cells[other].value == cells[key].value:
                    settle(other, _half(base), None)  # two equal halves stay equal
                elif sign < 0:
                    settle(other, _subtrahend_step(base, cells[other], cells[key]), None)
                else:
                    settle(other, _fresh_step(cells[other]), None)
            symbol = "-" if sign < 0 else "+"
            settle(
                key,
                _combined(base, cells[other], sign),
                f"{base.where} {symbol} {cells[other].where}",
            )
            progress = True
            break
    for key in list(pending):  # fresh values; fields equal to one drawn here copy it
        same_as = known.get(cells[key].value)
        settle(key, _value_of(same_as) if same_as else _fresh_step(cells[key]), None)


def _pair(
    cells: dict[str, Amount], key: str, pending: list[str], known: dict[Decimal, Amount]
) -> tuple[str, Amount, int] | None:
    """Another output2 field and a known value with cell = known ∓ other, drawn ones first."""
    cell = cells[key]
    others = [k for k in cells if k != key and cells[k].value != 0]
    for other in sorted(others, key=lambda k: k in pending):
        for sign in (-1, 1):
            base = known.get(cell.value - sign * cells[other].value)
            if base is not None and base is not cell and base is not cells[other]:
                return other, base, sign
    return None


def _half(whole: Amount) -> Callable[[Random], Decimal]:
    """Half of a value (a draw whose half needs more decimals than written is redrawn)."""
    return lambda rng: _value_of(whole)(rng) / 2


def _combined(base: Amount, other: Amount, sign: int) -> Callable[[Random], Decimal]:
    return lambda rng: _value_of(base)(rng) + sign * _value_of(other)(rng)


# -- the file -------------------------------------------------------------------------------
@dataclass
class Redacted:
    envelope: dict[str, Any]
    account_id: str
    #: What the command reports on stderr: relations kept, values whose sign could not be.
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return json.dumps(self.envelope, ensure_ascii=False, indent=1)


def _server_is_public(server: Any) -> bool:
    if not isinstance(server, str):
        return False
    if server in PUBLIC_SERVER_TEXTS:
        return True
    url = urlsplit(server if "://" in server else f"//{server}")
    if url.username or url.password or url.path.strip("/") or url.query:
        return False
    host = (url.hostname or "").rstrip(".").lower()
    if host in PUBLIC_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every entry of nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key, item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", None, item
            yield from _walk(item, f"{path}[{index}]")


def _where_found(envelope: dict[str, Any], text: str) -> str | None:
    """Path of the first string (page bodies looked into) that contains `text`."""
    for path, key, item in _walk(envelope):
        if isinstance(key, str) and text in key:
            return path
        if isinstance(item, str) and text in item:
            if path.endswith(".body"):
                try:
                    inner = _where_found({"body": json.loads(item)}, text)
                except ValueError:
                    inner = None
                return f"{path}{(inner or '').removeprefix('.body')}"
            return path
    return None


def _assert_no_secrets(value: Any, where: str, forbidden: Iterable[str]) -> None:
    forbidden = [text for text in forbidden if len(text) >= 8]
    for path, key, item in _walk(value):
        if isinstance(key, str) and key.lower() in SECRET_KEYS:
            raise RedactionError(
                f"{where}{path}: a {key!r} entry; landed files never hold credentials, so this "
                "is not a file the pipeline wrote. Not writing a copy."
            )
        if isinstance(item, str) and (
            "bearer " in item.lower() or any(text in item for text in forbidden)
        ):
            raise RedactionError(
                f"{where}{path}: holds a token or one of your KIS_* secrets. Not writing a copy."
            )


def _masked(value: Any, masks: dict[str, str]) -> Any:
    """Every string (keys included) with each real CANO replaced by its fake one.

    A number is masked only if it is the account number itself: digits inside an amount are
    left alone (changing them would change the amount), and `redact` refuses such a copy.
    """
    if isinstance(value, str):
        number = value.strip()
        for real, fake in masks.items():
            if not _NUMBER.fullmatch(value) or number == real:
                value = value.replace(real, fake)
            elif len(number) == len(real) + 2 and number.startswith(real):
                value = value.replace(real, fake)  # CANO and product code run together
        return value
    if isinstance(value, dict):
        return {_masked(k, masks): _masked(v, masks) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item, masks) for item in value]
    return value


def _dumps_like(original: str, body: Any) -> str:
    """JSON text of `body` in the separators and escaping the original text was written in."""
    parsed = json.loads(original)
    for separators in ((",", ":"), (", ", ": ")):
        for ensure_ascii in (False, True):
            if json.dumps(parsed, separators=separators, ensure_ascii=ensure_ascii) == original:
                return json.dumps(body, separators=separators, ensure_ascii=ensure_ascii)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _body_key(body: dict[str, Any], key: str) -> str | None:
    return next((k for k in (key, key[:1].upper() + key[1:]) if k in body), None)


def _account_masks(envelope: dict[str, Any], key: bytes) -> tuple[Account, dict[str, str]]:
    """The file's account, and each real CANO it names (envelope and request) with its fake."""
    try:
        account = Account.parse(str(envelope.get("account_id", "")))
    except ValueError as error:
        raise RedactionError(f"account_id: {error}") from None
    canos = {account.cano}
    params = envelope.get("request", {}).get("params", {})
    if isinstance(params, dict) and isinstance(params.get("CANO"), str) and params["CANO"]:
        canos.add(params["CANO"])
    masks = {cano: fake_cano(cano, key) for cano in sorted(canos, key=len, reverse=True)}
    return account, masks


def _source_copy(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        k: (
            (v if _server_is_public(v) else REDACTED)
            if k == "server"
            else (v if k in SOURCE_KEYS_KEPT else REDACTED)
        )
        for k, v in value.items()
    }


def _assert_masked(copy: dict[str, Any], masks: dict[str, str]) -> None:
    for real in masks:
        where = _where_found(copy, real)
        if where:
            raise RedactionError(
                f"the account number still appears in the copy, at {where} (digits of a value, "
                "which masking cannot change); use --amounts to replace the amounts too"
            )


def redact(
    envelope: dict[str, Any],
    *,
    key: bytes,
    amounts_seed: int | None = None,
    forbidden: Iterable[str] = (),
) -> Redacted:
    """A redacted copy of a landed file's JSON: CANO masked (the product code is kept: the
    layout depends on it), `source` reduced to what says nothing about the user, and with
    `amounts_seed` every amount replaced (see the module's docstring). A quarantined answer
    is redacted the same way (see `redact_quarantined`)."""
    if isinstance(envelope, dict) and envelope.get("format") == landing.QUARANTINE_FORMAT:
        return redact_quarantined(envelope, key=key, amounts_seed=amounts_seed, forbidden=forbidden)
    if not isinstance(envelope, dict) or envelope.get("format") != landing.FORMAT:
        raise RedactionError(
            f"not a {landing.FORMAT} file (a landed raw balance answer) nor a "
            f"{landing.QUARANTINE_FORMAT} one (an answer kept in quarantine)"
        )
    forbidden = list(forbidden)
    _assert_no_secrets(envelope, "the file", forbidden)
    account, masks = _account_masks(envelope, key)
    fake = Account(masks[account.cano], account.product_code)

    pages = envelope.get("pages")
    if not isinstance(pages, list):
        raise RedactionError("the file has no pages")
    bodies: list[Any] = []
    for number, page in enumerate(pages, start=1):
        try:
            body = json.loads(page["body"])
        except (TypeError, KeyError, ValueError) as error:
            raise RedactionError(f"page {number}: the body is not JSON ({error})") from None
        _assert_no_secrets(body, f"page {number} body", forbidden)
        bodies.append(body)
    notes: list[str] = []
    if amounts_seed is not None:
        notes += _replace_amounts(bodies, account, masks, amounts_seed)

    copy: dict[str, Any] = {}
    for name, value in envelope.items():
        if name == "source":
            copy[name] = _source_copy(value)
        elif name == "pages":
            copy[name] = [
                {
                    k: _dumps_like(v, _masked(body, masks)) if k == "body" else _masked(v, masks)
                    for k, v in page.items()
                }
                for page, body in zip(pages, bodies, strict=True)
            ]
        else:
            copy[name] = _masked(value, masks)
    copy["redacted"] = {
        "by": "kis-redact",
        "account_numbers": "masked",
        "amounts": "replaced" if amounts_seed is not None else "as received",
    }
    _assert_masked(copy, masks)
    _assert_no_secrets(copy, "the copy", forbidden)
    return Redacted(copy, fake.id, notes)


def redact_quarantined(
    envelope: dict[str, Any],
    *,
    key: bytes,
    amounts_seed: int | None = None,
    forbidden: Iterable[str] = (),
) -> Redacted:
    """A redacted copy of a quarantined answer (an HTML page, truncated or mangled JSON, an
    error body, a redirect, the first part of an oversized body): CANO masked wherever it
    appears, in a JSON body value by value, in any other text or bytes wherever the digits
    occur. Amounts can be replaced only in a body that is JSON; otherwise RedactionError."""
    forbidden = list(forbidden)
    _assert_no_secrets(envelope, "the file", forbidden)
    account, masks = _account_masks(envelope, key)
    fake = Account(masks[account.cano], account.product_code)
    answer = envelope.get("answer")
    if not isinstance(answer, dict) or not isinstance(answer.get("body"), str):
        raise RedactionError("the file has no answer body")
    encoding, text = answer.get("body_encoding"), answer["body"]
    notes: list[str] = []
    refused_amounts = (
        "--amounts: the body is {what}, so its amounts cannot be found and replaced; leave "
        "out --amounts for a copy with the body as received (account numbers masked)"
    )
    if encoding == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise RedactionError(f"answer.body is not base64 ({error})") from None
        _assert_no_secrets({"body": data.decode("latin-1")}, "the answer's body", forbidden)
        if amounts_seed is not None:
            raise RedactionError(refused_amounts.format(what="not UTF-8 text (kept as base64)"))
        for real, masked in masks.items():
            data = data.replace(real.encode(), masked.encode())
        body = base64.b64encode(data).decode("ascii")
    elif encoding == "utf-8":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            _assert_no_secrets(parsed, "the answer's body", forbidden)
            if amounts_seed is not None:
                notes += _replace_amounts([parsed], account, masks, amounts_seed)
            body = _dumps_like(text, _masked(parsed, masks))
        else:
            if amounts_seed is not None:
                raise RedactionError(refused_amounts.format(what="not a JSON object"))
            body = text
            for real, masked in masks.items():
                body = body.replace(real, masked)
    else:
        raise RedactionError(f"answer.body_encoding {encoding!r}: expected utf-8 or base64")
    copy: dict[str, Any] = {}
    for name, value in envelope.items():
        if name == "source":
            copy[name] = _source_copy(value)
        elif name == "answer":
            copy[name] = {k: body if k == "body" else _masked(v, masks) for k, v in value.items()}
        else:
            copy[name] = _masked(value, masks)
    copy["redacted"] = {
        "by": "kis-redact",
        "account_numbers": "masked",
        "amounts": "replaced" if amounts_seed is not None else "as received",
    }
    # base64 text holds digits by chance: the bytes were checked above, not their encoding
    checked = {**copy, "answer": {**copy["answer"], "body": ""}} if encoding == "base64" else copy
    _assert_masked(checked, masks)
    _assert_no_secrets(checked, "the copy", forbidden)
    return Redacted(copy, fake.id, notes)


def _replace_amounts(
    bodies: list[Any], account: Account, masks: dict[str, str], seed: int
) -> list[str]:
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for body in bodies:
        if not isinstance(body, dict):
            continue
        key1, key2 = _body_key(body, "output1"), _body_key(body, "output2")
        if key1 and isinstance(body[key1], list):
            rows.extend(body[key1])
        if key2:
            summary = body[key2]
            summaries += summary if isinstance(summary, list) else [summary]
    summaries = [s for s in summaries if isinstance(s, dict)]
    plan = plan_amounts(rows, summaries, account.product_code)
    rng = Random(seed)
    best: tuple[int, list[str], dict[int, Decimal]] | None = None
    for _ in range(ATTEMPTS):
        problems = plan.draw(rng, avoid=masks)
        if best is None or len(problems) < best[0]:
            values = {id(c): c.new for c in [*plan.cells, *plan.weights] if c.new is not None}
            best = (len(problems), problems, values)
        if not problems:
            break
    assert best is not None
    for cell in [*plan.cells, *plan.weights]:
        cell.new = best[2][id(cell)]
    plan.write()
    return plan.relations + [f"not kept: {problem}" for problem in best[1]]


# -- the command ----------------------------------------------------------------------------
def _secrets_in_environment() -> list[str]:
    """Values of the KIS_* secrets set here (the environment or the settings files): a copy
    must hold none."""
    from pipelines.settings import settings_file_values

    names = ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_PERSONALSECKEY")
    sources = (settings_file_values(), os.environ)
    return sorted({str(values[name]) for values in sources for name in names if values.get(name)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kis-redact",
        description="Write a redacted copy of a landed raw balance file "
        "(data/raw/CTRP6548R/snapshot_date=…/<account>/<time>.json), or of a quarantined answer "
        "(data/raw/quarantine/CTRP6548R/…), to attach to a bug report: "
        "account numbers masked, and with --amounts every amount replaced by a random value "
        "that keeps zeros, signs, decimals and which rows add up to which.",
    )
    parser.add_argument("file", type=Path, help="a landed raw file, or a quarantined answer")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.add_argument(
        "--amounts", action="store_true", help="replace the amounts with random values"
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the random amounts (default: a new one each time)"
    )
    parser.add_argument(
        "--salt",
        help="mask account numbers with this text as the key instead of this machine's own "
        f"(kept in {default_key_path()})",
    )
    args = parser.parse_args(argv)
    try:
        envelope = json.loads(args.file.read_text())
        seed = None
        if args.amounts:
            seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
        key = args.salt.encode() if args.salt is not None else default_key()
        redacted = redact(envelope, key=key, amounts_seed=seed, forbidden=_secrets_in_environment())
    except (OSError, ValueError) as error:  # RedactionError and JSON errors are ValueErrors
        print(f"kis-redact: {args.file}: {error}", file=sys.stderr)
        return 1
    if args.output:
        if args.output.resolve() == args.file.resolve():
            print("kis-redact: the copy would overwrite the landed file", file=sys.stderr)
            return 1
        args.output.write_text(redacted.text() + "\n")
    else:
        sys.stdout.write(redacted.text() + "\n")
    report = [f"account masked as {redacted.account_id}"]
    if seed is not None:
        report.append(f"amounts replaced (seed {seed}); kept:")
        report += [f"  {note}" for note in redacted.notes]
    else:
        report.append("amounts as received (add --amounts to replace them)")
    print("kis-redact: " + "\n".join(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
