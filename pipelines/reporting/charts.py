"""The report's charts as geometry the templates draw: bars, panels of lines over time and
stacked areas, every position computed here exactly and written as text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import TypeVar

from pipelines.reporting.money import (
    exact_text,
    format_krw,
    format_krw_short,
    pct_text,
)

#: A line of the net-asset chart breaks where consecutive snapshots are further apart than
#: this (a weekend is 3 days, a weekend plus a holiday 4): nothing is drawn across a gap.
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


def px(value: Decimal | int) -> str:
    """A pixel coordinate: two decimals are plenty."""
    text = format(Decimal(value).quantize(Decimal("0.01")), "f").rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def class_labels(asset_class: str) -> tuple[str, str, str]:
    return ASSET_CLASSES.get(asset_class, (asset_class, asset_class, OTHER_COLOUR))


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


def scale(values: Sequence[Decimal], size: int) -> tuple[Decimal, Decimal]:
    """(value of the left edge, pixels per unit) for bars from a zero baseline."""
    low, high = min([Decimal(0), *values]), max([Decimal(0), *values])
    span = high - low
    with localcontext() as ctx:
        ctx.prec = 80
        return low, (Decimal(size) / span if span else Decimal(0))


def bar_chart(chart_id: str, title: str, bars: Sequence[Bar]) -> BarChart:
    low, per_unit = scale([b.value for b in bars], BAR_PLOT_W)
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
                value=exact_text(bar.value),
                title=f"{bar.ko} {bar.en}: {format_krw(bar.value)}",
                label_y=middle - 3,
                label_en_y=middle + 11,
                y=middle - BAR_HEIGHT // 2,
                x=px(min(zero, end)),
                width=px(abs(end - zero)),
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
        zero=px(zero),
        axis_top=4,
        axis_bottom=height - 4,
    )


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
            Gap(px(self.x(a)), px(self.x(b) - self.x(a)), f"{a} – {b}: 스냅샷 없음 no snapshot")
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
            Tick(px(self.x(d)), "end" if d == last and len(ticks) > 1 else "middle", d.isoformat())
            for d in ticks
        ]


def line_chart(chart_id: str, series: Sequence[Series]) -> LineChart:
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
                    " ".join(f"{px(axis.x(d))},{px(y(v))}" for d, v in run)
                    for run in segments(s.points)
                    if len(run) > 1
                ],
                points=[
                    Point(
                        d, exact_text(v), px(axis.x(d)), px(y(v)), f"{s.label} {d}: {format_krw(v)}"
                    )
                    for d, v in known
                ],
                incomplete=[
                    Incomplete(d, px(axis.x(d)), f"{d}: {why}")
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


def area_panel(
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
        ko, en, colour = class_labels(asset_class)
        edges = {d: (below[d], below[d] + shares[d].get(asset_class, Decimal(0))) for d in days}
        polygons = []
        for run in segments([(d, None if d in incomplete else edges[d]) for d in days]):
            xs = [axis.x(d) for d, _ in run]
            if len(run) == 1:  # one day alone: a narrow column
                run, xs = run * 2, [xs[0] - SINGLE_DAY_HALF_WIDTH, xs[0] + SINGLE_DAY_HALF_WIDTH]
            upper = [f"{px(x)},{px(y(high))}" for x, (_, (_, high)) in zip(xs, run, strict=True)]
            lower = [f"{px(x)},{px(y(low))}" for x, (_, (low, _)) in zip(xs, run, strict=True)]
            polygons.append(" ".join(upper + lower[::-1]))
        drawn = [d for d in days if d not in incomplete]
        first, last = (drawn[0], drawn[-1]) if drawn else (days[0], days[-1])
        title = (
            f"{ko} {en}: {pct_text(shares[first].get(asset_class, Decimal(0)))} ({first}) → "
            f"{pct_text(shares[last].get(asset_class, Decimal(0)))} ({last})"
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
            Incomplete(d, px(axis.x(d)), f"{d}: {why}")
            for d, why in sorted(incomplete.items())
            if d in shares
        ],
    )
