"""The portfolio report: one self-contained HTML page, and its main chart as an SVG image.

Read from the warehouse views, in plain Python; the markup comes from the Jinja2 templates in
`templates/` (autoescaped). The page is a single file with inline CSS and SVG: no script, no
network, no external font or image, so it opens anywhere and can be mailed or archived as it
is. The allocation chart is also rendered on its own, as an SVG document that Dagster's UI
shows in the run's metadata.

Amounts stay exact Decimals from the views to the page: every chart mark carries the amount
it draws in `data-value` (the exact decimal string) and `data-label`. Only pixel positions are
rounded, and displayed won amounts drop anything below 1 won by truncation toward zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import cache
from itertools import pairwise
from typing import Any

import duckdb
import jinja2

from pipelines.storage.roots import DataRoot, Location, Storage, open_root
from pipelines.warehouse import warehouse

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
# What the templates draw: every position computed here, exactly, and written as text


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipelines.reporting", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def _render(template: str, **context: Any) -> str:
    return _templates().get_template(template).render(**context)


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


@dataclass(frozen=True)
class Amount:
    """An amount as a cell shows it: the Korean way, in plain won, and exactly (`data-value`)."""

    exact: str
    korean: str
    won: str
    sign: str  # "gain", "loss" or ""


def _amount(amount: Decimal | None, signed: bool = False) -> Amount | None:
    if amount is None:
        return None
    sign = ""
    if signed:
        sign = "gain" if amount > 0 else "loss" if amount < 0 else ""
    return Amount(
        exact=_exact(amount),
        korean=_signed_krw(amount) if signed else format_krw(amount),
        won=format_won(amount),
        sign=sign,
    )


@dataclass(frozen=True)
class Bar:
    key: str
    ko: str
    en: str
    value: Decimal
    note: str
    colour: str


@dataclass(frozen=True)
class BarMark:
    bar: Bar
    value: str  # exact
    title: str
    label_y: int
    label_en_y: int
    y: int
    x: str
    width: str
    note_y: int


@dataclass(frozen=True)
class BarChart:
    id: str
    title: str
    width: int
    height: int
    label_x: int
    note_x: int
    bar_height: int
    marks: list[BarMark]
    zero: str
    axis_top: int
    axis_bottom: int


BAR_WIDTH, BAR_LABEL_X, BAR_PLOT_X, BAR_PLOT_W, BAR_NOTE_X = 960, 238, 250, 470, 732
BAR_ROW, BAR_HEIGHT, BAR_TOP = 38, 20, 10


def _scale(values: Sequence[Decimal], size: int) -> tuple[Decimal, Decimal]:
    """(value of the left edge, pixels per unit) for bars from a zero baseline."""
    low, high = min([Decimal(0), *values]), max([Decimal(0), *values])
    span = high - low
    with localcontext() as ctx:
        ctx.prec = 80
        return low, (Decimal(size) / span if span else Decimal(0))


def _bar_chart(chart_id: str, title: str, bars: Sequence[Bar]) -> BarChart:
    low, per_unit = _scale([b.value for b in bars], BAR_PLOT_W)
    height = BAR_TOP * 2 + BAR_ROW * len(bars)

    def x(value: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 80
            return BAR_PLOT_X + (value - low) * per_unit

    zero = x(Decimal(0))
    marks = []
    for i, bar in enumerate(bars):
        end = x(bar.value)
        middle = BAR_TOP + i * BAR_ROW + BAR_ROW // 2
        marks.append(
            BarMark(
                bar=bar,
                value=_exact(bar.value),
                title=f"{bar.ko} {bar.en}: {format_krw(bar.value)}",
                label_y=middle - 3,
                label_en_y=middle + 11,
                y=middle - BAR_HEIGHT // 2,
                x=_px(min(zero, end)),
                width=_px(abs(end - zero)),
                note_y=middle + 4,
            )
        )
    return BarChart(
        id=chart_id,
        title=title,
        width=BAR_WIDTH,
        height=height,
        label_x=BAR_LABEL_X,
        note_x=BAR_NOTE_X,
        bar_height=BAR_HEIGHT,
        marks=marks,
        zero=_px(zero),
        axis_top=4,
        axis_bottom=height - 4,
    )


# ---------------------------------------------------------------------------------------------
# Sections


def _asset_classes(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, Any] | None:
    rows = _query(
        con,
        "SELECT asset_class, accounts, purchase_amount, market_value, unrealized_pnl, weight_pct "
        "FROM consolidated_allocation WHERE snapshot_date = ? "
        "ORDER BY market_value DESC, asset_class",
        day,
    )
    if not rows:
        return None
    bars = []
    for row in rows:
        ko, en, colour = _class_labels(row["asset_class"])
        note = f"{format_krw_short(row['market_value'])} · {_pct(row['weight_pct'])}"
        bars.append(Bar(row["asset_class"], ko, en, row["market_value"], note, colour))
    return {
        "chart": _bar_chart("chart-asset-class", "Allocation by asset class", bars),
        "rows": [
            {
                "ko": _class_labels(r["asset_class"])[0],
                "en": _class_labels(r["asset_class"])[1],
                "accounts": r["accounts"],
                "market_value": _amount(r["market_value"]),
                "weight": _pct(r["weight_pct"]),
                "unrealized_pnl": _amount(r["unrealized_pnl"], signed=True),
            }
            for r in rows
        ],
    }


def _categories(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, Any] | None:
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
    if not rows:
        return None
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
    return {
        "chart": _bar_chart("chart-category", "Allocation by category", bars),
        "hidden": len(rows) - len(shown),
    }


def _pnl(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, Any] | None:
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
    if not rows:
        return None
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
    return {
        "chart": _bar_chart("chart-pnl", "Unrealized P&L by category", bars),
        "hidden": len(rows) - len(shown),
    }


@dataclass
class Series:
    key: str
    label: str
    colour: str
    points: list[tuple[date, Decimal]]


@dataclass(frozen=True)
class Point:
    day: date
    value: str  # exact
    cx: str
    cy: str
    title: str


@dataclass(frozen=True)
class Panel:
    series: Series
    top: int
    plot_top: int
    latest: str
    highest: str
    lowest: str
    lines: list[str]  # the `points` of each polyline
    points: list[Point]


@dataclass(frozen=True)
class Gap:
    x: str
    width: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: str
    anchor: str
    text: str


@dataclass(frozen=True)
class LineChart:
    id: str
    width: int
    height: int
    plot_x: int
    plot_right: int
    plot_width: int
    plot_height: int
    panels: list[Panel]
    gaps: list[Gap]
    axis_y: int
    ticks: list[Tick]


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


def _line_chart(chart_id: str, series: Sequence[Series]) -> LineChart:
    dates = sorted({d for s in series for d, _ in s.points})
    first, last = dates[0], dates[-1]
    span_days = (last - first).days
    plot_w = LINE_PLOT_RIGHT - LINE_PLOT_X

    def x(day: date) -> Decimal:
        if not span_days:
            return Decimal(LINE_PLOT_X + plot_w // 2)
        return LINE_PLOT_X + Decimal((day - first).days * plot_w) / span_days

    panel_height = PANEL_TITLE + PANEL_PLOT + PANEL_GAP
    panels = []
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
        panels.append(
            Panel(
                series=s,
                top=top,
                plot_top=plot_top,
                latest=f"{latest_day}: {format_krw(latest)}",
                highest=format_krw_short(max(values)),
                lowest=format_krw_short(min(values)),
                lines=[
                    " ".join(f"{_px(x(d))},{_px(y(v))}" for d, v in run)
                    for run in segments(s.points)
                    if len(run) > 1
                ],
                points=[
                    Point(d, _exact(v), _px(x(d)), _px(y(v)), f"{s.label} {d}: {format_krw(v)}")
                    for d, v in s.points
                ],
            )
        )
    # Days between runs of snapshots: shaded in every panel, with nothing drawn across them.
    gaps = [
        Gap(_px(x(a)), _px(x(b) - x(a)), f"{a} – {b}: 스냅샷 없음 no snapshot")
        for a, b in pairwise(dates)
        if (b - a).days > GAP_DAYS
    ]
    ticks: list[date] = []
    for d in dates:  # labelled dates at least TICK_SPACING apart, the last one always
        if not ticks or x(d) - x(ticks[-1]) >= TICK_SPACING:
            ticks.append(d)
    if ticks[-1] != last:
        if x(last) - x(ticks[-1]) < TICK_SPACING:
            ticks.pop()  # never the first: first and last are the plot's two ends
        ticks.append(last)
    return LineChart(
        id=chart_id,
        width=LINE_WIDTH,
        height=len(series) * panel_height + AXIS_HEIGHT,
        plot_x=LINE_PLOT_X,
        plot_right=LINE_PLOT_RIGHT,
        plot_width=plot_w,
        plot_height=PANEL_PLOT,
        panels=panels,
        gaps=gaps,
        axis_y=len(series) * panel_height + 4,
        ticks=[
            Tick(_px(x(d)), "end" if d == last and len(ticks) > 1 else "middle", d.isoformat())
            for d in ticks
        ],
    )


def _net_assets(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, Any] | None:
    totals = _query(
        con,
        "SELECT snapshot_date, net_assets FROM consolidated_net_assets "
        f"WHERE snapshot_date <= ? AND snapshot_date > ? - {NET_ASSETS_DAYS} "
        "ORDER BY snapshot_date",
        day,
    )
    if not totals:
        return None
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
    return {
        "chart": _line_chart("chart-net-assets", series),
        "missing_today": totals[-1]["snapshot_date"] != day,
    }


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

TOTALS_ON_DAY = (
    "SELECT accounts, total_assets, net_assets, unrealized_pnl, net_assets_change "
    "FROM consolidated_net_assets WHERE snapshot_date = ?"
)


def _totals(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, Any] | None:
    """Every account together on the day (consolidated_net_assets), or None."""
    rows = _query(con, TOTALS_ON_DAY, day)
    if not rows:
        return None
    [t] = rows
    return {
        "accounts": t["accounts"],
        "total_assets": _amount(t["total_assets"]),
        "net_assets": _amount(t["net_assets"]),
        "net_assets_change": _amount(t["net_assets_change"], signed=True),
        "unrealized_pnl": _amount(t["unrealized_pnl"], signed=True),
    }


def _accounts(con: duckdb.DuckDBPyConnection, day: date) -> list[dict[str, Any]]:
    def pnl_return(amount: Decimal | None, purchase: Decimal | None) -> str:
        return _pct(None if amount is None or purchase is None else _percent(amount, purchase))

    return [
        {
            "account_id": r["account_id"],
            "product_code": r["product_code"],
            "total_assets": _amount(r["total_assets"]),
            "net_assets": _amount(r["net_assets"]),
            "change": _amount(r["net_assets_change"], signed=True),
            "previous": r["previous_snapshot_date"],
            "days_since_previous": r["days_since_previous"],
            "unrealized_pnl": _amount(r["unrealized_pnl"], signed=True),
            "return": pnl_return(r["unrealized_pnl"], r["purchase_amount"]),
        }
        for r in _query(con, ACCOUNTS_ON_DAY, day)
    ]


def render_report(con: duckdb.DuckDBPyConnection, day: date) -> str:
    """The portfolio report for `day` as one self-contained HTML page (inline CSS and SVG)."""
    return _render(
        "report.html.j2",
        day=day,
        totals=_totals(con, day),
        asset_classes=_asset_classes(con, day),
        categories=_categories(con, day),
        net_assets=_net_assets(con, day),
        pnl=_pnl(con, day),
        accounts=_accounts(con, day),
        gap_days=GAP_DAYS,
        gain_colour=GAIN_COLOUR,
        loss_colour=LOSS_COLOUR,
    )


def render_main_chart_svg(con: duckdb.DuckDBPyConnection, day: date) -> str:
    """The report's allocation by asset class on `day` as a standalone SVG document (for an
    <img>, as Dagster's UI shows it): the same bars, labels and exact `data-value`s. A day
    without rows gives a notice instead of bars."""
    section = _asset_classes(con, day)
    return _render(
        "main_chart.svg.j2", day=day, chart=section["chart"] if section else None, width=BAR_WIDTH
    )


def write(con: duckdb.DuckDBPyConnection, day: date, data_root: DataRoot | Storage) -> Location:
    """Render the day's report to reports/portfolio-YYYY-MM-DD.html in the data root, atomically.

    Readable by its owner only (0600 on a local disk), like every file of the data root.
    """
    page = render_report(con, day).encode("utf-8")
    key = f"reports/portfolio-{day.isoformat()}.html"
    return open_root(data_root).write_bytes(key, page)
