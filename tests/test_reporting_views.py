"""The reporting views, their column comments, targets and drift, and what the UI is shown."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.definitions import defs
from pipelines.ingest.fetch import today_in_seoul
from pipelines.warehouse import targets
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

    policy = (
        defs.resolve_assets_def("warehouse_views")
        .specs_by_key[dg.AssetKey("warehouse_views")]
        .freshness_policy
    )
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
