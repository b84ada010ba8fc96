"""The reporting views, their column comments, targets and drift, and what the UI is shown."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from pipelines.definitions import defs
from pipelines.ingest.capture import CaptureCalendar, CaptureSettings
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import Snapshot
from pipelines.kis.protocol import Account
from pipelines.lake.tables import ParquetTables
from pipelines.reporting import day_summary
from pipelines.simulator.portfolio import PORTAL_EXAMPLE_ACCOUNT, balance_body
from pipelines.tidy import flatten
from pipelines.warehouse import targets, warehouse
from tests.readme import statements
from tests.runs import materialize

TARGETS = """
[asset_class.cash]
target_pct = 30
tolerance_pct = 10

[asset_class.bond]
target_pct = 20
tolerance_pct = 5

[asset_class.equity]
target_pct = 50
tolerance_pct = 2
"""


def weekdays_until(today: date, count: int) -> list[date]:
    days: list[date] = []
    day = today
    while len(days) < count:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    return sorted(days)


@pytest.fixture
def history(isolated_env: Path) -> Path:
    """Eight weekdays of simulated history and today, as the demo builds it."""
    today = today_in_seoul()
    instance = dg.DagsterInstance.ephemeral()
    for day in [*weekdays_until(today, 8), today]:
        assert materialize(day, instance).success
    return isolated_env / "warehouse.duckdb"


def test_every_column_of_every_view_has_a_comment(history: Path) -> None:
    with duckdb.connect(str(history), read_only=True) as con:
        views = [
            r[0]
            for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        ]
        uncommented = con.sql(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE comment IS NULL "
            "AND table_name IN (SELECT view_name FROM duckdb_views() WHERE NOT internal)"
        ).fetchall()
        view_comments = con.sql(
            "SELECT count(*) FROM duckdb_views() WHERE NOT internal AND comment IS NULL"
        ).fetchone()
    assert {
        "allocation_history",
        "pnl_by_category",
        "consolidated_net_assets",
        "snapshot_calendar",
    } <= set(views)
    assert uncommented == []
    assert view_comments == (0,)


def test_gaps_are_rows_not_interpolations(history: Path) -> None:
    with duckdb.connect(str(history), read_only=True) as con:
        weekend = con.sql(
            "SELECT count(*) FROM snapshot_calendar WHERE NOT has_snapshot "
            "AND dayofweek(snapshot_date) IN (0, 6)"
        ).fetchone()
        gaps = con.sql(
            "SELECT min(days_since_previous), max(days_since_previous) FROM net_asset_history"
        ).fetchone()
        interpolated = con.sql(
            "SELECT count(*) FROM net_asset_history WHERE dayofweek(snapshot_date) IN (0, 6) "
            "AND snapshot_date <> (SELECT max(snapshot_date) FROM net_asset_history)"
        ).fetchone()
    assert weekend is not None and weekend[0] >= 2  # a weekend lies inside eight weekdays
    assert gaps == (1, 3)  # Friday → Monday
    assert interpolated == (0,)


def test_views_add_up_exactly(history: Path) -> None:
    with duckdb.connect(str(history), read_only=True) as con:
        mismatched = con.sql(
            """
            SELECT c.snapshot_date FROM consolidated_allocation c
            JOIN (SELECT snapshot_date, sum(evlu_amt) AS v FROM asset_categories
                  WHERE is_total GROUP BY 1) t USING (snapshot_date)
            GROUP BY c.snapshot_date, t.v HAVING sum(c.market_value) <> t.v
            """
        ).fetchall()
        weights = con.sql(
            "SELECT snapshot_date, sum(weight_pct) FROM consolidated_allocation GROUP BY 1"
        ).fetchall()
        since_first = con.sql(
            """
            SELECT bool_and(net_assets_change_since_first = net_assets - first_net)
            FROM (SELECT *, first_value(net_assets) OVER (PARTITION BY account_id
                  ORDER BY snapshot_date) AS first_net FROM net_asset_history)
            """
        ).fetchone()
        pnl = con.sql(
            "SELECT bool_and(return_pct IS NULL OR abs(return_pct - unrealized_pnl * 100 / "
            "purchase_amount) < 0.0001) FROM pnl_by_category"
        ).fetchone()
    assert mismatched == []
    for _, total in weights:  # truncated to 4 decimals per class: never over, at most 0.01 under
        assert Decimal("99.99") <= total <= 100
    assert since_first == (True,)
    assert pnl == (True,)


def test_targets_give_a_drift_view_and_a_warning_when_out_of_band(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text(TARGETS)
    monkeypatch.setenv("KIS_TARGETS_FILE", str(targets_file))
    today = today_in_seoul()
    result = materialize(today)
    assert result.success
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        drift = con.execute(
            "SELECT asset_class, weight_pct, target_pct, drift_pct, within_band "
            "FROM allocation_drift WHERE snapshot_date = ? ORDER BY asset_class",
            [today],
        ).fetchall()
        actual = dict(
            con.execute(
                "SELECT asset_class, weight_pct FROM consolidated_allocation "
                "WHERE snapshot_date = ?",
                [today],
            ).fetchall()
        )
    assert [row[0] for row in drift] == ["bond", "cash", "equity"]
    for name, weight, target, drift_pct, within in drift:
        assert weight == actual.get(name, 0)
        assert drift_pct == weight - target
        band = {"cash": 10, "bond": 5, "equity": 2}[name]
        assert within == (abs(drift_pct) <= band)
    [evaluation] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "allocation_within_targets"
    ]
    assert evaluation.passed == all(row[4] for row in drift)
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    if not evaluation.passed:
        assert "rebalance" in (evaluation.description or "")


def test_without_targets_nothing_changes(isolated_env: Path) -> None:
    result = materialize(today_in_seoul())
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        views = {r[0] for r in con.sql("SELECT view_name FROM duckdb_views()").fetchall()}
    assert "allocation_drift" not in views
    [evaluation] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "allocation_within_targets"
    ]
    assert evaluation.passed and "No targets file" in (evaluation.description or "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[asset_class.equity]\ntarget_pct = 60\n", "add up to 60"),
        ("[asset_class.crypto]\ntarget_pct = 100\n", "unknown asset class"),
        ("[asset_class.equity]\ntarget_pct = 140\n", "between 0 and 100"),
        ("[asset_class.equity]\ntolerance_pct = 1\n", "needs target_pct"),
        ("equity = 100\n", "expected [asset_class"),
    ],
)
def test_bad_targets_files_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(targets.TargetsError, match=message.replace("[", r"\[")):
        targets.load(path)


def test_the_ui_gets_a_preview_and_a_plottable_net_asset_number(isolated_env: Path) -> None:
    today = today_in_seoul()
    result = materialize(today)
    [event] = result.asset_materializations_for_node("warehouse_views")
    metadata = event.metadata
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        net = con.execute(
            "SELECT sum(net_assets) FROM net_asset_history WHERE snapshot_date = ?", [today]
        ).fetchone()
        biggest = con.execute(
            "SELECT asset_class FROM consolidated_allocation WHERE snapshot_date = ? "
            "ORDER BY market_value DESC LIMIT 1",
            [today],
        ).fetchone()
    assert net is not None and biggest is not None
    assert isinstance(metadata["net_assets_krw"], dg.IntMetadataValue)
    assert metadata["net_assets_krw"].value == int(net[0])
    preview = metadata["allocation"]
    assert isinstance(preview, dg.MarkdownMetadataValue)
    assert f"| {biggest[0]} |" in preview.value and f"{int(net[0]):,}원" in preview.value


def test_the_views_are_fresh_by_the_close_of_each_capture_window() -> None:
    from assets.partitions import window_freshness
    from pipelines.ingest.capture import CaptureSettings, parse_days, parse_window

    # the views and the day's tables alike
    for name in ("warehouse_views", "asset_categories", "account_summary"):
        policy = defs.resolve_assets_def(name).specs_by_key[dg.AssetKey(name)].freshness_policy
        assert policy is not None  # tests/conftest.py: every day a capture day
        assert policy.deadline_cron == "30 23 * * *" and policy.timezone == "Asia/Seoul"
    default = window_freshness(CaptureSettings())
    assert default.deadline_cron == "30 23 * * 1-5"
    assert default.lower_bound_delta == timedelta(hours=5)  # rebuilt since 18:30
    late = window_freshness(
        CaptureSettings(window=parse_window("20:00-24:00"), days=parse_days("mon-wed,sat"))
    )
    assert late.deadline_cron == "59 23 * * 1-3,6"
    assert late.lower_bound_delta == timedelta(hours=3, minutes=59)


def test_the_duckdb_shell_of_the_environment_reads_the_warehouse(
    history: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    shell = Path(sys.executable).parent / "duckdb"
    completed = subprocess.run(
        [
            str(shell),
            "-readonly",
            "-csv",
            str(history),
            "-c",
            "SELECT count(*) FROM net_asset_history",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["count_star()", str(2 * 9)]


def test_the_report_asset_writes_the_day_and_shows_its_chart(history: Path) -> None:
    import base64
    import re

    today = today_in_seoul()
    report = history.parent / "reports" / f"portfolio-{today}.html"
    assert report.is_file() and "chart-asset-class" in report.read_text()
    result = materialize(today)
    [event] = result.asset_materializations_for_node("portfolio_report")
    markdown = event.metadata["allocation_chart"].value
    match = re.search(r"!\[[^]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match is not None
    image = base64.b64decode(match.group(1)).decode()
    assert image.startswith('<svg xmlns="http://www.w3.org/2000/svg" id="chart-asset-class"')
    assert 'class="mark"' in image
    assert event.metadata["path"].value == str(report)


# ---------------------------------------------------------------------------------------------
# Net assets as KIS means them, and totals that compare like with like

STANDARD, PRODUCT21, PORTAL = (
    Account.parse("12345678-01"),  # holds stocks on a credit loan
    Account.parse("12345678-21"),
    PORTAL_EXAMPLE_ACCOUNT,  # KIS's published example: mostly foreign currency and a deposit
)


def write_days(
    data_root: Path,
    plan: dict[date, tuple[Account, ...]],
    configured: tuple[Account, ...],
    edit: Callable[[Account, date, dict[str, Any]], None] = lambda *_: None,
) -> Path:
    """Each day's simulated answers of the accounts in `plan` (each changed by `edit` first),
    written as the tidy step writes them, and the warehouse built with `configured` as the
    configured accounts."""
    tables = ParquetTables(data_root)
    for day, accounts in plan.items():
        snapshots = []
        for a in accounts:
            body = balance_body(a, day)
            edit(a, day, body)
            snapshots.append(
                Snapshot(
                    a,
                    day,
                    datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
                    body["output1"],
                    body["output2"],
                    Path("x.json"),
                )
            )
        tables.write("asset_categories", day, flatten.asset_categories(snapshots))
        tables.write("account_summary", day, flatten.account_summary(snapshots))
    calendar = CaptureCalendar(CaptureSettings(), min(plan), tuple(a.id for a in configured))
    return warehouse.build(data_root, capture=calendar)


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [c[0] for c in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_net_assets_are_the_total_rows_net_value_not_the_securities_only_field(
    tmp_path: Path,
) -> None:
    day = date(2026, 3, 2)
    path = write_days(tmp_path, {day: (STANDARD, PRODUCT21, PORTAL)}, (STANDARD, PRODUCT21, PORTAL))
    with duckdb.connect(str(path), read_only=True) as con:
        history = {
            r["account_id"]: r
            for r in rows(
                con,
                "SELECT h.*, s.nass_tot_amt, c.real_nass_amt FROM net_asset_history h "
                "JOIN account_summary s USING (snapshot_date, account_id) "
                "JOIN asset_categories c USING (snapshot_date, account_id) WHERE c.is_total",
            )
        }
        [together] = rows(con, "FROM consolidated_net_assets")
    for account_id, r in history.items():
        assert r["net_assets"] == r["real_nass_amt"], account_id
        assert r["securities_value"] == r["nass_tot_amt"], account_id
        assert r["net_assets"] == r["total_assets"] - r["loans"], account_id
    # the account with a credit loan: net assets below total assets
    loaned = history[STANDARD.id]
    assert loaned["loans"] > 0 and loaned["net_assets"] < loaned["total_assets"]
    # KIS's example: net assets = total assets = 1,651,869,889,547, far above nass_tot_amt
    portal = history[PORTAL.id]
    assert portal["net_assets"] == portal["total_assets"] == Decimal("1651869889547")
    assert portal["securities_value"] == Decimal("185550504")
    assert portal["cash"] == Decimal("249855300")
    assert together["net_assets"] == sum(r["real_nass_amt"] for r in history.values())
    assert together["cash"] == sum(r["cash"] for r in history.values())
    assert together["is_complete"] and together["missing_accounts"] == []


def test_a_day_with_an_account_missing_is_incomplete_and_shows_no_loss(tmp_path: Path) -> None:
    d1, d2, d3, d4 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)
    plan = {
        d1: (STANDARD, PRODUCT21, PORTAL),
        d2: (STANDARD, PORTAL),  # 12345678-21 missing: the sum drops by its whole value
        d3: (STANDARD, PRODUCT21, PORTAL),
        d4: (PRODUCT21,),
    }
    path = write_days(tmp_path, plan, (STANDARD, PRODUCT21, PORTAL))
    with duckdb.connect(str(path), read_only=True) as con:
        days = {r["snapshot_date"]: r for r in rows(con, "FROM consolidated_net_assets")}
        per = {
            (r["snapshot_date"], r["account_id"]): r for r in rows(con, "FROM net_asset_history")
        }

    def change(day: date, accounts: tuple[Account, ...]) -> Decimal:
        return sum((per[day, a.id]["net_assets_change"] for a in accounts), Decimal(0))

    assert [days[d]["is_complete"] for d in plan] == [True, False, True, False]
    assert days[d2]["missing_accounts"] == [PRODUCT21.id]
    assert (days[d2]["accounts"], days[d2]["accounts_expected"]) == (2, 3)
    assert days[d4]["missing_accounts"] == [STANDARD.id, PORTAL.id]
    # the level leaves the missing account out; the change compares like with like
    assert (
        days[d2]["net_assets"]
        == per[d2, STANDARD.id]["net_assets"] + per[d2, PORTAL.id]["net_assets"]
    )
    assert days[d2]["net_assets_change"] == change(d2, (STANDARD, PORTAL))
    assert days[d2]["net_assets_change_accounts"] == 2
    loss = days[d2]["net_assets"] - days[d1]["net_assets"]
    assert loss < -per[d1, PRODUCT21.id]["net_assets"] / 2  # what a plain difference would say
    assert abs(days[d2]["net_assets_change"]) < abs(loss) / 100
    assert "like for like over 2 account(s)" in days[d2]["net_assets_change_note"]
    # back to complete: over the two accounts on both d2 and d3 only
    assert days[d3]["net_assets_change"] == change(d3, (STANDARD, PORTAL))
    assert days[d4]["net_assets_change"] == per[d4, PRODUCT21.id]["net_assets_change"]
    assert (
        days[d1]["net_assets_change"] is None and "first date" in days[d1]["net_assets_change_note"]
    )
    assert days[d1]["net_assets_change_note"] is not None
    assert days[d3]["net_assets_change_note"] is not None
    assert days[d1]["previous_snapshot_date"] is None
    assert days[d3]["previous_snapshot_date"] == d2


#: net_asset_history's per-account columns as plain window functions over each account's
#: snapshots: what the view, consolidated_net_assets (its own window over the keys) and the run's
#: day rows (day_summary.ACCOUNTS_ON_DAY) must all agree with.
NET_ASSETS_BY_WINDOWS = """
SELECT snapshot_date, account_id,
       lag(snapshot_date) OVER w AS previous_snapshot_date,
       snapshot_date - lag(snapshot_date) OVER w AS days_since_previous,
       total_assets - lag(total_assets) OVER w AS total_assets_change,
       net_assets - lag(net_assets) OVER w AS net_assets_change,
       net_assets - first_value(net_assets IGNORE NULLS) OVER w AS net_assets_change_since_first
FROM net_asset_history
WINDOW w AS (PARTITION BY account_id ORDER BY snapshot_date)
"""


def test_changes_follow_each_accounts_own_snapshots_through_gaps_and_unknown_net_assets(
    tmp_path: Path,
) -> None:
    """Gaps, an account missing a day, and a 합계 row whose net value is blank (on an account's
    first day, and in the middle): every change is what the window over the account's own
    snapshots says, whole or one day at a time, per account and added up like for like."""
    days = [date(2026, 3, 2) + timedelta(days=n) for n in (0, 1, 3, 4, 7)]
    plan = {day: (STANDARD, PORTAL) for day in days}
    plan[days[2]] = (STANDARD,)  # PORTAL misses a day
    blank = {(PORTAL.id, days[0]), (STANDARD.id, days[3])}

    def blank_net_value(account: Account, day: date, body: dict[str, Any]) -> None:
        if (account.id, day) in blank:
            body["output1"][-1]["real_nass_amt"] = ""

    path = write_days(tmp_path, plan, (STANDARD, PORTAL), blank_net_value)
    columns = (
        "previous_snapshot_date, days_since_previous, total_assets_change, net_assets_change, "
        "net_assets_change_since_first"
    )
    with duckdb.connect(str(path), read_only=True) as con:
        expected = rows(con, f"SELECT * FROM ({NET_ASSETS_BY_WINDOWS}) ORDER BY ALL")
        whole = rows(
            con, f"SELECT snapshot_date, account_id, {columns} FROM net_asset_history ORDER BY ALL"
        )
        by_day = [
            row
            for day in days
            for row in rows(
                con,
                f"SELECT snapshot_date, account_id, {columns} FROM net_asset_history "
                f"WHERE snapshot_date = DATE '{day}' ORDER BY ALL",
            )
        ]
        blanks = con.sql("SELECT count(*) FROM net_asset_history WHERE net_assets IS NULL")
        blank_count = blanks.fetchone()
        consolidated = [
            rows(
                con,
                "SELECT previous_snapshot_date, net_assets_change, net_assets_change_accounts "
                f"FROM consolidated_net_assets WHERE snapshot_date = DATE '{day}'",
            )[0]
            for day in days
        ]
        on_day = [
            (row[0], row[11])  # account_id, net_assets_change
            for day in days
            for row in con.execute(warehouse.on_day(day_summary.ACCOUNTS_ON_DAY, day)).fetchall()
        ]
    assert blank_count == (len(blank),)
    assert on_day == [(r["account_id"], r["net_assets_change"]) for r in expected]
    for day, total in zip(days, consolidated, strict=True):
        # like for like: the accounts whose previous snapshot is the previous date of any
        like = [
            r["net_assets_change"]
            for r in expected
            if r["snapshot_date"] == day
            and r["previous_snapshot_date"] == total["previous_snapshot_date"]
            and r["net_assets_change"] is not None
        ]
        assert total["net_assets_change_accounts"] == len(like), day
        assert total["net_assets_change"] == (sum(like) if like else None), day
    assert whole == expected
    assert by_day == expected
    # PORTAL's second day is its first known net assets: its change since then is nothing
    second = [r for r in expected if r["account_id"] == PORTAL.id][1]
    assert second["net_assets_change_since_first"] == 0


def test_no_account_on_both_dates_gives_no_change_and_says_why(tmp_path: Path) -> None:
    d1, d2 = date(2026, 3, 2), date(2026, 3, 3)
    path = write_days(tmp_path, {d1: (STANDARD,), d2: (PRODUCT21,)}, (STANDARD, PRODUCT21))
    with duckdb.connect(str(path), read_only=True) as con:
        [row] = rows(con, f"FROM consolidated_net_assets WHERE snapshot_date = DATE '{d2}'")
    assert row["net_assets_change"] is None and row["net_assets_change_accounts"] == 0
    assert row["net_assets_change_note"] == (
        f"no account has net assets on both this date and {d1}: no change is computed"
    )
    assert not row["is_complete"] and row["missing_accounts"] == [STANDARD.id]


def test_accounts_are_expected_from_their_first_snapshot_and_while_configured(
    tmp_path: Path,
) -> None:
    """An account added later is not missing before its first snapshot; one no longer
    configured is not missing after its last; a configured one is missing until it is back."""
    days = [date(2026, 3, 2) + timedelta(days=n) for n in range(4)]
    plan = {
        days[0]: (STANDARD, PORTAL),
        days[1]: (STANDARD, PORTAL),  # PORTAL's last snapshot: it is no longer configured
        days[2]: (STANDARD, PRODUCT21),  # PRODUCT21 added: its first snapshot
        days[3]: (PRODUCT21,),  # STANDARD, configured, is missing
    }
    path = write_days(tmp_path, plan, (STANDARD, PRODUCT21))
    with duckdb.connect(str(path), read_only=True) as con:
        found = [
            (r["accounts_expected"], r["is_complete"], r["missing_accounts"])
            for r in rows(con, "FROM consolidated_net_assets ORDER BY snapshot_date")
        ]
    # without a calendar (capture_accounts empty), every account seen counts as configured
    bare = warehouse.build(tmp_path, path=tmp_path / "bare.duckdb")
    with duckdb.connect(str(bare), read_only=True) as con:
        assumed = [
            r["missing_accounts"]
            for r in rows(con, "FROM consolidated_net_assets ORDER BY snapshot_date")
        ]
    assert found == [(2, True, []), (2, True, []), (2, True, []), (2, False, [STANDARD.id])]
    assert assumed == [[], [], [PORTAL.id], [STANDARD.id, PORTAL.id]]


def test_net_assets_monthly_per_account_and_consolidated_like_for_like(tmp_path: Path) -> None:
    jan = [date(2026, 1, 29), date(2026, 1, 30)]
    feb = [date(2026, 2, 26), date(2026, 2, 27)]
    plan = {
        jan[0]: (STANDARD, PRODUCT21),
        jan[1]: (STANDARD, PRODUCT21),
        feb[0]: (STANDARD, PRODUCT21),
        feb[1]: (STANDARD,),  # PRODUCT21 missing on February's last day only
        date(2026, 3, 2): (STANDARD,),  # PRODUCT21 missing all March
    }
    path = write_days(tmp_path, plan, (STANDARD, PRODUCT21))
    with duckdb.connect(str(path), read_only=True) as con:
        monthly = {(r["month"], r["account_id"]): r for r in rows(con, "FROM net_assets_monthly")}
        per = {
            (r["snapshot_date"], r["account_id"]): r["net_assets"]
            for r in rows(con, "FROM net_asset_history")
        }
    jan1, feb1, mar1 = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
    # an account's month-end: its own last snapshot of the month
    assert monthly[feb1, PRODUCT21.id]["snapshot_date"] == feb[0]
    assert monthly[feb1, PRODUCT21.id]["net_assets"] == per[feb[0], PRODUCT21.id]
    assert monthly[feb1, STANDARD.id]["snapshots"] == 2
    assert monthly[feb1, STANDARD.id]["net_assets_change"] == (
        per[feb[1], STANDARD.id] - per[jan[1], STANDARD.id]
    )
    # consolidated: marked by is_consolidated, account_id NULL
    jan_all, feb_all, mar_all = (monthly[m, None] for m in (jan1, feb1, mar1))
    assert all(r["is_consolidated"] for r in (jan_all, feb_all, mar_all))
    assert not monthly[jan1, STANDARD.id]["is_consolidated"]
    assert feb_all["is_complete"] and feb_all["snapshots"] == 2
    assert feb_all["net_assets"] == per[feb[1], STANDARD.id] + per[feb[0], PRODUCT21.id]
    assert feb_all["net_assets_change"] == feb_all["net_assets"] - jan_all["net_assets"]
    # March leaves PRODUCT21 out: incomplete, and the change is STANDARD's alone
    assert not mar_all["is_complete"] and mar_all["missing_accounts"] == [PRODUCT21.id]
    assert mar_all["net_assets_change"] == monthly[mar1, STANDARD.id]["net_assets_change"]
    assert mar_all["net_assets_change_accounts"] == 1
    assert jan_all["net_assets_change"] is None and jan_all["previous_month"] is None


def test_as_of_macros_give_each_accounts_newest_snapshot_on_or_before_a_date(
    tmp_path: Path,
) -> None:
    d1, d2, d3 = date(2026, 3, 2), date(2026, 3, 5), date(2026, 3, 9)
    plan = {d1: (STANDARD, PRODUCT21), d2: (STANDARD,), d3: (STANDARD, PRODUCT21)}
    path = write_days(tmp_path, plan, (STANDARD, PRODUCT21))
    with duckdb.connect(str(path), read_only=True) as con:
        net = {r["account_id"]: r for r in rows(con, "FROM net_assets_as_of(DATE '2026-03-08')")}
        history = {
            (r["snapshot_date"], r["account_id"]): r for r in rows(con, "FROM net_asset_history")
        }
        allocation = rows(
            con,
            "SELECT account_id, snapshot_date, category_seq, market_value, as_of, days_old "
            "FROM allocation_as_of('2026-03-08') ORDER BY account_id, category_seq",
        )
        before = rows(con, "FROM net_assets_as_of(DATE '2026-03-01')")
        macros = con.execute(
            "SELECT function_name, comment FROM duckdb_functions() "
            "WHERE function_type = 'table_macro' AND NOT internal ORDER BY 1"
        ).fetchall()
    assert {a: (r["snapshot_date"], r["days_old"]) for a, r in net.items()} == {
        STANDARD.id: (d2, 3),
        PRODUCT21.id: (d1, 6),
    }
    for account_id, r in net.items():
        expected = history[r["snapshot_date"], account_id]
        assert {k: r[k] for k in expected} == expected
        assert r["as_of"] == date(2026, 3, 8)
    assert {(r["account_id"], r["snapshot_date"]) for r in allocation} == {
        (STANDARD.id, d2),
        (PRODUCT21.id, d1),
    }
    assert len(allocation) == 20 + 17
    assert before == []
    assert [name for name, _ in macros] == ["allocation_as_of", "net_assets_as_of"]
    assert all(comment for _, comment in macros)


def test_a_macro_column_without_a_glossary_entry_stops_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.warehouse import glossary

    monkeypatch.delitem(glossary.GLOSSARY, "days_old")
    with pytest.raises(ValueError, match=r"net_assets_as_of .*days_old"):
        write_days(tmp_path, {date(2026, 3, 2): (STANDARD,)}, (STANDARD,))


def test_a_run_with_an_account_failing_shows_the_day_as_incomplete_in_views_and_report(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Dagster: a day on which one account fails is written for the others, marked
    incomplete (no consolidated loss), and the next day's report marks it on its chart."""
    today = today_in_seoul()
    d1, d2 = today - timedelta(days=2), today - timedelta(days=1)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(d1, instance).success
    monkeypatch.setenv("KIS_SIM_FAULTS", "12345678-21:business_error")
    failed = materialize(d2, instance)
    assert not failed.success  # fails at the end, naming the account
    [event] = failed.asset_materializations_for_node("warehouse_views")
    assert event.metadata["missing_accounts"].value == ["12345678-21"]
    preview = event.metadata["allocation"].value
    assert "1 of 2 accounts (missing 12345678-21: the totals leave them out)" in preview
    monkeypatch.delenv("KIS_SIM_FAULTS")
    assert materialize(today, instance).success
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        days = {r["snapshot_date"]: r for r in rows(con, "FROM consolidated_net_assets")}
        standard = {
            r["snapshot_date"]: r["net_assets_change"]
            for r in rows(con, "FROM net_asset_history WHERE account_id = '12345678-01'")
        }
    assert [days[d]["is_complete"] for d in (d1, d2, today)] == [True, False, True]
    assert days[d2]["missing_accounts"] == ["12345678-21"]
    assert days[d2]["net_assets_change"] == standard[d2]
    assert days[today]["net_assets_change"] == standard[today]
    page = (isolated_env / "reports" / f"portfolio-{today}.html").read_text()
    # marked on the total's panel (in both charts), and no point of the total drawn that day
    assert re.search(f'class="incomplete"[^>]*data-series="total" data-date="{d2}"', page)
    assert f'data-series="total" data-date="{d2}" data-label' not in page
    assert f'data-series="total" data-date="{d1}" data-label' in page


def test_the_readme_examples_of_as_of_and_month_ends_run_as_written(tmp_path: Path) -> None:
    feb, mar2, mar30, apr = date(2026, 2, 27), date(2026, 3, 2), date(2026, 3, 30), date(2026, 4, 1)
    plan = {feb: (STANDARD, PRODUCT21), mar2: (STANDARD, PRODUCT21), mar30: (STANDARD,)}
    path = write_days(tmp_path, {**plan, apr: (STANDARD, PRODUCT21)}, (STANDARD, PRODUCT21))
    with duckdb.connect(str(path), read_only=True) as con:
        net_sql, allocation_sql = statements("as-of")
        as_of = rows(con, net_sql)
        allocation = rows(con, allocation_sql)
        [monthly_sql] = statements("monthly")
        monthly = {r["month"]: r for r in rows(con, monthly_sql)}
        net = {
            (r["snapshot_date"], r["account_id"]): r["net_assets"]
            for r in rows(con, "FROM net_asset_history")
        }
        classes = {
            (r["account_id"], r["asset_class"]): r["market_value"]
            for r in rows(
                con,
                "SELECT account_id, asset_class, sum(market_value) AS market_value "
                "FROM allocation_history WHERE (account_id, snapshot_date) IN "
                f"(('{STANDARD.id}', DATE '{mar30}'), ('{PRODUCT21.id}', DATE '{mar2}')) "
                "GROUP BY ALL",
            )
        }
    assert [(r["account_id"], r["snapshot_date"], r["days_old"]) for r in as_of] == [
        (STANDARD.id, mar30, 1),
        (PRODUCT21.id, mar2, 29),
    ]
    assert [r["net_assets"] for r in as_of] == [net[mar30, STANDARD.id], net[mar2, PRODUCT21.id]]
    assert {(r["account_id"], r["asset_class"]): r["market_value"] for r in allocation} == classes
    march = monthly[date(2026, 3, 1)]
    assert (march["snapshot_date"], march["snapshots"], march["is_complete"]) == (mar30, 2, True)
    assert march["net_assets"] == net[mar30, STANDARD.id] + net[mar2, PRODUCT21.id]
    february = monthly[date(2026, 2, 1)]
    assert march["net_assets_change"] == march["net_assets"] - february["net_assets"]
    assert list(monthly) == [date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)]
