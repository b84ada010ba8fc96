"""output1 row layouts of TR CTRP6548R: which category each row position holds, per product code.

Each layout is data: the product codes and row count that select it, and its rows in order.
Labels are spelled as the vendor's spec spelled them; `category_code` names a concept, shared
by every layout that has it, and `ASSET_CLASSES` rolls concepts up across layouts. A layout is
chosen by product code and row count alone, on any date. Adding a layout is adding an entry to
`KNOWN`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import UnknownLayoutError

#: category_code → asset class: one allocation model for every layout.
ASSET_CLASSES: dict[str, str] = {
    "stock": "equity",
    "overseas_stock": "equity",
    "fund_mmw": "fund",
    "beneficiary_certificate": "fund",
    "bond": "bond",
    "overseas_bond": "bond",
    "short_term_bond": "bond",
    "fx_short_term_bond": "bond",
    "cd_cp": "bond",
    "els_dls": "structured",
    "fx_els_dls": "structured",
    "wrap": "managed",
    "trust": "managed",
    "ima": "managed",
    "rp_issued_note": "cash",
    "rp": "cash",
    "cash_deposit": "cash",
    "cash_deposit_cma": "cash",
    "subscription_deposit": "cash",
    "foreign_currency": "fx",
    "fx_rp": "fx",
    "gold_spot": "alternative",
    "other_firm_product": "other",
    "total": "total",
}

#: The deposit rows (예수금, 예수금+CMA / 예수금+cma, 청약자예수금): their evlu_amt added up is an
#: account's cash. Chosen by category_code, the same in every layout, never by position.
CASH_DEPOSIT_CODES: frozenset[str] = frozenset(
    {"cash_deposit", "cash_deposit_cma", "subscription_deposit"}
)


@dataclass(frozen=True)
class Category:
    code: str
    ko: str
    en: str

    @property
    def is_total(self) -> bool:
        return self.code == "total"

    @property
    def asset_class(self) -> str:
        return ASSET_CLASSES[self.code]


@dataclass(frozen=True)
class Layout:
    name: str
    #: Product codes (ACNT_PRDT_CD) this layout serves; empty means "every code not claimed
    #: by another layout".
    product_codes: frozenset[str]
    categories: tuple[Category, ...]
    #: False for a layout the current spec no longer lists: still labelled, with a warning.
    current: bool = True

    @property
    def row_count(self) -> int:
        return len(self.categories)

    def serves(self, product_code: str) -> bool:
        if self.product_codes:
            return product_code in self.product_codes
        return not any(product_code in other.product_codes for other in KNOWN)

    def position(self, code: str) -> int | None:
        """0-based row index of a category, or None if this layout has no such row."""
        return next((i for i, c in enumerate(self.categories) if c.code == code), None)


def _categories(*rows: tuple[str, str, str]) -> tuple[Category, ...]:
    return tuple(Category(code, ko, en) for code, ko, en in rows)


STANDARD_20 = Layout(
    name="standard_20",
    product_codes=frozenset(),
    categories=_categories(
        ("stock", "주식", "Stocks"),
        ("fund_mmw", "펀드/MMW", "Funds/MMW"),
        ("ima", "IMA", "IMA"),
        ("bond", "채권", "Bonds"),
        ("els_dls", "ELS/DLS", "ELS/DLS"),
        ("wrap", "WRAP", "Wrap accounts"),
        ("trust", "신탁", "Trusts"),
        ("rp_issued_note", "RP/발행어음", "RP/Issued notes"),
        ("overseas_stock", "해외주식", "Overseas stocks"),
        ("overseas_bond", "해외채권", "Overseas bonds"),
        ("gold_spot", "금현물", "Physical gold"),
        ("cd_cp", "CD/CP", "CD/CP"),
        ("short_term_bond", "전자단기사채", "Electronic short-term bonds"),
        ("other_firm_product", "타사상품", "Other firms' products"),
        ("fx_short_term_bond", "외화전자단기사채", "FX electronic short-term bonds"),
        ("fx_els_dls", "외화 ELS/DLS", "FX ELS/DLS"),
        ("foreign_currency", "외화", "Foreign currency"),
        ("cash_deposit", "예수금", "Cash deposit"),
        ("subscription_deposit", "청약자예수금", "Subscription deposit"),
        ("total", "합계", "Total"),
    ),
)

PRODUCT21_17 = Layout(
    name="product21_17",
    product_codes=frozenset({"21"}),
    categories=_categories(
        ("beneficiary_certificate", "수익증권", "Beneficiary certificates (funds)"),
        ("ima", "IMA", "IMA"),
        ("bond", "채권", "Bonds"),
        ("els_dls", "ELS/DLS", "ELS/DLS"),
        ("wrap", "WRAP", "Wrap accounts"),
        ("trust", "신탁", "Trusts"),
        ("rp", "RP", "RP"),
        ("fx_rp", "외화rp", "FX RP"),
        ("overseas_bond", "해외채권", "Overseas bonds"),
        ("cd_cp", "CD/CP", "CD/CP"),
        ("short_term_bond", "전자단기사채", "Electronic short-term bonds"),
        ("fx_short_term_bond", "외화전자단기사채", "FX electronic short-term bonds"),
        ("fx_els_dls", "외화ELS/DLS", "FX ELS/DLS"),
        ("foreign_currency", "외화평가금액", "Foreign currency (valuation)"),
        ("cash_deposit_cma", "예수금+cma", "Cash deposit + CMA"),
        ("subscription_deposit", "청약자예수금", "Subscription deposit"),
        ("total", "합계", "Total"),
    ),
)

#: The layouts before IMA was added, as the earlier spec page listed them; the vendor's own
#: published sample answer has this 19-row order (해외주식 row 8, 외화 16, 예수금 17, 합계 19).
#: When the service switched, and whether every account did, is not known: an answer of 19
#: rows (16 for product code 21) is labelled with these on any date, and flagged as old.
STANDARD_19 = Layout(
    name="standard_19",
    product_codes=frozenset(),
    current=False,
    categories=_categories(
        ("stock", "주식", "Stocks"),
        ("fund_mmw", "펀드/MMW", "Funds/MMW"),
        ("bond", "채권", "Bonds"),
        ("els_dls", "ELS/DLS", "ELS/DLS"),
        ("wrap", "WRAP", "Wrap accounts"),
        ("trust", "신탁/퇴직연금/외화신탁", "Trusts/pensions/FX trusts"),
        ("rp_issued_note", "RP/발행어음", "RP/Issued notes"),
        ("overseas_stock", "해외주식", "Overseas stocks"),
        ("overseas_bond", "해외채권", "Overseas bonds"),
        ("gold_spot", "금현물", "Physical gold"),
        ("cd_cp", "CD/CP", "CD/CP"),
        ("short_term_bond", "단기사채", "Short-term bonds"),
        ("other_firm_product", "타사상품", "Other firms' products"),
        ("fx_short_term_bond", "외화단기사채", "FX short-term bonds"),
        ("fx_els_dls", "외화 ELS/DLS", "FX ELS/DLS"),
        ("foreign_currency", "외화", "Foreign currency"),
        ("cash_deposit_cma", "예수금+CMA", "Cash deposit + CMA"),
        ("subscription_deposit", "청약자예수금", "Subscription deposit"),
        ("total", "<합계>", "Total"),
    ),
)

PRODUCT21_16 = Layout(
    name="product21_16",
    product_codes=frozenset({"21"}),
    current=False,
    categories=_categories(
        ("beneficiary_certificate", "수익증권", "Beneficiary certificates (funds)"),
        ("bond", "채권", "Bonds"),
        ("els_dls", "ELS/DLS", "ELS/DLS"),
        ("wrap", "wrap", "Wrap accounts"),
        ("trust", "신탁", "Trusts"),
        ("rp", "rp", "RP"),
        ("fx_rp", "외화rp", "FX RP"),
        ("overseas_bond", "해외채권", "Overseas bonds"),
        ("cd_cp", "CD/CP", "CD/CP"),
        ("short_term_bond", "전자단기사채", "Electronic short-term bonds"),
        ("fx_short_term_bond", "외화전자단기사채", "FX electronic short-term bonds"),
        ("fx_els_dls", "외화ELS/DLS", "FX ELS/DLS"),
        ("foreign_currency", "외화평가금액", "Foreign currency (valuation)"),
        ("cash_deposit_cma", "예수금+cma", "Cash deposit + CMA"),
        ("subscription_deposit", "청약자예수금", "Subscription deposit"),
        ("total", "합계", "Total"),
    ),
)

#: Every layout the pipeline can label, current ones first. Adding a layout is one entry.
KNOWN: tuple[Layout, ...] = (STANDARD_20, PRODUCT21_17, STANDARD_19, PRODUCT21_16)


def labelled_rows() -> list[tuple[str, int, Category]]:
    """Every layout's rows as (layout name, 1-based category_seq, category): how the warehouse's
    category_labels table and the DataFrames look up a row's asset class."""
    return [
        (layout.name, seq, category)
        for layout in KNOWN
        for seq, category in enumerate(layout.categories, start=1)
    ]


def for_product(product_code: str) -> Layout:
    """The layout the service currently sends for an account product code."""
    return next(layout for layout in KNOWN if layout.serves(product_code) and layout.current)


def find(product_code: str, row_count: int) -> Layout | None:
    """The layout keyed by product code and row count, if there is one."""
    return next(
        (
            layout
            for layout in KNOWN
            if layout.serves(product_code) and layout.row_count == row_count
        ),
        None,
    )


def resolve(product_code: str, row_count: int, *, account_id: str) -> Layout:
    """The layout for a response, keyed by product code and row count, or a clear refusal."""
    layout = find(product_code, row_count)
    if layout:
        return layout
    known = ", ".join(
        f"{layout.name} ({layout.row_count} rows, product codes "
        f"{'/'.join(sorted(layout.product_codes)) or 'any other'})"
        for layout in KNOWN
    )
    raise UnknownLayoutError(
        f"account {account_id}: output1 has {row_count} rows for product code {product_code!r}, "
        f"which matches no known layout; known layouts: {known}. The raw answer is kept; "
        "add the new layout to pipelines/kis/layouts.py and rebuild the day to label it."
    )
