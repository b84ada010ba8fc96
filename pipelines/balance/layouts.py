"""output1 row layouts of TR CTRP6548R: which category each row position holds, per product code.

Labels are spelled exactly as the vendor's spec page spells them. `category_code` names a
concept, so the same concept carries the same code in every layout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: str
    ko: str
    en: str

    @property
    def is_total(self) -> bool:
        return self.code == "total"


@dataclass(frozen=True)
class Layout:
    name: str
    #: Product codes (ACNT_PRDT_CD) this layout serves; empty means "every code not claimed
    #: by another layout".
    product_codes: frozenset[str]
    categories: tuple[Category, ...]

    @property
    def row_count(self) -> int:
        return len(self.categories)

    def serves(self, product_code: str) -> bool:
        return (
            product_code in self.product_codes
            if self.product_codes
            else not any(
                product_code in other.product_codes for other in KNOWN if other is not self
            )
        )


class UnknownLayoutError(ValueError):
    """output1 matches no known layout: labelling it by position would mislabel rows."""


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

#: Every layout the pipeline can label. Adding a layout is adding an entry here.
KNOWN: tuple[Layout, ...] = (STANDARD_20, PRODUCT21_17)


def for_product(product_code: str) -> Layout:
    """The layout the service currently sends for an account product code."""
    return next(layout for layout in KNOWN if layout.serves(product_code))


def resolve(product_code: str, row_count: int, *, account_id: str) -> Layout:
    """The layout for a response, keyed by product code and row count, or a clear refusal."""
    for layout in KNOWN:
        if layout.serves(product_code) and layout.row_count == row_count:
            return layout
    known = ", ".join(
        f"{layout.name} ({layout.row_count} rows, product codes "
        f"{'/'.join(sorted(layout.product_codes)) or 'any other'})"
        for layout in KNOWN
    )
    raise UnknownLayoutError(
        f"account {account_id}: output1 has {row_count} rows for product code {product_code!r}, "
        f"which matches no known layout; known layouts: {known}. The raw response is kept; "
        "add the new layout to pipelines/balance/layouts.py to label it."
    )
