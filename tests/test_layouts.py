"""The output1 layout tables: faithful to the vendor's spec page, and resolved strictly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.errors import UnknownLayoutError
from pipelines.kis import layouts
from pipelines.kis.layouts import KNOWN, PRODUCT21_17, STANDARD_20, Layout

SPEC = Path(__file__).resolve().parents[2] / "shared/spec/inquire-account-balance.md"
PRODUCT21_MARKER = "[21번 계좌일 경우"
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
NUMBERED = re.compile(r"(\d+): (.+)")
ITEM_COUNT = re.compile(r"(\d+)항목")


def _spec_lists() -> tuple[list[str], list[str]]:
    """The two numbered output1 lists of the spec page: standard, then product code 21.

    Each list is checked against the item count its own header announces ("20항목", "17항목")
    and for consecutive numbering, so a parsing slip cannot pass silently.
    """
    if not SPEC.is_file():
        pytest.skip(f"vendor spec page not found at {SPEC}")
    lines = [line.rstrip() for line in SPEC.read_text(encoding="utf-8").splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Output1 |"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("pchs_amt"))
    headers: list[str] = [lines[start]]
    groups: list[list[str]] = [[]]
    for line in lines[start + 1 : end]:
        if line.startswith(PRODUCT21_MARKER):
            headers.append(line)
            groups.append([])
            continue
        match = NUMBERED.fullmatch(line)
        if match:
            assert int(match.group(1)) == len(groups[-1]) + 1, f"numbering breaks at {line!r}"
            groups[-1].append(match.group(2))
    assert len(groups) == 2, "expected a standard list and a product-21 list"
    for header, group in zip(headers, groups, strict=True):
        announced = ITEM_COUNT.search(header)
        assert announced is not None, f"no item count in {header!r}"
        assert len(group) == int(announced.group(1)), header
    return groups[0], groups[1]


def _labels(layout: Layout) -> list[str]:
    return [category.ko for category in layout.categories]


def _squash(label: str) -> str:
    return "".join(label.split())


def test_standard_labels_equal_the_spec_list_in_order() -> None:
    standard, _ = _spec_lists()
    assert _labels(STANDARD_20) == standard
    assert STANDARD_20.row_count == len(standard) == 20


def test_product21_labels_equal_the_spec_list_in_order() -> None:
    _, product21 = _spec_lists()
    assert _labels(PRODUCT21_17) == product21
    assert PRODUCT21_17.row_count == len(product21) == 17


@pytest.mark.parametrize("layout", KNOWN, ids=lambda layout: layout.name)
def test_category_codes_are_unique_snake_case(layout: Layout) -> None:
    codes = [category.code for category in layout.categories]
    assert len(set(codes)) == len(codes), codes
    assert [code for code in codes if not SNAKE_CASE.fullmatch(code)] == []


@pytest.mark.parametrize("layout", KNOWN, ids=lambda layout: layout.name)
def test_exactly_one_total_row_and_it_is_last(layout: Layout) -> None:
    totals = [i for i, category in enumerate(layout.categories) if category.is_total]
    assert totals == [layout.row_count - 1]
    assert layout.categories[-1].ko.strip("<>") == "합계"


@pytest.mark.parametrize("layout", KNOWN, ids=lambda layout: layout.name)
def test_labels_are_unique_and_english_labels_present(layout: Layout) -> None:
    assert len({_squash(c.ko) for c in layout.categories}) == layout.row_count
    assert all(c.en.strip() for c in layout.categories)


def test_same_korean_label_means_same_code_across_layouts() -> None:
    by_label: dict[str, dict[str, str]] = {}
    for layout in KNOWN:
        for category in layout.categories:
            by_label.setdefault(_squash(category.ko), {})[layout.name] = category.code
    shared = {label: codes for label, codes in by_label.items() if len(codes) > 1}
    # The check must not be vacuous: the spaced/unspaced spelling pair is among the shared ones.
    assert "외화ELS/DLS" in shared
    assert {"외화 ELS/DLS", "외화ELS/DLS"} <= {c.ko for layout in KNOWN for c in layout.categories}
    conflicting = {label: codes for label, codes in shared.items() if len(set(codes.values())) > 1}
    assert conflicting == {}


def test_layout_names_unique_and_product_codes_claimed_once() -> None:
    assert len({layout.name for layout in KNOWN}) == len(KNOWN)
    for current in (True, False):  # per era: today's, before IMA
        same_era = [layout for layout in KNOWN if layout.current is current]
        claimed = [code for layout in same_era for code in layout.product_codes]
        assert len(set(claimed)) == len(claimed)
        assert sum(1 for layout in same_era if not layout.product_codes) == 1  # one catch-all
    # product code and row count alone pick exactly one layout
    keys = [(tuple(sorted(layout.product_codes)), layout.row_count) for layout in KNOWN]
    assert len(set(keys)) == len(keys)


def test_resolve_product21_with_17_rows() -> None:
    assert layouts.resolve("21", 17, account_id="12345678-21") is PRODUCT21_17


@pytest.mark.parametrize("product_code", ["01", "19", "03", "22", "99"])
def test_resolve_other_products_with_20_rows(product_code: str) -> None:
    assert layouts.resolve(product_code, 20, account_id=f"12345678-{product_code}") is STANDARD_20


@pytest.mark.parametrize(
    ("product_code", "row_count"),
    [("01", 18), ("19", 21), ("01", 17), ("01", 16), ("01", 0), ("21", 19), ("21", 20)],
)
def test_resolve_refuses_unknown_row_counts(product_code: str, row_count: int) -> None:
    account_id = f"87654321-{product_code}"
    with pytest.raises(UnknownLayoutError) as caught:
        layouts.resolve(product_code, row_count, account_id=account_id)
    message = str(caught.value)
    assert account_id in message
    assert repr(product_code) in message
    assert f"{row_count} rows" in message
    for layout in KNOWN:
        assert layout.name in message
        assert f"{layout.row_count} rows" in message


def test_unknown_layout_error_is_a_value_error() -> None:
    assert issubclass(UnknownLayoutError, ValueError)


@pytest.mark.parametrize(
    ("product_code", "expected"),
    [("21", PRODUCT21_17), ("01", STANDARD_20), ("19", STANDARD_20), ("22", STANDARD_20)],
)
def test_for_product(product_code: str, expected: Layout) -> None:
    assert layouts.for_product(product_code) is expected


def test_serves_partitions_product_codes() -> None:
    for code in ("01", "19", "21", "22"):
        current = [layout for layout in KNOWN if layout.current]
        assert [layout.name for layout in current if layout.serves(code)] == [
            layouts.for_product(code).name
        ]
    assert PRODUCT21_17.serves("21") and not STANDARD_20.serves("21")


def test_layouts_before_ima_apply_on_any_date_by_row_count() -> None:
    """KIS's own published sample answer has 19 rows: an old answer is labelled, not refused."""
    assert layouts.resolve("01", 19, account_id="a").name == "standard_19"
    assert layouts.resolve("21", 16, account_id="a").name == "product21_16"
    assert not layouts.STANDARD_19.current and not layouts.PRODUCT21_16.current
    # the sample's positions: 해외주식 row 8, 외화 row 16, 예수금 row 17, 합계 row 19
    sample = {"overseas_stock": 8, "foreign_currency": 16, "cash_deposit_cma": 17, "total": 19}
    for code, row in sample.items():
        assert layouts.STANDARD_19.position(code) == row - 1
    # today's layouts without the IMA row; only the cash row was named 예수금+CMA before
    cash = {"cash_deposit", "cash_deposit_cma"}
    for old, new in ((layouts.STANDARD_19, STANDARD_20), (layouts.PRODUCT21_16, PRODUCT21_17)):
        assert [c.code for c in old.categories if c.code not in cash] == [
            c.code for c in new.categories if c.code not in cash | {"ima"}
        ]
        assert old.row_count == new.row_count - 1


def test_every_category_rolls_up_to_an_asset_class() -> None:
    for layout in KNOWN:
        classes = {c.asset_class for c in layout.categories}
        assert "total" in classes and len(classes) > 5
    assert STANDARD_20.categories[0].asset_class == "equity"
    assert PRODUCT21_17.categories[0].asset_class == layouts.ASSET_CLASSES["fund_mmw"]
