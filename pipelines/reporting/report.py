"""The portfolio report: one self-contained HTML page, and a PNG of its main chart.

Read from the warehouse views, in plain Python. The page is a single file with inline CSS and
hand-written SVG: no script, no network, no external font or image, so it opens anywhere and
can be mailed or archived as it is. The PNG is encoded here with zlib, so neither needs a
browser or an imaging library.

Amounts stay exact Decimals from the views to the page: every chart mark carries the amount
it draws in `data-value` (the exact decimal string) and `data-label`. Only pixel positions are
rounded, and displayed won amounts drop anything below 1 won by truncation toward zero.
"""

from __future__ import annotations

import html
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from itertools import pairwise
from typing import Any

import duckdb

from pipelines.balance import warehouse
from pipelines.storage import DataRoot, Location, Storage, open_root

#: Korean myriad units, largest first (1경 = 10^16); amounts above 10^20 count in 경.
UNITS = ((10**16, "경"), (10**12, "조"), (10**8, "억"), (10**4, "만"))

#: A line of the net-asset chart breaks where consecutive snapshots are further apart than
#: this (a weekend is 3 days, a weekend plus a holiday 4): nothing is drawn across a gap.
#: The net-assets chart covers the year up to the report's day, so the page (and the memory it
#: takes to draw) stays the same size however long the history grows.
NET_ASSETS_DAYS = 366
GAP_DAYS = 4

#: asset_class → (Korean, English, colour).
ASSET_CLASSES: dict[str, tuple[str, str, str]] = {
    "equity": ("주식", "Equity", "#d1495b"),
    "fund": ("펀드", "Funds", "#edae49"),
    "bond": ("채권", "Bonds", "#00798c"),
    "structured": ("구조화상품", "Structured (ELS/DLS)", "#8e6c8a"),
    "managed": ("랩·신탁·IMA", "Managed (wrap, trust, IMA)", "#30638e"),
    "cash": ("현금성", "Cash and RP", "#7a9e7e"),
    "fx": ("외화", "Foreign currency", "#66a182"),
    "alternative": ("대체자산", "Alternatives (gold)", "#c9a227"),
    "other": ("기타", "Other", "#8d99ae"),
}
OTHER_COLOUR = "#8d99ae"
#: Korean convention: gains in red, losses in blue.
GAIN_COLOUR, LOSS_COLOUR = "#d62828", "#1d5fbf"
TOTAL_COLOUR = "#222222"
SERIES_COLOURS = ("#00798c", "#d1495b", "#edae49", "#30638e", "#8e6c8a", "#66a182", "#c9a227")

FONT = '"Noto Sans CJK KR", "Malgun Gothic", sans-serif'

# ---------------------------------------------------------------------------------------------
# Amounts


def _whole_won(amount: Decimal) -> int:
    if not Decimal(amount).is_finite():
        raise ValueError(f"not an amount: {amount}")
    return int(amount)  # truncates toward zero


def format_krw(amount: Decimal) -> str:
    """Won the Korean way: `Decimal("304136143")` → "3억 413만 6,143원", 0 → "0원".

    Below 1 won is dropped (truncated toward zero). Units up to 경 (10^16); larger amounts
    count in 경 ("12,345경 …").
    """
    won = _whole_won(amount)
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
    return f"{_whole_won(amount):,}원"


def format_krw_short(amount: Decimal) -> str:
    """The largest unit with two decimals, truncated, for labels: "3.04억원", "-9.65만원"."""
    won = _whole_won(amount)
    text = f"{abs(won):,}"
    for size, unit in UNITS:
        if abs(won) >= size:
            whole, hundredths = divmod(abs(won) * 100 // size, 100)
            text = f"{whole:,}.{hundredths:02d}{unit}"
            break
    return ("-" if won < 0 else "") + text + "원"


def _signed_krw(amount: Decimal) -> str:
    return ("+" if _whole_won(amount) > 0 else "") + format_krw(amount)


def _signed_short(amount: Decimal) -> str:
    return ("+" if _whole_won(amount) > 0 else "") + format_krw_short(amount)


def _exact(value: Decimal) -> str:
    """The exact decimal string of an amount (never an exponent: "0.00000000", not "0E-8")."""
    return format(value, "f")


def _percent(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 80
        return part * 100 / whole


def _pct(value: Decimal | None) -> str:
    if value is None:
        return "—"
    shown = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return f"{abs(shown) if shown == 0 else shown}%"


def _sum(values: Sequence[Decimal]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80  # exact for DECIMAL(38, 8) amounts, unlike the default 28 digits
        return sum(values, Decimal(0))


# ---------------------------------------------------------------------------------------------
# Markup


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tag(name: str, attrs: dict[str, object], content: str | None = None) -> str:
    rendered = "".join(f' {key}="{_e(value)}"' for key, value in attrs.items() if value is not None)
    if content is None:
        return f"<{name}{rendered}/>"
    return f"<{name}{rendered}>{content}</{name}>"


def _px(value: Decimal | int) -> str:
    """A pixel coordinate: two decimals are plenty."""
    text = format(Decimal(value).quantize(Decimal("0.01")), "f").rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _class_labels(asset_class: str) -> tuple[str, str, str]:
    return ASSET_CLASSES.get(asset_class, (asset_class, asset_class, OTHER_COLOUR))


def _query(con: duckdb.DuckDBPyConnection, sql: str, day: date) -> list[dict[str, Any]]:
    """Rows as dicts; the `?` in `sql` is `day`, inlined (see warehouse.on_day)."""
    cursor = con.execute(warehouse.on_day(sql, day))
    names = [column[0] for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _empty(view: str, day: date, what: str = "") -> str:
    return (
        f'<p class="empty">{_e(day)} 기준 데이터가 없습니다{_e(what)}. '
        f"No rows in <code>{_e(view)}</code> for {_e(day)}.</p>"
    )


@dataclass(frozen=True)
class Bar:
    key: str
    ko: str
    en: str
    value: Decimal
    note: str
    colour: str


BAR_WIDTH, BAR_LABEL_X, BAR_PLOT_X, BAR_PLOT_W, BAR_NOTE_X = 960, 238, 250, 470, 732
BAR_ROW, BAR_HEIGHT, BAR_TOP = 38, 20, 10


def _scale(values: Sequence[Decimal], size: int) -> tuple[Decimal, Decimal]:
    """(value of the left edge, pixels per unit) for bars from a zero baseline."""
    low, high = min([Decimal(0), *values]), max([Decimal(0), *values])
    span = high - low
    with localcontext() as ctx:
        ctx.prec = 80
        return low, (Decimal(size) / span if span else Decimal(0))


def _bar_chart(chart_id: str, title: str, bars: Sequence[Bar]) -> str:
    low, per_unit = _scale([b.value for b in bars], BAR_PLOT_W)
    height = BAR_TOP * 2 + BAR_ROW * len(bars)

    def x(value: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 80
            return BAR_PLOT_X + (value - low) * per_unit

    zero = x(Decimal(0))
    parts = [_tag("title", {}, _e(title))]
    for i, bar in enumerate(bars):
        top = BAR_TOP + i * BAR_ROW
        end = x(bar.value)
        middle = top + BAR_ROW // 2
        parts.append(
            _tag("text", {"x": BAR_LABEL_X, "y": middle - 3, "class": "label"}, _e(bar.ko))
            + _tag("text", {"x": BAR_LABEL_X, "y": middle + 11, "class": "label en"}, _e(bar.en))
            + _tag(
                "rect",
                {
                    "class": "mark",
                    "x": _px(min(zero, end)),
                    "y": middle - BAR_HEIGHT // 2,
                    "width": _px(abs(end - zero)),
                    "height": BAR_HEIGHT,
                    "fill": bar.colour,
                    "data-key": bar.key,
                    "data-label": f"{bar.ko} {bar.en}",
                    "data-value": _exact(bar.value),
                },
                _tag("title", {}, _e(f"{bar.ko} {bar.en}: {format_krw(bar.value)}")),
            )
            + _tag("text", {"x": BAR_NOTE_X, "y": middle + 4, "class": "note"}, _e(bar.note))
        )
    parts.append(
        _tag(
            "line",
            {"x1": _px(zero), "x2": _px(zero), "y1": 4, "y2": height - 4, "class": "axis"},
        )
    )
    return _tag(
        "svg",
        {
            "id": chart_id,
            "class": "chart",
            "viewBox": f"0 0 {BAR_WIDTH} {height}",
            "width": BAR_WIDTH,
            "height": height,
            "role": "img",
            "aria-label": title,
        },
        "".join(parts),
    )


# ---------------------------------------------------------------------------------------------
# Sections


def _asset_class_section(con: duckdb.DuckDBPyConnection, day: date) -> str:
    rows = _query(
        con,
        "SELECT asset_class, accounts, purchase_amount, market_value, unrealized_pnl, weight_pct "
        "FROM consolidated_allocation WHERE snapshot_date = ? "
        "ORDER BY market_value DESC, asset_class",
        day,
    )
    head = "<h2>자산군별 배분 <span>Allocation by asset class, all accounts</span></h2>"
    if not rows:
        return _section("asset-class", head + _empty("consolidated_allocation", day))
    bars = []
    for row in rows:
        ko, en, colour = _class_labels(row["asset_class"])
        note = f"{format_krw_short(row['market_value'])} · {_pct(row['weight_pct'])}"
        bars.append(Bar(row["asset_class"], ko, en, row["market_value"], note, colour))
    table = _table(
        [
            ("자산군", "Asset class"),
            ("계좌", "Accounts"),
            ("평가금액", "Market value"),
            ("비중", "Weight"),
            ("평가손익", "Unrealized P&L"),
        ],
        [
            [
                f"{_e(_class_labels(r['asset_class'])[0])} "
                f"<small>{_e(_class_labels(r['asset_class'])[1])}</small>",
                _e(r["accounts"]),
                _amount_cell(r["market_value"]),
                _e(_pct(r["weight_pct"])),
                _amount_cell(r["unrealized_pnl"], signed=True),
            ]
            for r in rows
        ],
        numeric_from=1,
    )
    chart = _bar_chart("chart-asset-class", "Allocation by asset class", bars)
    return _section("asset-class", head + chart + table)


def _category_section(con: duckdb.DuckDBPyConnection, day: date) -> str:
    rows = _query(
        con,
        """
        SELECT a.category_code, any_value(a.asset_class) AS asset_class,
               string_agg(DISTINCT p.category_ko, ' / ' ORDER BY p.category_ko) AS category_ko,
               string_agg(DISTINCT a.category_en, ' / ' ORDER BY a.category_en) AS category_en,
               count(DISTINCT a.account_id) AS accounts,
               sum(a.market_value) AS market_value
        FROM allocation_history a
        LEFT JOIN pnl_by_category p USING (snapshot_date, account_id, category_code)
        WHERE a.snapshot_date = ?
        GROUP BY a.category_code
        ORDER BY market_value DESC, a.category_code
        """,
        day,
    )
    head = "<h2>상품별 배분 <span>Allocation by category, all accounts</span></h2>"
    if not rows:
        return _section("category", head + _empty("allocation_history", day))
    total = _sum([r["market_value"] for r in rows])
    shown = [r for r in rows if r["market_value"] != 0] or rows
    bars = [
        Bar(
            r["category_code"],
            r["category_ko"] or r["category_code"],
            r["category_en"] or r["category_code"],
            r["market_value"],
            f"{format_krw_short(r['market_value'])} · {_pct(_percent(r['market_value'], total))}",
            _class_labels(r["asset_class"])[2],
        )
        for r in shown
    ]
    chart = _bar_chart("chart-category", "Allocation by category", bars)
    hidden = len(rows) - len(shown)
    note = (
        f'<p class="hint">평가금액 0인 {hidden}개 상품은 생략 · {hidden} categories at 0 not '
        "shown. 색은 자산군 Colour = asset class.</p>"
        if hidden
        else ""
    )
    return _section("category", head + chart + note)


def _pnl_section(con: duckdb.DuckDBPyConnection, day: date) -> str:
    rows = _query(
        con,
        """
        SELECT category_code, any_value(asset_class) AS asset_class,
               string_agg(DISTINCT category_ko, ' / ' ORDER BY category_ko) AS category_ko,
               string_agg(DISTINCT category_en, ' / ' ORDER BY category_en) AS category_en,
               sum(purchase_amount) AS purchase_amount, sum(market_value) AS market_value,
               sum(unrealized_pnl) AS unrealized_pnl
        FROM pnl_by_category WHERE snapshot_date = ?
        GROUP BY category_code
        ORDER BY unrealized_pnl DESC, category_code
        """,
        day,
    )
    head = "<h2>상품별 평가손익 <span>Unrealized P&amp;L by category, all accounts</span></h2>"
    if not rows:
        return _section("pnl", head + _empty("pnl_by_category", day))
    shown = [r for r in rows if r["unrealized_pnl"] != 0] or rows
    bars = []
    for r in shown:
        pnl = r["unrealized_pnl"]
        ret = _percent(pnl, r["purchase_amount"])
        bars.append(
            Bar(
                r["category_code"],
                r["category_ko"] or r["category_code"],
                r["category_en"] or r["category_code"],
                pnl,
                f"{_signed_short(pnl)} · 수익률 {_pct(ret)}",
                GAIN_COLOUR if pnl > 0 else LOSS_COLOUR,
            )
        )
    chart = _bar_chart("chart-pnl", "Unrealized P&L by category", bars)
    hidden = len(rows) - len(shown)
    note = (
        '<p class="hint">이익 빨강, 손실 파랑 · gains red, losses blue. 수익률 = 평가손익 / '
        "매입금액 · return on the purchase amount."
        + (
            f" 평가손익 0인 {hidden}개 상품은 생략 · {hidden} categories without P&amp;L not shown."
            if hidden
            else ""
        )
        + "</p>"
    )
    return _section("pnl", head + chart + note)


@dataclass
class Series:
    key: str
    label: str
    colour: str
    points: list[tuple[date, Decimal]]


LINE_WIDTH, LINE_PLOT_X, LINE_PLOT_RIGHT = 960, 120, 940
TICK_SPACING = 80
PANEL_TITLE, PANEL_PLOT, PANEL_GAP, AXIS_HEIGHT = 24, 96, 22, 28


def segments(points: Sequence[tuple[date, Decimal]]) -> Iterator[list[tuple[date, Decimal]]]:
    """Runs of consecutive snapshots no more than GAP_DAYS apart: a line is drawn within a
    run, never across the gap between two."""
    run: list[tuple[date, Decimal]] = []
    for point in points:
        if run and (point[0] - run[-1][0]).days > GAP_DAYS:
            yield run
            run = []
        run.append(point)
    if run:
        yield run


def _line_chart(chart_id: str, series: Sequence[Series]) -> str:
    dates = sorted({d for s in series for d, _ in s.points})
    first, last = dates[0], dates[-1]
    span_days = (last - first).days
    plot_w = LINE_PLOT_RIGHT - LINE_PLOT_X

    def x(day: date) -> Decimal:
        if not span_days:
            return Decimal(LINE_PLOT_X + plot_w // 2)
        return LINE_PLOT_X + Decimal((day - first).days * plot_w) / span_days

    panel_height = PANEL_TITLE + PANEL_PLOT + PANEL_GAP
    height = len(series) * panel_height + AXIS_HEIGHT
    parts = [_tag("title", {}, "Net assets over time")]
    # Days between runs of snapshots: shaded in every panel, with nothing drawn across them.
    gaps = [(a, b) for a, b in pairwise(dates) if (b - a).days > GAP_DAYS]
    for i, s in enumerate(series):
        top = i * panel_height
        plot_top = top + PANEL_TITLE
        values = [v for _, v in s.points]
        low, high = min(values), max(values)
        if low == high:
            low, high = low - 1, high + 1

        def y(
            value: Decimal, plot_top: int = plot_top, low: Decimal = low, high: Decimal = high
        ) -> Decimal:
            with localcontext() as ctx:
                ctx.prec = 80
                return plot_top + 4 + (high - value) * (PANEL_PLOT - 8) / (high - low)

        latest_day, latest = s.points[-1]
        parts.append(
            _tag("text", {"x": LINE_PLOT_X, "y": top + 16, "class": "series"}, _e(s.label))
            + _tag(
                "text",
                {"x": LINE_PLOT_RIGHT, "y": top + 16, "class": "series-value"},
                _e(f"{latest_day}: {format_krw(latest)}"),
            )
            + _tag(
                "rect",
                {
                    "class": "frame",
                    "x": LINE_PLOT_X,
                    "y": plot_top,
                    "width": plot_w,
                    "height": PANEL_PLOT,
                },
            )
            + _tag(
                "text",
                {"x": LINE_PLOT_X - 8, "y": plot_top + 12, "class": "tick-y"},
                _e(format_krw_short(max(values))),
            )
            + _tag(
                "text",
                {"x": LINE_PLOT_X - 8, "y": plot_top + PANEL_PLOT - 2, "class": "tick-y"},
                _e(format_krw_short(min(values))),
            )
        )
        for a, b in gaps:
            parts.append(
                _tag(
                    "rect",
                    {
                        "class": "gap",
                        "x": _px(x(a)),
                        "y": plot_top,
                        "width": _px(x(b) - x(a)),
                        "height": PANEL_PLOT,
                    },
                    _tag("title", {}, _e(f"{a} – {b}: 스냅샷 없음 no snapshot")),
                )
            )
        for run in segments(s.points):
            if len(run) > 1:
                parts.append(
                    _tag(
                        "polyline",
                        {
                            "class": "line",
                            "data-series": s.key,
                            "points": " ".join(f"{_px(x(d))},{_px(y(v))}" for d, v in run),
                            "stroke": s.colour,
                        },
                    )
                )
        for d, v in s.points:
            parts.append(
                _tag(
                    "circle",
                    {
                        "class": "point",
                        "cx": _px(x(d)),
                        "cy": _px(y(v)),
                        "r": 3,
                        "fill": s.colour,
                        "data-series": s.key,
                        "data-date": d.isoformat(),
                        "data-label": f"{s.label} {d}",
                        "data-value": _exact(v),
                    },
                    _tag("title", {}, _e(f"{s.label} {d}: {format_krw(v)}")),
                )
            )
    axis_y = len(series) * panel_height + 4
    ticks: list[date] = []
    for d in dates:  # labelled dates at least TICK_SPACING apart, the last one always
        if not ticks or x(d) - x(ticks[-1]) >= TICK_SPACING:
            ticks.append(d)
    if ticks[-1] != last:
        if x(last) - x(ticks[-1]) < TICK_SPACING:
            ticks.pop()  # never the first: first and last are the plot's two ends
        ticks.append(last)
    for d in ticks:
        anchor = "end" if d == last and len(ticks) > 1 else "middle"
        parts.append(
            _tag(
                "text",
                {"x": _px(x(d)), "y": axis_y + 12, "class": "tick-x", "text-anchor": anchor},
                _e(d.isoformat()),
            )
        )
    return _tag(
        "svg",
        {
            "id": chart_id,
            "class": "chart",
            "viewBox": f"0 0 {LINE_WIDTH} {height}",
            "width": LINE_WIDTH,
            "height": height,
            "role": "img",
            "aria-label": "Net assets over time",
        },
        "".join(parts),
    )


def _net_assets_section(con: duckdb.DuckDBPyConnection, day: date) -> str:
    head = "<h2>순자산 추이 <span>Net assets over time</span></h2>"
    totals = _query(
        con,
        "SELECT snapshot_date, net_assets FROM consolidated_net_assets "
        f"WHERE snapshot_date <= ? AND snapshot_date > ? - {NET_ASSETS_DAYS} "
        "ORDER BY snapshot_date",
        day,
    )
    if not totals:
        return _section("net-assets", head + _empty("consolidated_net_assets", day, " (누적)"))
    accounts = _query(
        con,
        # account_summary, not net_asset_history: the view's window functions would run over
        # every day of history for the few points drawn
        "SELECT account_id, product_code, snapshot_date, nass_tot_amt AS net_assets "
        f"FROM account_summary WHERE snapshot_date <= ? AND snapshot_date > ? - {NET_ASSETS_DAYS} "
        "ORDER BY account_id, snapshot_date",
        day,
    )
    series = [
        Series(
            "total",
            "합계 Total (all accounts)",
            TOTAL_COLOUR,
            [(r["snapshot_date"], r["net_assets"]) for r in totals],
        )
    ]
    for row in accounts:
        if series[-1].key != row["account_id"]:
            colour = SERIES_COLOURS[(len(series) - 1) % len(SERIES_COLOURS)]
            label = f"{row['account_id']} (상품 product {row['product_code']})"
            series.append(Series(row["account_id"], label, colour, []))
        series[-1].points.append((row["snapshot_date"], row["net_assets"]))
    note = (
        f'<p class="hint">점은 스냅샷이 있는 날만 · points only on snapshot days; {GAP_DAYS}일보다 '
        f"긴 공백에서는 선을 끊습니다 (shaded) · lines break across gaps of more than "
        f"{GAP_DAYS} days. 각 패널은 자체 축 · each panel has its own scale. 최근 1년 · the "
        "last year up to this day; every day is in <code>net_asset_history</code>.</p>"
    )
    missing = (
        _empty("consolidated_net_assets", day, " (이 날 스냅샷 없음, 이전 기록만 표시)")
        if totals[-1]["snapshot_date"] != day
        else ""
    )
    return _section("net-assets", head + missing + _line_chart("chart-net-assets", series) + note)


def _amount_cell(amount: Decimal | None, signed: bool = False) -> str:
    if amount is None:
        return "—"
    main = _signed_krw(amount) if signed else format_krw(amount)
    sign_class = ""
    if signed:
        sign_class = " gain" if amount > 0 else " loss" if amount < 0 else ""
    return (
        f'<span class="krw{sign_class}" data-value="{_e(_exact(amount))}">{_e(main)}</span>'
        f"<small>{_e(format_won(amount))}</small>"
    )


def _table(
    headers: list[tuple[str, str]],
    rows: list[list[str]],
    numeric_from: int,
    css_class: str = "",
    footer: list[str] | None = None,
) -> str:
    def row(cells: list[str], cell: str) -> str:
        return (
            "<tr>"
            + "".join(
                f"<{cell}{' class=num' if i >= numeric_from else ''}>{c}</{cell}>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )

    head = row([f"{_e(ko)}<small>{_e(en)}</small>" for ko, en in headers], "th")
    foot = f"<tfoot>{row(footer, 'th')}</tfoot>" if footer else ""
    return (
        f'<table class="{_e(css_class)}"><thead>{head}</thead>'
        f"<tbody>{''.join(row(r, 'td') for r in rows)}</tbody>{foot}</table>"
    )


#: net_asset_history's row for each account on one day, computed from that day and each
#: account's previous snapshot alone: the view's window functions would hold every day of
#: history in memory for it (tests check both agree on every day).
ACCOUNTS_ON_DAY = """
WITH today AS (
    SELECT account_id, product_code, tot_asst_amt AS total_assets, nass_tot_amt AS net_assets,
           pchs_amt_smtl AS purchase_amount, evlu_pfls_amt_smtl AS unrealized_pnl
    FROM account_summary WHERE snapshot_date = ?
),
previous AS (
    SELECT account_id, max(snapshot_date) AS previous_snapshot_date,
           arg_max(nass_tot_amt, snapshot_date) AS previous_net_assets
    FROM account_summary WHERE snapshot_date < ? GROUP BY account_id
)
SELECT t.account_id, t.product_code, t.total_assets, t.net_assets, t.purchase_amount,
       t.unrealized_pnl, p.previous_snapshot_date,
       ? - p.previous_snapshot_date AS days_since_previous,
       t.net_assets - p.previous_net_assets AS net_assets_change
FROM today t LEFT JOIN previous p USING (account_id)
ORDER BY account_id
"""


def _accounts_section(con: duckdb.DuckDBPyConnection, day: date) -> str:
    head = "<h2>계좌 <span>Accounts</span></h2>"
    rows = _query(con, ACCOUNTS_ON_DAY, day)
    if not rows:
        return _section("accounts", head + _empty("net_asset_history", day))

    def change(amount: Decimal | None, since: date | None, days: int | None) -> str:
        if amount is None:
            return "— <small>첫 스냅샷 first snapshot</small>"
        return _amount_cell(amount, signed=True) + f"<small>vs {_e(since)} ({_e(days)}일)</small>"

    def pnl(amount: Decimal | None, purchase: Decimal | None) -> str:
        ret = None if amount is None or purchase is None else _percent(amount, purchase)
        return _amount_cell(amount, signed=True) + f"<small>수익률 {_e(_pct(ret))}</small>"

    body = [
        [
            f"<code>{_e(r['account_id'])}</code>",
            _e(r["product_code"]),
            _amount_cell(r["total_assets"]),
            _amount_cell(r["net_assets"]),
            change(r["net_assets_change"], r["previous_snapshot_date"], r["days_since_previous"]),
            pnl(r["unrealized_pnl"], r["purchase_amount"]),
        ]
        for r in rows
    ]
    total = _query(
        con,
        "SELECT accounts, total_assets, net_assets, unrealized_pnl, net_assets_change "
        "FROM consolidated_net_assets WHERE snapshot_date = ?",
        day,
    )
    footer = None
    if total:
        t = total[0]
        footer = [
            f"합계 Total ({_e(t['accounts'])})",
            "",
            _amount_cell(t["total_assets"]),
            _amount_cell(t["net_assets"]),
            _amount_cell(t["net_assets_change"], signed=True)
            if t["net_assets_change"] is not None
            else "—",
            _amount_cell(t["unrealized_pnl"], signed=True),
        ]
    table = _table(
        [
            ("계좌", "Account"),
            ("상품코드", "Product"),
            ("총자산", "Total assets"),
            ("순자산", "Net assets"),
            ("전 스냅샷 대비", "Change vs previous"),
            ("평가손익", "Unrealized P&L"),
        ],
        body,
        numeric_from=2,
        css_class="accounts",
        footer=footer,
    )
    return _section("accounts", head + table)


def _summary(con: duckdb.DuckDBPyConnection, day: date) -> str:
    rows = _query(
        con,
        "SELECT accounts, total_assets, net_assets, unrealized_pnl, net_assets_change "
        "FROM consolidated_net_assets WHERE snapshot_date = ?",
        day,
    )
    if not rows:
        return _empty("consolidated_net_assets", day, " (스냅샷 없음 no snapshot)")
    r = rows[0]
    cards = [
        ("순자산 Net assets", _amount_cell(r["net_assets"])),
        (
            "전 스냅샷 대비 Change",
            "—"
            if r["net_assets_change"] is None
            else _amount_cell(r["net_assets_change"], signed=True),
        ),
        ("총자산 Total assets", _amount_cell(r["total_assets"])),
        ("평가손익 Unrealized P&L", _amount_cell(r["unrealized_pnl"], signed=True)),
        ("계좌 Accounts", _e(r["accounts"])),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="card-title">{_e(t)}</div>{v}</div>' for t, v in cards
        )
        + "</div>"
    )


def _section(name: str, content: str) -> str:
    return f'<section id="{_e(name)}">{content}</section>'


CSS = f"""
*{{box-sizing:border-box}}
body{{margin:0;padding:24px 32px 48px;font-family:{FONT};color:#222;background:#f6f6f4;
line-height:1.45;font-size:14px}}
main{{max-width:1100px;margin:0 auto}}
h1{{font-size:26px;margin:0 0 4px}} h1 span,h2 span{{color:#666;font-weight:normal;
font-size:.7em;margin-left:6px}}
h2{{font-size:19px;margin:0 0 12px}}
section{{background:#fff;border:1px solid #e2e2dd;border-radius:8px;padding:18px 22px;
margin:18px 0}}
.meta{{color:#555;margin:0}}
.cards{{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}}
.card{{background:#fff;border:1px solid #e2e2dd;border-radius:8px;padding:12px 16px;
flex:1 1 170px}}
.card-title{{color:#666;font-size:12px}} .card .krw{{font-size:17px;font-weight:bold}}
small{{display:block;color:#777;font-size:11px}}
.krw{{white-space:nowrap}} .gain{{color:{GAIN_COLOUR}}} .loss{{color:{LOSS_COLOUR}}}
table{{border-collapse:collapse;width:100%;margin-top:12px;font-size:13px}}
table.accounts{{font-size:12px}} code{{white-space:nowrap}} section{{overflow-x:auto}}
th,td{{border-bottom:1px solid #eee;padding:6px 6px;text-align:left;vertical-align:top}}
th{{color:#555;font-weight:600}} .num{{text-align:right}} tfoot th{{border-top:2px solid #ccc}}
svg.chart{{display:block;max-width:100%;height:auto;font-family:{FONT}}}
svg text{{font-size:12px;fill:#333}}
svg .label{{text-anchor:end;font-size:13px}} svg .label.en{{font-size:10px;fill:#777}}
svg .note{{font-size:12px}} svg .axis{{stroke:#888;stroke-width:1}}
svg .series{{font-weight:bold;font-size:13px}} svg .series-value{{text-anchor:end}}
svg .frame{{fill:#fbfbfa;stroke:#e4e4e0}} svg .gap{{fill:#eeeeea}}
svg .line{{fill:none;stroke-width:2}} svg .tick-y{{text-anchor:end;font-size:10px;fill:#666}}
svg .tick-x{{font-size:10px;fill:#666}}
.empty{{padding:10px 14px;background:#fff6e0;border:1px solid #f0d8a0;border-radius:6px}}
.hint{{color:#666;font-size:12px;margin:8px 0 0}}
footer{{color:#777;font-size:12px;margin-top:24px}}
"""


def render_report(con: duckdb.DuckDBPyConnection, day: date) -> str:
    """The portfolio report for `day` as one self-contained HTML page (inline CSS and SVG)."""
    sections = [
        _summary(con, day),
        _asset_class_section(con, day),
        _category_section(con, day),
        _net_assets_section(con, day),
        _pnl_section(con, day),
        _accounts_section(con, day),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="ko"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>포트폴리오 리포트 Portfolio report {_e(day)}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>포트폴리오 리포트 <span>Portfolio report</span></h1>"
        f'<p class="meta">기준일 As of <time datetime="{_e(day)}">{_e(day)}</time> · '
        "한국투자증권 투자계좌자산현황 (CTRP6548R)</p>"
        + "".join(sections)
        + "<footer>금액은 원 단위, 1원 미만 절사 · Amounts in KRW, truncated to the won; the "
        "exact amounts are in each mark's <code>data-value</code>. Generated from the "
        "warehouse views.</footer></main></body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_WIDTH, PNG_MARGIN, PNG_BAR, PNG_GAP = 640, 16, 24, 8
PNG_BACKGROUND, PNG_TRACK, PNG_AXIS = "#ffffff", "#eeeeea", "#888888"


def _rgb(colour: str) -> bytes:
    return bytes.fromhex(colour.lstrip("#"))


def png_bar_span(value: Decimal, values: Sequence[Decimal]) -> tuple[int, int]:
    """The pixel columns [start, end) a bar covers in the PNG chart."""
    low, per_unit = _scale(values, PNG_WIDTH - 2 * PNG_MARGIN)
    with localcontext() as ctx:
        ctx.prec = 80
        zero = int(PNG_MARGIN + (0 - low) * per_unit)
        end = int(PNG_MARGIN + (value - low) * per_unit)
    return min(zero, end), max(zero, end)


def encode_png(width: int, height: int, rows: Sequence[bytes]) -> bytes:
    """An 8-bit RGB PNG from rows of width*3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def render_main_chart_png(con: duckdb.DuckDBPyConnection, day: date) -> bytes:
    """The asset-class allocation of `day` as a PNG bar chart (no text): one bar per asset
    class, largest first, in the report's colours, on a track as wide as the largest.
    A day without rows gives an empty track."""
    rows = con.execute(
        warehouse.on_day(
            "SELECT asset_class, market_value FROM consolidated_allocation "
            "WHERE snapshot_date = ? ORDER BY market_value DESC, asset_class",
            day,
        )
    ).fetchall()
    values = [value for _, value in rows]
    height = 2 * PNG_MARGIN + max(1, len(rows)) * (PNG_BAR + PNG_GAP) - PNG_GAP
    image = [bytearray(_rgb(PNG_BACKGROUND) * PNG_WIDTH) for _ in range(height)]

    def fill(x0: int, x1: int, y0: int, y1: int, colour: str) -> None:
        pixel = _rgb(colour)
        for y in range(y0, y1):
            image[y][x0 * 3 : x1 * 3] = pixel * (x1 - x0)

    tops = [PNG_MARGIN + i * (PNG_BAR + PNG_GAP) for i in range(max(1, len(rows)))]
    for top in tops:
        fill(PNG_MARGIN, PNG_WIDTH - PNG_MARGIN, top, top + PNG_BAR, PNG_TRACK)
    if rows:  # the zero line, under the bars
        zero, _ = png_bar_span(Decimal(0), values)
        fill(zero, zero + 1, PNG_MARGIN // 2, height - PNG_MARGIN // 2, PNG_AXIS)
    for top, (asset_class, value) in zip(tops, rows, strict=False):
        start, end = png_bar_span(value, values)
        fill(start, end, top, top + PNG_BAR, _class_labels(asset_class)[2])
    return encode_png(PNG_WIDTH, height, [bytes(row) for row in image])


def write(con: duckdb.DuckDBPyConnection, day: date, data_root: DataRoot | Storage) -> Location:
    """Render the day's report to reports/portfolio-YYYY-MM-DD.html in the data root, atomically.

    Not private (0644 on a local disk): a page to open in a browser, not raw account data.
    """
    page = render_report(con, day).encode("utf-8")
    key = f"reports/portfolio-{day.isoformat()}.html"
    return open_root(data_root).write_bytes(key, page, private=False)
