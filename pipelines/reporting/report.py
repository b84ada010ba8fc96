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
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import cache
from itertools import pairwise
from typing import Any, TypeVar

import duckdb
import jinja2

from pipelines.storage.roots import DataRoot, Location, Storage, open_root
from pipelines.warehouse import views, warehouse

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
    """One panel's points: a value per snapshot date, None where nothing is drawn (an unknown
    value, or a consolidated total that leaves an account out); `incomplete` says why, by
    date."""

    key: str
    label: str
    colour: str
    points: list[tuple[date, Decimal | None]]
    incomplete: dict[date, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    day: date
    value: str  # exact
    cx: str
    cy: str
    title: str


@dataclass(frozen=True)
class Incomplete:
    """A day drawn as a marker instead of a value: a total that leaves an account out."""

    day: date
    x: str
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
    incomplete: list[Incomplete]


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

Value = TypeVar("Value")


def segments(
    points: Sequence[tuple[date, Value | None]],
) -> Iterator[list[tuple[date, Value]]]:
    """Runs of consecutive snapshots no more than GAP_DAYS apart: a line is drawn within a
    run, never across the gap between two, nor across a point without a value (None)."""
    run: list[tuple[date, Value]] = []
    for day, value in points:
        if run and (value is None or (day - run[-1][0]).days > GAP_DAYS):
            yield run
            run = []
        if value is not None:
            run.append((day, value))
    if run:
        yield run


@dataclass(frozen=True)
class TimeAxis:
    """The dates of a time chart: x positions, labelled ticks and the gaps between runs."""

    dates: list[date]

    def x(self, day: date) -> Decimal:
        first, last = self.dates[0], self.dates[-1]
        span_days = (last - first).days
        plot_w = LINE_PLOT_RIGHT - LINE_PLOT_X
        if not span_days:
            return Decimal(LINE_PLOT_X + plot_w // 2)
        return LINE_PLOT_X + Decimal((day - first).days * plot_w) / span_days

    def gaps(self) -> list[Gap]:
        """Days between runs of snapshots: shaded in every panel, nothing drawn across."""
        return [
            Gap(_px(self.x(a)), _px(self.x(b) - self.x(a)), f"{a} – {b}: 스냅샷 없음 no snapshot")
            for a, b in pairwise(self.dates)
            if (b - a).days > GAP_DAYS
        ]

    def ticks(self) -> list[Tick]:
        """Labelled dates at least TICK_SPACING apart, the first and the last always."""
        last = self.dates[-1]
        ticks: list[date] = []
        for d in self.dates:
            if not ticks or self.x(d) - self.x(ticks[-1]) >= TICK_SPACING:
                ticks.append(d)
        if ticks[-1] != last:
            if self.x(last) - self.x(ticks[-1]) < TICK_SPACING:
                ticks.pop()  # never the first: first and last are the plot's two ends
            ticks.append(last)
        return [
            Tick(_px(self.x(d)), "end" if d == last and len(ticks) > 1 else "middle", d.isoformat())
            for d in ticks
        ]


def _line_chart(chart_id: str, series: Sequence[Series]) -> LineChart:
    axis = TimeAxis(sorted({d for s in series for d, _ in s.points}))
    panel_height = PANEL_TITLE + PANEL_PLOT + PANEL_GAP
    panels = []
    for i, s in enumerate(series):
        top = i * panel_height
        plot_top = top + PANEL_TITLE
        known = [(d, v) for d, v in s.points if v is not None]
        values = [v for _, v in known] or [Decimal(0)]
        low, high = min(values), max(values)
        if low == high:
            low, high = low - 1, high + 1

        def y(
            value: Decimal, plot_top: int = plot_top, low: Decimal = low, high: Decimal = high
        ) -> Decimal:
            with localcontext() as ctx:
                ctx.prec = 80
                return plot_top + 4 + (high - value) * (PANEL_PLOT - 8) / (high - low)

        latest = f"{known[-1][0]}: {format_krw(known[-1][1])}" if known else "—"
        panels.append(
            Panel(
                series=s,
                top=top,
                plot_top=plot_top,
                latest=latest,
                highest=format_krw_short(max(values)),
                lowest=format_krw_short(min(values)),
                lines=[
                    " ".join(f"{_px(axis.x(d))},{_px(y(v))}" for d, v in run)
                    for run in segments(s.points)
                    if len(run) > 1
                ],
                points=[
                    Point(
                        d, _exact(v), _px(axis.x(d)), _px(y(v)), f"{s.label} {d}: {format_krw(v)}"
                    )
                    for d, v in known
                ],
                incomplete=[
                    Incomplete(d, _px(axis.x(d)), f"{d}: {why}")
                    for d, why in sorted(s.incomplete.items())
                ],
            )
        )
    return LineChart(
        id=chart_id,
        width=LINE_WIDTH,
        height=len(series) * panel_height + AXIS_HEIGHT,
        plot_x=LINE_PLOT_X,
        plot_right=LINE_PLOT_RIGHT,
        plot_width=LINE_PLOT_RIGHT - LINE_PLOT_X,
        plot_height=PANEL_PLOT,
        panels=panels,
        gaps=axis.gaps(),
        axis_y=len(series) * panel_height + 4,
        ticks=axis.ticks(),
    )


def _incomplete_days(con: duckdb.DuckDBPyConnection, day: date) -> dict[date, str]:
    """The days of the charts' year whose consolidated figures leave an account out, and why."""
    rows = _query(
        con,
        "SELECT snapshot_date, accounts, accounts_expected, missing_accounts "
        "FROM consolidated_net_assets WHERE NOT is_complete "
        f"AND snapshot_date <= ? AND snapshot_date > ? - {NET_ASSETS_DAYS}",
        day,
    )
    return {
        r["snapshot_date"]: (
            f"계좌 {r['accounts']}/{r['accounts_expected']}개만 · only {r['accounts']} of "
            f"{r['accounts_expected']} accounts (missing {', '.join(r['missing_accounts'])}): "
            "합계는 그리지 않음 · the total is not drawn"
        )
        for r in rows
    }


def _net_assets(
    con: duckdb.DuckDBPyConnection, day: date, incomplete: dict[date, str]
) -> dict[str, Any] | None:
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
        # the tables, not net_asset_history: the view's window functions would run over every
        # day of history for the few points drawn
        "SELECT s.account_id, s.product_code, s.snapshot_date, c.real_nass_amt AS net_assets "
        "FROM account_summary s LEFT JOIN asset_categories c "
        "ON c.is_total AND c.account_id = s.account_id AND c.snapshot_date = s.snapshot_date "
        f"AND c.snapshot_date <= ? AND c.snapshot_date > ? - {NET_ASSETS_DAYS} "
        f"WHERE s.snapshot_date <= ? AND s.snapshot_date > ? - {NET_ASSETS_DAYS} "
        "ORDER BY s.account_id, s.snapshot_date",
        day,
    )
    series = [
        Series(
            "total",
            "합계 Total (all accounts)",
            TOTAL_COLOUR,
            # a day that leaves an account out is marked, not drawn: it would read as a loss
            [
                (r["snapshot_date"], None if r["snapshot_date"] in incomplete else r["net_assets"])
                for r in totals
            ],
            incomplete,
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
        "incomplete": len(incomplete),
    }


# ---------------------------------------------------------------------------------------------
# Allocation over time: a stacked area of asset-class shares per day


@dataclass(frozen=True)
class Area:
    asset_class: str
    ko: str
    en: str
    colour: str
    polygons: list[str]  # the `points` of each polygon, one per run of snapshot days
    title: str


@dataclass(frozen=True)
class AreaPanel:
    key: str
    label: str
    top: int
    plot_top: int
    areas: list[Area]
    incomplete: list[Incomplete]


@dataclass(frozen=True)
class LegendEntry:
    ko: str
    en: str
    colour: str


@dataclass(frozen=True)
class AreaChart:
    id: str
    width: int
    height: int
    plot_x: int
    plot_width: int
    plot_height: int
    panels: list[AreaPanel]
    gaps: list[Gap]
    axis_y: int
    ticks: list[Tick]
    legend: list[LegendEntry]


SINGLE_DAY_HALF_WIDTH = Decimal(2)  # a day alone between gaps: a column 4 pixels wide


def _area_panel(
    axis: TimeAxis,
    key: str,
    label: str,
    top: int,
    shares: dict[date, dict[str, Decimal]],
    incomplete: dict[date, str],
) -> AreaPanel:
    """Each asset class's share of the day stacked from the bottom (in ASSET_CLASSES order),
    one polygon per run of snapshot days; a day in `incomplete` is marked, not drawn."""
    plot_top = top + PANEL_TITLE
    bottom = plot_top + PANEL_PLOT
    days = sorted(shares)
    present = [c for c in ASSET_CLASSES if any(shares[d].get(c) for d in days)]
    present += sorted({c for d in days for c in shares[d]} - set(ASSET_CLASSES) - {None})
    below: dict[date, Decimal] = dict.fromkeys(days, Decimal(0))

    def y(share: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 80
            return bottom - share * PANEL_PLOT / 100

    areas = []
    for asset_class in present:
        ko, en, colour = _class_labels(asset_class)
        edges = {d: (below[d], below[d] + shares[d].get(asset_class, Decimal(0))) for d in days}
        polygons = []
        for run in segments([(d, None if d in incomplete else edges[d]) for d in days]):
            xs = [axis.x(d) for d, _ in run]
            if len(run) == 1:  # one day alone: a narrow column
                run, xs = run * 2, [xs[0] - SINGLE_DAY_HALF_WIDTH, xs[0] + SINGLE_DAY_HALF_WIDTH]
            upper = [f"{_px(x)},{_px(y(high))}" for x, (_, (_, high)) in zip(xs, run, strict=True)]
            lower = [f"{_px(x)},{_px(y(low))}" for x, (_, (low, _)) in zip(xs, run, strict=True)]
            polygons.append(" ".join(upper + lower[::-1]))
        drawn = [d for d in days if d not in incomplete]
        first, last = (drawn[0], drawn[-1]) if drawn else (days[0], days[-1])
        title = (
            f"{ko} {en}: {_pct(shares[first].get(asset_class, Decimal(0)))} ({first}) → "
            f"{_pct(shares[last].get(asset_class, Decimal(0)))} ({last})"
        )
        areas.append(Area(asset_class, ko, en, colour, polygons, title))
        for d in days:
            below[d] = edges[d][1]
    return AreaPanel(
        key=key,
        label=label,
        top=top,
        plot_top=plot_top,
        areas=areas,
        incomplete=[
            Incomplete(d, _px(axis.x(d)), f"{d}: {why}")
            for d, why in sorted(incomplete.items())
            if d in shares
        ],
    )


def _allocation_over_time(
    con: duckdb.DuckDBPyConnection, day: date, incomplete: dict[date, str]
) -> dict[str, Any] | None:
    """Asset-class shares per day over the charts' year: every account together
    (consolidated_allocation) and each account (allocation_history)."""
    window = f"snapshot_date <= ? AND snapshot_date > ? - {NET_ASSETS_DAYS}"
    consolidated = _query(
        con,
        "SELECT snapshot_date, asset_class, weight_pct FROM consolidated_allocation "
        f"WHERE {window} AND weight_pct IS NOT NULL ORDER BY snapshot_date",
        day,
    )
    if not consolidated:
        return None
    per_account = _query(
        con,
        "SELECT account_id, snapshot_date, asset_class, "
        "any_value(asset_class_weight_pct) AS weight_pct FROM allocation_history "
        f"WHERE {window} GROUP BY ALL ORDER BY account_id, snapshot_date",
        day,
    )
    panels: list[tuple[str, str, dict[date, dict[str, Decimal]], dict[date, str]]] = []
    shares: dict[date, dict[str, Decimal]] = {}
    for r in consolidated:
        shares.setdefault(r["snapshot_date"], {})[r["asset_class"]] = r["weight_pct"]
    panels.append(("total", "합계 Total (all accounts)", shares, incomplete))
    for r in per_account:
        if r["weight_pct"] is None:
            continue
        if panels[-1][0] != r["account_id"]:
            product_code = r["account_id"].rpartition("-")[2]
            label = f"{r['account_id']} (상품 product {product_code})"
            panels.append((r["account_id"], label, {}, {}))
        panels[-1][2].setdefault(r["snapshot_date"], {})[r["asset_class"]] = r["weight_pct"]
    axis = TimeAxis(sorted({d for _, _, s, _ in panels for d in s}))
    panel_height = PANEL_TITLE + PANEL_PLOT + PANEL_GAP
    drawn = [
        _area_panel(axis, key, label, i * panel_height, s, marks)
        for i, (key, label, s, marks) in enumerate(panels)
    ]
    classes = list(dict.fromkeys(a.asset_class for p in drawn for a in p.areas))
    legend = [LegendEntry(*_class_labels(c)) for c in classes]
    height = len(drawn) * panel_height
    return {
        "chart": AreaChart(
            id="chart-allocation-over-time",
            width=LINE_WIDTH,
            height=height + AXIS_HEIGHT,
            plot_x=LINE_PLOT_X,
            plot_width=LINE_PLOT_RIGHT - LINE_PLOT_X,
            plot_height=PANEL_PLOT,
            panels=drawn,
            gaps=axis.gaps(),
            axis_y=height + 4,
            ticks=axis.ticks(),
            legend=legend,
        ),
    }


#: net_asset_history's row for each account on one day, computed from that day and each
#: account's previous snapshot alone: the view's window functions would hold every day of
#: history in memory for it (tests check both agree on every day).
ACCOUNTS_ON_DAY = f"""
WITH totals AS ({views.output1_totals("snapshot_date = ?")}),
today AS (
    SELECT s.account_id, s.product_code, t.net_assets, s.tot_asst_amt AS total_assets,
           s.evlu_amt_smtl AS securities_value, t.cash, s.loan_amt_smtl AS loans,
           t.purchase_amount, t.unrealized_pnl
    FROM account_summary s LEFT JOIN totals t USING (account_id)
    WHERE s.snapshot_date = ?
),
previous AS (
    SELECT account_id, max(snapshot_date) AS previous_snapshot_date
    FROM account_summary WHERE snapshot_date < ? GROUP BY account_id
),
previous_net AS (
    SELECT p.account_id, p.previous_snapshot_date, c.real_nass_amt AS previous_net_assets
    FROM previous p LEFT JOIN asset_categories c
      ON c.is_total AND c.account_id = p.account_id
     AND c.snapshot_date = p.previous_snapshot_date AND c.snapshot_date < ?
)
SELECT t.account_id, t.product_code, t.net_assets, t.total_assets, t.securities_value, t.cash,
       t.loans, t.purchase_amount, t.unrealized_pnl, p.previous_snapshot_date,
       ? - p.previous_snapshot_date AS days_since_previous,
       t.net_assets - p.previous_net_assets AS net_assets_change
FROM today t LEFT JOIN previous_net p USING (account_id)
ORDER BY account_id
"""

TOTALS_ON_DAY = (
    "SELECT accounts, accounts_expected, is_complete, missing_accounts, net_assets, "
    "total_assets, securities_value, cash, loans, unrealized_pnl, previous_snapshot_date, "
    "net_assets_change, net_assets_change_accounts, net_assets_change_note "
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
        "accounts_expected": t["accounts_expected"],
        "is_complete": t["is_complete"],
        "missing_accounts": t["missing_accounts"],
        "net_assets": _amount(t["net_assets"]),
        "total_assets": _amount(t["total_assets"]),
        "securities_value": _amount(t["securities_value"]),
        "cash": _amount(t["cash"]),
        "loans": _amount(t["loans"]),
        "unrealized_pnl": _amount(t["unrealized_pnl"], signed=True),
        "previous": t["previous_snapshot_date"],
        "net_assets_change": _amount(t["net_assets_change"], signed=True),
        "change_accounts": t["net_assets_change_accounts"],
        "change_note": t["net_assets_change_note"],
    }


def _accounts(con: duckdb.DuckDBPyConnection, day: date) -> list[dict[str, Any]]:
    def pnl_return(amount: Decimal | None, purchase: Decimal | None) -> str:
        return _pct(None if amount is None or purchase is None else _percent(amount, purchase))

    return [
        {
            "account_id": r["account_id"],
            "product_code": r["product_code"],
            "net_assets": _amount(r["net_assets"]),
            "total_assets": _amount(r["total_assets"]),
            "securities_value": _amount(r["securities_value"]),
            "cash": _amount(r["cash"]),
            "loans": _amount(r["loans"]),
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
    incomplete = _incomplete_days(con, day)
    return _render(
        "report.html.j2",
        day=day,
        totals=_totals(con, day),
        asset_classes=_asset_classes(con, day),
        categories=_categories(con, day),
        net_assets=_net_assets(con, day, incomplete),
        allocation_over_time=_allocation_over_time(con, day, incomplete),
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


def key(day: date) -> str:
    """The day's report in the data root."""
    return f"reports/portfolio-{day.isoformat()}.html"


def write(con: duckdb.DuckDBPyConnection, day: date, data_root: DataRoot | Storage) -> Location:
    """Render the day's report to reports/portfolio-YYYY-MM-DD.html in the data root, atomically.

    Readable by its owner only (0600 on a local disk), like every file of the data root.
    """
    page = render_report(con, day).encode("utf-8")
    return open_root(data_root).write_bytes(key(day), page)
