"""The portfolio report: one self-contained HTML page, and its main chart as an SVG image.

Read from the warehouse views, in plain Python; the markup comes from the Jinja2 templates in
`templates/` (autoescaped). The page is a single file with inline CSS and SVG: no script, no
network, no external font or image, so it opens anywhere and can be mailed or archived as it
is. The allocation chart is also rendered on its own, as an SVG document that Dagster's UI
shows in the run's metadata. The charts' geometry is in `charts.py`, amounts as shown in
`money.py`; this module reads the views and fills the page.

Amounts stay exact Decimals from the views to the page: every chart mark carries the amount
it draws in `data-value` (the exact decimal string) and `data-label`. Only pixel positions are
rounded, and displayed won amounts drop anything below 1 won by truncation toward zero.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

import duckdb
import jinja2

from pipelines.ingest import provenance
from pipelines.reporting import charts, day_summary, money
from pipelines.storage.roots import DataRoot, Location, Storage, open_root
from pipelines.warehouse import warehouse

#: The net-assets chart covers the year up to the report's day, so the page (and the memory it
#: takes to draw) stays the same size however long the history grows.
NET_ASSETS_DAYS = 366

# ---------------------------------------------------------------------------------------------
# Templates and queries


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


def _query(con: duckdb.DuckDBPyConnection, sql: str, day: date) -> list[dict[str, Any]]:
    """Rows as dicts; the `?` in `sql` is `day`, inlined (see warehouse.on_day)."""
    cursor = con.execute(warehouse.on_day(sql, day))
    names = [column[0] for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


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
        ko, en, colour = charts.class_labels(row["asset_class"])
        note = (
            f"{money.format_krw_short(row['market_value'])} · {money.pct_text(row['weight_pct'])}"
        )
        bars.append(charts.Bar(row["asset_class"], ko, en, row["market_value"], note, colour))
    return {
        "chart": charts.bar_chart("chart-asset-class", "Allocation by asset class", bars),
        "rows": [
            {
                "ko": charts.class_labels(r["asset_class"])[0],
                "en": charts.class_labels(r["asset_class"])[1],
                "accounts": r["accounts"],
                "market_value": money.amount_cell(r["market_value"]),
                "weight": money.pct_text(r["weight_pct"]),
                "unrealized_pnl": money.amount_cell(r["unrealized_pnl"], signed=True),
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
    total = money.exact_sum([r["market_value"] for r in rows])
    shown = [r for r in rows if r["market_value"] != 0] or rows
    bars = [
        charts.Bar(
            r["category_code"],
            r["category_ko"] or r["category_code"],
            r["category_en"] or r["category_code"],
            r["market_value"],
            f"{money.format_krw_short(r['market_value'])} · "
            f"{money.pct_text(money.percent_of(r['market_value'], total))}",
            charts.class_labels(r["asset_class"])[2],
        )
        for r in shown
    ]
    return {
        "chart": charts.bar_chart("chart-category", "Allocation by category", bars),
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
        ret = money.percent_of(pnl, r["purchase_amount"])
        bars.append(
            charts.Bar(
                r["category_code"],
                r["category_ko"] or r["category_code"],
                r["category_en"] or r["category_code"],
                pnl,
                f"{money.signed_short(pnl)} · 수익률 {money.pct_text(ret)}",
                charts.GAIN_COLOUR if pnl > 0 else charts.LOSS_COLOUR,
            )
        )
    return {
        "chart": charts.bar_chart("chart-pnl", "Unrealized P&L by category", bars),
        "hidden": len(rows) - len(shown),
    }


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
        # the tables, not net_asset_history: the view's window would hold every day of history
        # for the few points drawn
        "SELECT s.account_id, s.product_code, s.snapshot_date, c.real_nass_amt AS net_assets "
        "FROM account_summary s LEFT JOIN asset_categories c "
        "ON c.is_total AND c.account_id = s.account_id AND c.snapshot_date = s.snapshot_date "
        f"AND c.snapshot_date <= ? AND c.snapshot_date > ? - {NET_ASSETS_DAYS} "
        f"WHERE s.snapshot_date <= ? AND s.snapshot_date > ? - {NET_ASSETS_DAYS} "
        "ORDER BY s.account_id, s.snapshot_date",
        day,
    )
    series = [
        charts.Series(
            "total",
            "합계 Total (all accounts)",
            charts.TOTAL_COLOUR,
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
            colour = charts.SERIES_COLOURS[(len(series) - 1) % len(charts.SERIES_COLOURS)]
            label = f"{row['account_id']} (상품 product {row['product_code']})"
            series.append(charts.Series(row["account_id"], label, colour, []))
        series[-1].points.append((row["snapshot_date"], row["net_assets"]))
    return {
        "chart": charts.line_chart("chart-net-assets", series),
        "missing_today": totals[-1]["snapshot_date"] != day,
        "incomplete": len(incomplete),
    }


# ---------------------------------------------------------------------------------------------
# Allocation over time: a stacked area of asset-class shares per day


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
    axis = charts.TimeAxis(sorted({d for _, _, s, _ in panels for d in s}))
    panel_height = charts.PANEL_TITLE + charts.PANEL_PLOT + charts.PANEL_GAP
    drawn = [
        charts.area_panel(axis, key, label, i * panel_height, s, marks)
        for i, (key, label, s, marks) in enumerate(panels)
    ]
    classes = list(dict.fromkeys(a.asset_class for p in drawn for a in p.areas))
    legend = [charts.LegendEntry(*charts.class_labels(c)) for c in classes]
    height = len(drawn) * panel_height
    return {
        "chart": charts.AreaChart(
            id="chart-allocation-over-time",
            width=charts.LINE_WIDTH,
            height=height + charts.AXIS_HEIGHT,
            plot_x=charts.LINE_PLOT_X,
            plot_width=charts.LINE_PLOT_RIGHT - charts.LINE_PLOT_X,
            plot_height=charts.PANEL_PLOT,
            panels=drawn,
            gaps=axis.gaps(),
            axis_y=height + 4,
            ticks=axis.ticks(),
            legend=legend,
        ),
    }


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
        **_figures(t),
        "unrealized_pnl": money.amount_cell(t["unrealized_pnl"], signed=True),
        "previous": t["previous_snapshot_date"],
        "net_assets_change": money.amount_cell(t["net_assets_change"], signed=True),
        "change_accounts": t["net_assets_change_accounts"],
        "change_note": t["net_assets_change_note"],
    }


FIGURES = ("net_assets", "total_assets", "securities_value", "cash", "loans")  # view columns


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a view row, as the page shows amounts."""
    return {name: money.amount_cell(row[name]) for name in FIGURES}


def _accounts(con: duckdb.DuckDBPyConnection, day: date) -> list[dict[str, Any]]:
    def pnl_return(amount: Decimal | None, purchase: Decimal | None) -> str:
        return money.pct_text(
            None if amount is None or purchase is None else money.percent_of(amount, purchase)
        )

    return [
        {
            "account_id": r["account_id"],
            "product_code": r["product_code"],
            **_figures(r),
            "change": money.amount_cell(r["net_assets_change"], signed=True),
            "previous": r["previous_snapshot_date"],
            "days_since_previous": r["days_since_previous"],
            "unrealized_pnl": money.amount_cell(r["unrealized_pnl"], signed=True),
            "return": pnl_return(r["unrealized_pnl"], r["purchase_amount"]),
        }
        for r in _query(con, day_summary.ACCOUNTS_ON_DAY, day)
    ]


def _simulated(con: duckdb.DuckDBPyConnection) -> str | None:
    """ "simulated" or "mixed" when the warehouse's data came from the simulator (all or some of
    it: the table data_source), for the report's banner; None for real data."""
    try:
        row = con.execute("SELECT kind FROM data_source").fetchone()
    except duckdb.CatalogException:  # a warehouse built before the table existed
        return None
    kind = row[0] if row else None
    return kind if kind in (provenance.SIMULATED, provenance.MIXED) else None


def render_report(con: duckdb.DuckDBPyConnection, day: date) -> str:
    """The portfolio report for `day` as one self-contained HTML page (inline CSS and SVG)."""
    incomplete = _incomplete_days(con, day)
    return _render(
        "report.html.j2",
        day=day,
        simulated=_simulated(con),
        totals=_totals(con, day),
        asset_classes=_asset_classes(con, day),
        categories=_categories(con, day),
        net_assets=_net_assets(con, day, incomplete),
        allocation_over_time=_allocation_over_time(con, day, incomplete),
        pnl=_pnl(con, day),
        accounts=_accounts(con, day),
        gap_days=charts.GAP_DAYS,
        gain_colour=charts.GAIN_COLOUR,
        loss_colour=charts.LOSS_COLOUR,
    )


def render_main_chart_svg(con: duckdb.DuckDBPyConnection, day: date) -> str:
    """The report's allocation by asset class on `day` as a standalone SVG document (for an
    <img>, as Dagster's UI shows it): the same bars, labels and exact `data-value`s. A day
    without rows gives a notice instead of bars."""
    section = _asset_classes(con, day)
    return _render(
        "main_chart.svg.j2",
        day=day,
        chart=section["chart"] if section else None,
        width=charts.BAR_WIDTH,
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
