"""The HTML portfolio report and its chart for Dagster's UI, from a warehouse the pipeline built.

The end-to-end tests materialize a history through Dagster against the embedded simulator
(including an account with 19-digit amounts), render today's report, and read it back the
way a person would see it: parsed by headless Chromium (its serialized DOM) and screenshotted.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path
from xml.etree import ElementTree

import dagster as dg
import duckdb
import pytest

import pipelines.settings
from pipelines.ingest.fetch import today_in_seoul
from pipelines.reporting import charts
from pipelines.reporting.money import format_krw, format_krw_short, format_won
from pipelines.reporting.report import render_main_chart_svg, render_report
from pipelines.simulator import server as simulator_module
from pipelines.warehouse import warehouse
from tests.readme import statements
from tests.runs import failure_text, materialize

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed at /usr/bin/chromium (Debian package chromium)",
)
#: The simulator gives accounts whose CANO starts with 9 19-digit amounts.
ACCOUNTS = ("12345678-01", "12345678-21", "98765432-01")
CHARTS = (
    "chart-asset-class",
    "chart-category",
    "chart-net-assets",
    "chart-allocation-over-time",
    "chart-pnl",
)


# ---------------------------------------------------------------------------------------------
# Amounts


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("304136143", "3억 413만 6,143원"),
        ("-96518", "-9만 6,518원"),
        ("0", "0원"),
        ("0E-8", "0원"),
        ("0.99999999", "0원"),
        ("-0.99999999", "0원"),  # truncated toward zero: no "-0원"
        ("9999", "9,999원"),
        ("10000", "1만원"),
        ("100000001", "1억 1원"),
        ("123456789.99999999", "1억 2,345만 6,789원"),
        ("-123456789.99999999", "-1억 2,345만 6,789원"),
        ("1000000000000", "1조원"),
        ("10000000000000000", "1경원"),
        ("1234567890123456789", "123경 4,567조 8,901억 2,345만 6,789원"),
        ("-9223372036854775808.5", "-922경 3,372조 368억 5,477만 5,808원"),
        ("9999999999999999999.99999999", "999경 9,999조 9,999억 9,999만 9,999원"),
        ("100000000000000000000", "10,000경원"),
    ],
)
def test_format_krw(amount: str, expected: str) -> None:
    assert format_krw(Decimal(amount)) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("304136143", "304,136,143원"),
        ("-96518", "-96,518원"),
        ("0", "0원"),
        ("-0.5", "0원"),
        ("999.99999999", "999원"),
        # beyond float precision: a float on the way would print ...808
        ("9223372036854775807.99999999", "9,223,372,036,854,775,807원"),
        ("-1234567890123456789.5", "-1,234,567,890,123,456,789원"),
    ],
)
def test_format_won(amount: str, expected: str) -> None:
    assert format_won(Decimal(amount)) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("304136143", "3.04억원"),
        ("-96518", "-9.65만원"),
        ("99999999", "9,999.99만원"),  # truncated, never rounded up into the next unit
        ("999.9", "999원"),
        ("9593422176827530242", "959.34경원"),
    ],
)
def test_format_krw_short(amount: str, expected: str) -> None:
    assert format_krw_short(Decimal(amount)) == expected


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity"])
def test_formatting_refuses_what_is_not_an_amount(amount: str) -> None:
    for formatter in (format_krw, format_won):
        with pytest.raises(ValueError, match="not an amount"):
            formatter(Decimal(amount))


def test_lines_break_only_across_gaps_longer_than_a_long_weekend() -> None:
    friday = date(2026, 11, 20)
    days = [friday, friday + timedelta(3), friday + timedelta(7), friday + timedelta(12)]
    points = [(d, Decimal(i)) for i, d in enumerate(days)]  # 3 days, 4 days, then 5
    assert [[d for d, _ in run] for run in charts.segments(points)] == [days[:3], days[3:]]


# ---------------------------------------------------------------------------------------------
# A history built by the pipeline


def history_days(today: date) -> list[date]:
    """Weekdays 12-20 days ago, weekdays 1-4 days ago, then today: two runs of snapshots with
    a week without any between them (a weekend inside a run is no gap)."""
    past = [today - timedelta(days=n) for n in range(20, 0, -1)]
    return [d for d in past if d.weekday() < 5 and not 5 <= (today - d).days <= 11] + [today]


def runs_of(days: list[date]) -> list[list[date]]:
    runs: list[list[date]] = [[days[0]]]
    for before, after in pairwise(days):
        if (after - before).days > 4:
            runs.append([])
        runs[-1].append(after)
    return runs


@dataclass
class History:
    data_root: Path
    today: date
    days: list[date]

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.data_root / warehouse.FILE_NAME), read_only=True)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """One history for the module (as isolated as conftest's per-test environment)."""
    root = tmp_path_factory.mktemp("report-history")
    today = today_in_seoul()
    days = history_days(today)
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("KIS_"):
                mp.delenv(name)
        mp.setattr(pipelines.settings, "ENV_FILE", root / "no.env")
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.setenv("KIS_DATA_ROOT", str(root / "data"))
        mp.setenv("KIS_ACCOUNTS", ",".join(ACCOUNTS))  # sim mode: no key set
        mp.setattr(simulator_module, "_embedded", None)
        try:
            instance = dg.DagsterInstance.ephemeral()
            for day in days:
                result = materialize(day, instance)
                assert result.success, failure_text(result)
        finally:
            if simulator_module._embedded is not None:
                simulator_module._embedded.stop()
    return History(root / "data", today, days)


@pytest.fixture(scope="module")
def page(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with history.connect() as con:
        text = render_report(con, history.today)
    path = tmp_path_factory.mktemp("report-page") / "report.html"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Reading the page


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            yield child
            yield from child.walk()

    def find(self, tag: str, **attrs: str) -> list[Node]:
        """Descendants with this tag whose attributes match; `class_` matches one class."""
        wanted_class = attrs.pop("class_", None)
        return [
            n
            for n in self.walk()
            if n.tag == tag
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
            and (wanted_class is None or wanted_class in n.attrs.get("class", "").split())
        ]

    def by_id(self, element_id: str) -> Node:
        [node] = [n for n in self.walk() if n.attrs.get("id") == element_id]
        return node

    @property
    def text(self) -> str:
        return "".join(self.texts) + "".join(c.text for c in self.children)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.texts.append(data)


def parse(markup: str) -> Node:
    reader = DomReader()
    reader.feed(markup)
    reader.close()
    return reader.root


def chromium(tmp_path: Path, page: Path, *options: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *options,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def points_of(polyline: Node) -> list[tuple[Decimal, Decimal]]:
    pairs = polyline.attrs["points"].split()
    return [(Decimal(x), Decimal(y)) for x, y in (p.split(",") for p in pairs)]


def marks(chart: Node) -> list[Node]:
    return chart.find("rect", class_="mark")


# ---------------------------------------------------------------------------------------------
# End to end, in Chromium


@needs_chromium
def test_report_in_chromium_shows_the_warehouse_exactly(
    history: History, page: Path, tmp_path: Path
) -> None:
    dom = parse(chromium(tmp_path, page, "--dump-dom").stdout)
    today = history.today
    with history.connect() as con:
        allocation = con.execute(
            "SELECT asset_class, market_value FROM consolidated_allocation "
            "WHERE snapshot_date = ? ORDER BY market_value DESC",
            [today],
        ).fetchall()
        totals = con.execute(
            "SELECT snapshot_date, net_assets FROM consolidated_net_assets "
            "WHERE snapshot_date <= ? ORDER BY snapshot_date",
            [today],
        ).fetchall()
        per_account = con.execute(
            "SELECT account_id, snapshot_date, net_assets FROM net_asset_history "
            "WHERE snapshot_date <= ? ORDER BY account_id, snapshot_date",
            [today],
        ).fetchall()
        accounts_today = con.execute(
            "SELECT account_id, product_code, net_assets, total_assets, cash, loans "
            "FROM net_asset_history WHERE snapshot_date = ? ORDER BY account_id",
            [today],
        ).fetchall()
        [total_net_assets] = con.execute(
            "SELECT net_assets FROM consolidated_net_assets WHERE snapshot_date = ?", [today]
        ).fetchone() or [None]
        # net assets as KIS means them: the 합계 rows' real_nass_amt, added up
        [total_rows] = con.execute(
            "SELECT sum(real_nass_amt) FROM asset_categories WHERE is_total AND snapshot_date = ?",
            [today],
        ).fetchone() or [None]
        [securities_only] = con.execute(
            "SELECT sum(nass_tot_amt) FROM account_summary WHERE snapshot_date = ?", [today]
        ).fetchone() or [None]
        category_total = con.execute(
            "SELECT sum(market_value) FROM allocation_history WHERE snapshot_date = ?", [today]
        ).fetchone()
        pnl = dict(
            con.execute(
                "SELECT category_code, sum(unrealized_pnl) FROM pnl_by_category "
                "WHERE snapshot_date = ? GROUP BY ALL HAVING sum(unrealized_pnl) <> 0",
                [today],
            ).fetchall()
        )

    # The headline: every account's net assets (합계 real_nass_amt) added up, exactly.
    headline = dom.by_id("headline-net-assets")
    [shown] = [n for n in headline.walk() if "data-value" in n.attrs]
    assert Decimal(shown.attrs["data-value"]) == total_rows == total_net_assets
    assert securities_only is not None and total_rows > securities_only
    assert format_krw(total_rows) in shown.text

    # Every chart is there and draws something.
    charts = {chart_id: dom.by_id(chart_id) for chart_id in CHARTS}
    assert all(chart.tag == "svg" for chart in charts.values())
    for chart_id in ("chart-asset-class", "chart-category", "chart-pnl"):
        drawn = [
            m
            for m in marks(charts[chart_id])
            if Decimal(m.attrs["width"]) > 0 and Decimal(m.attrs["height"]) > 0
        ]
        assert drawn, chart_id
        assert all(m.attrs["data-label"].strip() for m in marks(charts[chart_id]))
    lines = charts["chart-net-assets"].find("polyline")
    assert lines and all(len(set(points_of(line))) >= 2 for line in lines)

    # Asset classes: the exact amounts of consolidated_allocation, largest first, and bars as
    # long as their amounts (19-digit sums included: a float on the way would not be equal).
    bars = marks(charts["chart-asset-class"])
    assert [(b.attrs["data-key"], Decimal(b.attrs["data-value"])) for b in bars] == allocation
    assert all("E" not in b.attrs["data-value"] for b in bars)
    assert any(len(str(int(value))) >= 19 for _, value in allocation)
    largest = max(value for _, value in allocation)
    widest = max(Decimal(b.attrs["width"]) for b in bars)
    for bar, (_, value) in zip(bars, allocation, strict=True):
        assert abs(Decimal(bar.attrs["width"]) * largest - value * widest) <= largest / 50

    # Categories add up to the day's whole; P&L bars are the categories' exact sums.
    category_values = [Decimal(m.attrs["data-value"]) for m in marks(charts["chart-category"])]
    assert category_total is not None and sum(category_values) == category_total[0]
    assert {
        m.attrs["data-key"]: Decimal(m.attrs["data-value"]) for m in marks(charts["chart-pnl"])
    } == pnl
    assert any(v < 0 for v in pnl.values()) and any(v > 0 for v in pnl.values())

    # Net assets: one point per snapshot date for the total and for every account, exact,
    # and the line broken across the week without snapshots (never across a weekend).
    chart = charts["chart-net-assets"]
    assert [r[0] for r in totals] == history.days
    total_points = chart.find("circle", data_series="total")
    assert [
        (date.fromisoformat(p.attrs["data-date"]), Decimal(p.attrs["data-value"]))
        for p in total_points
    ] == totals
    for account in ACCOUNTS:
        points = chart.find("circle", data_series=account)
        expected = [(d, v) for a, d, v in per_account if a == account]
        assert [
            (date.fromisoformat(p.attrs["data-date"]), Decimal(p.attrs["data-value"]))
            for p in points
        ] == expected
        assert len(expected) == len(history.days)
    runs = runs_of(history.days)
    assert len(runs) == 2
    for series in ("total", *ACCOUNTS):
        polylines = chart.find("polyline", data_series=series)
        assert [len(points_of(line)) for line in polylines] == [len(run) for run in runs]
        circles = chart.find("circle", data_series=series)
        xs = [
            [Decimal(c.attrs["cx"]) for c in circles[: len(runs[0])]],
            [Decimal(c.attrs["cx"]) for c in circles[len(runs[0]) :]],
        ]
        assert [[x for x, _ in points_of(line)] for line in polylines] == xs

    # The account table: every account's amounts the Korean way and in plain won.
    [table] = dom.find("table", class_="accounts")
    rows = {
        tr.find("td")[0].text.strip(): [td.text for td in tr.find("td")]
        for tr in table.find("tbody")[0].find("tr")
    }
    assert sorted(rows) == list(ACCOUNTS)
    for account_id, product_code, *amounts in accounts_today:
        cells = rows[account_id]
        assert cells[1].strip() == product_code
        for cell, amount in zip(cells[2:6], amounts, strict=True):  # net, total, cash, loans
            assert format_krw(amount) in cell and format_won(amount) in cell
    assert any(loans > 0 and net < total for _, _, net, total, _, loans in accounts_today)
    [footer] = table.find("tfoot")
    assert total_net_assets is not None and format_krw(total_net_assets) in footer.text
    assert "경" in footer.text


def thickness_by_x(polygon: Node) -> list[tuple[Decimal, Decimal, Decimal]]:
    """(x, top, bottom) of each day of a stacked-area polygon: its upper edge left to right,
    then its lower edge right to left."""
    points = points_of(polygon)
    upper, lower = points[: len(points) // 2], points[len(points) // 2 :][::-1]
    assert [x for x, _ in upper] == [x for x, _ in lower]
    return [(x, top, bottom) for (x, top), (_, bottom) in zip(upper, lower, strict=True)]


def test_asset_class_shares_are_stacked_areas_from_the_views(history: History, page: Path) -> None:
    """Each asset class's band is as thick as its share of the day (consolidated_allocation,
    and allocation_history per account), stacked to 100%, and broken across the gap week."""
    dom = parse(page.read_text(encoding="utf-8"))
    chart = dom.by_id("chart-allocation-over-time")
    consolidated, per_account = statements("allocation-over-time")  # the README's queries
    with history.connect() as con:
        shares = {"total": con.execute(consolidated).fetchall()}
        for account in ACCOUNTS:
            shares[account] = con.execute(
                per_account.replace("'12345678-01'", f"'{account}'")
            ).fetchall()
    frames = chart.find("rect", class_="frame")
    assert len(frames) == 1 + len(ACCOUNTS)
    plot = Decimal(frames[0].attrs["height"])
    runs = runs_of(history.days)
    for series, (frame, (key, found)) in zip(
        ["total", *ACCOUNTS], zip(frames, shares.items(), strict=True), strict=True
    ):
        assert key == series
        bottom = Decimal(frame.attrs["y"]) + plot
        weight = {(d, c): w for d, c, w in found}
        classes = [
            c for c in charts.ASSET_CLASSES if any(k[1] == c and w for k, w in weight.items())
        ]
        areas = chart.find("polygon", data_series=series)
        assert [a.attrs["data-key"] for a in areas] == [c for c in classes for _ in runs]
        below = {d: bottom for d in history.days}
        for number, area in enumerate(areas):
            run = runs[number % len(runs)]
            edges = thickness_by_x(area)
            assert len(edges) == len(run)
            for day, (_, top, low) in zip(run, edges, strict=True):
                expected = weight.get((day, area.attrs["data-key"]), Decimal(0)) * plot / 100
                assert abs((low - top) - expected) <= Decimal("0.02"), (series, day)
                assert abs(low - below[day]) <= Decimal("0.02")  # stacked on the one below
                below[day] = top
        for day in history.days:  # the stack reaches 100% (weights are truncated: 99.99)
            assert abs(below[day] - (bottom - plot)) <= Decimal("0.05")


@needs_chromium
def test_report_screenshot_is_a_real_picture(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, page, "--window-size=1280,2400", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2400)
    assert len(data) > 20_000


def test_report_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    for reference in ("<script", "<link", "<img", "<iframe", "url(", "@import", "src="):
        assert reference not in text.lower(), reference
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    assert '"Noto Sans CJK KR", "Malgun Gothic", sans-serif' in text
    dom = parse(text)
    assert all(dom.by_id(chart_id).tag == "svg" for chart_id in CHARTS)
    # Every mark that carries a number carries it exactly, with a label.
    numbered = [n for n in dom.walk() if "data-value" in n.attrs]
    assert len(numbered) > 50
    for node in numbered:
        assert re.fullmatch(r"-?\d+(\.\d+)?", node.attrs["data-value"]), node.attrs
    for chart_id in CHARTS:
        for node in dom.by_id(chart_id).walk():
            if "data-value" in node.attrs:
                assert node.attrs["data-label"].strip()


def test_a_day_without_a_snapshot_says_so_and_keeps_the_history(history: History) -> None:
    gap_day = history.today - timedelta(days=8)  # inside the week without snapshots
    with history.connect() as con:
        text = render_report(con, gap_day)
    dom = parse(text)
    for view in ("consolidated_allocation", "allocation_history", "pnl_by_category"):
        assert f"No rows in <code>{view}</code> for {gap_day}" in text
    assert "net_asset_history</code> for" in text
    ids = {n.attrs.get("id") for n in dom.walk()}
    assert not {"chart-asset-class", "chart-category", "chart-pnl"} & ids
    dates = [p.attrs["data-date"] for p in dom.find("circle", data_series="total")]
    assert dates == [d.isoformat() for d in history.days if d <= gap_day]
    assert dom.find("table", class_="accounts") == []


def test_an_empty_warehouse_gives_a_report_that_says_so(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True)
    path = warehouse.build(isolated_env)
    day = date(2026, 11, 26)
    with duckdb.connect(str(path), read_only=True) as con:
        text = render_report(con, day)
        image = render_main_chart_svg(con, day)
    dom = parse(text)
    assert not {n.attrs.get("id") for n in dom.walk()} & set(CHARTS)
    for view in (
        "consolidated_allocation",
        "allocation_history",
        "pnl_by_category",
        "net_asset_history",
        "consolidated_net_assets",
    ):
        assert f"No rows in <code>{view}</code> for {day}" in text
    assert "데이터가 없습니다" in text
    chart = ElementTree.fromstring(image)  # an image's SVG must be well-formed XML
    assert int(chart.attrib["width"]) > 0 and int(chart.attrib["height"]) > 0
    assert f"No rows in consolidated_allocation for {day}" in image


# ---------------------------------------------------------------------------------------------
# The chart for Dagster's UI: an SVG image in the run's metadata

SVG = "{http://www.w3.org/2000/svg}"


def test_main_chart_image_draws_one_bar_per_asset_class_to_scale(history: History) -> None:
    with history.connect() as con:
        image = render_main_chart_svg(con, history.today)
        allocation = con.execute(
            "SELECT asset_class, market_value FROM consolidated_allocation "
            "WHERE snapshot_date = ? ORDER BY market_value DESC",
            [history.today],
        ).fetchall()
    chart = ElementTree.fromstring(image)  # an image's SVG must be well-formed XML
    assert chart.tag == f"{SVG}svg" and int(chart.attrib["width"]) > 0
    bars = [r for r in chart.iter(f"{SVG}rect") if r.attrib.get("class") == "mark"]
    assert [(b.attrib["data-key"], Decimal(b.attrib["data-value"])) for b in bars] == allocation
    largest = allocation[0][1]
    for bar, (asset_class, value) in zip(bars, allocation, strict=True):
        assert bar.attrib["fill"] == charts.ASSET_CLASSES[asset_class][2]
        expected = value * charts.BAR_PLOT_W / largest
        assert abs(Decimal(bar.attrib["width"]) - expected) <= Decimal("0.01"), asset_class
        assert Decimal(bar.attrib["x"]) == charts.BAR_PLOT_X  # from the zero line
    labels = [t.text for t in chart.iter(f"{SVG}text")]
    assert all(charts.ASSET_CLASSES[asset_class][0] in labels for asset_class, _ in allocation)


@needs_chromium
def test_main_chart_image_shows_in_chromium_as_in_dagsters_ui(
    history: History, tmp_path: Path
) -> None:
    """Dagster's UI shows the chart as Markdown `![…](data:image/svg+xml;base64,…)`: an <img>.
    Chromium draws it; each bar's row holds as many pixels of its colour as its width."""
    with history.connect() as con:
        image = render_main_chart_svg(con, history.today)
    bars = [
        r
        for r in ElementTree.fromstring(image).iter(f"{SVG}rect")
        if r.attrib.get("class") == "mark"
    ]
    rows = [
        {
            "y": int(b.attrib["y"]) + int(b.attrib["height"]) // 2,
            "fill": b.attrib["fill"],
        }
        for b in bars
    ]
    source = "data:image/svg+xml;base64," + base64.b64encode(image.encode()).decode()
    page = tmp_path / "image.html"
    page.write_text(
        f"""<!DOCTYPE html><html><body><img id="chart" src="{source}"><script>
        const image = document.getElementById("chart");
        const rows = {json.dumps(rows)};
        image.decode().then(() => {{
          const canvas = document.createElement("canvas");
          canvas.width = image.naturalWidth;
          canvas.height = image.naturalHeight;
          const draw = canvas.getContext("2d");
          draw.drawImage(image, 0, 0);
          const hex = (d, i) => "#" + [0, 1, 2].map(
            (k) => d[i + k].toString(16).padStart(2, "0")).join("");
          const counts = rows.map((row) => {{
            const d = draw.getImageData(0, row.y, canvas.width, 1).data;
            let n = 0;
            for (let x = 0; x < canvas.width; x++) if (hex(d, 4 * x) === row.fill) n++;
            return n;
          }});
          document.body.dataset.size = image.naturalWidth + "x" + image.naturalHeight;
          document.body.dataset.counts = counts.join(",");
        }});
        </script></body></html>""",
        encoding="utf-8",
    )
    dom = parse(chromium(tmp_path, page, "--dump-dom").stdout)
    [body] = dom.find("body")
    height = ElementTree.fromstring(image).attrib["height"]
    assert body.attrs["data-size"] == f"{charts.BAR_WIDTH}x{height}"
    counts = [int(n) for n in body.attrs["data-counts"].split(",")]
    for bar, drawn in zip(bars, counts, strict=True):
        assert abs(drawn - Decimal(bar.attrib["width"])) <= 2, bar.attrib["data-key"]
