"""The amount planner of kis-redact: new amounts that keep which values add up to which, so a
redacted answer replays with the same check results.

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

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from random import Random
from typing import Any

from pipelines.commands.redact.amounts import (
    ALL_SUBSETS_UP_TO,
    ATTEMPTS,
    MAX_CHARS,
    ROW_DIFFERENCES,
    WEIGHT,
    Amount,
    amount_at,
    fresh_value,
    sign_of,
    subtrahend_value,
    weight_of,
)
from pipelines.kis import layouts
from pipelines.kis.protocol import Account

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
            if sign_of(cell.new) != cell.sign:
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
                cell = amount_at(row, key, _row_label(layout, index))
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
            cell = amount_at(summary, key, where)
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
            new = fresh_value(cell, rng)
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
    return lambda rng: fresh_value(cell, rng)


def _subtrahend_step(
    minuend: Amount, cell: Amount, difference: Amount
) -> Callable[[Random], Decimal]:
    return lambda rng: subtrahend_value(_value_of(minuend)(rng), cell, difference, rng)


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
            if pairs and all(w.value == weight_of(e.value, base[2], rounding) for w, e in pairs):
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
    return lambda rng: weight_of(_value_of(part)(rng), whole(rng), rounding)


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


def _body_key(body: dict[str, Any], key: str) -> str | None:
    return next((k for k in (key, key[:1].upper() + key[1:]) if k in body), None)


def replace_amounts(
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
