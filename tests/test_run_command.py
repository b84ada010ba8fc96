"""`make run` (pipelines/commands/run.py) says what it did: the accounts landed and failed, each
account's net assets and the total as the views hold them (from what the simulator served),
warnings, the report; a day that is not a capture day, or before the history, in one line."""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pipelines.commands import run
from pipelines.ingest.capture import CaptureSettings, parse_days
from pipelines.ingest.fetch import today_in_seoul
from pipelines.kis.protocol import Account
from pipelines.simulator.portfolio import balance_body
from tests.runs import Ran, run_command

ACCOUNTS = (Account("12345678", "01"), Account("12345678", "21"))
#: Targets no simulated portfolio meets: every targeted class is outside its band.
TARGETS = """
[asset_class.equity]
target_pct = 1
tolerance_pct = 0.5

[asset_class.cash]
target_pct = 99
tolerance_pct = 0.5
"""


def make_run(tmp_path: Path, *args: str, **extra: str) -> Ran:
    env = {
        **os.environ,
        "KIS_ACCOUNTS": ",".join(a.id for a in ACCOUNTS),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        **extra,
    }
    return run_command([sys.executable, "-m", "pipelines.commands.run", *args], env, timeout=240)


def served_net_assets(account: Account, day: date) -> Decimal:
    """What the simulator serves as the account's net assets: the 합계 row's real_nass_amt."""
    total = balance_body(account, day)["output1"][-1]
    return Decimal(total["real_nass_amt"])


def won(amount: Decimal) -> str:
    return f"{amount:,.0f} KRW"


def test_the_summary_holds_what_landed_and_one_line_per_failure(
    tmp_path: Path, isolated_env: Path
) -> None:
    today = today_in_seoul()
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS)
    ran = make_run(tmp_path, KIS_TARGETS_FILE=str(targets))
    assert ran.returncode == 0, ran.output[-3000:]
    lines = ran.output.splitlines()
    ids = ", ".join(a.id for a in ACCOUNTS)
    assert f"{today}: landed 2 account(s) ({ids}), withheld 0, failed 0" in lines
    assert (
        f"simulated: balances from the KIS simulator, not a real account ({isolated_env})" in lines
    )
    served = {account.id: served_net_assets(account, today) for account in ACCOUNTS}
    for account, amount in served.items():
        assert f"  {account}  {won(amount)}" in lines
    assert f"  together     {won(sum(served.values(), Decimal(0)))}" in lines
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        views = dict(
            con.sql(
                "SELECT account_id, net_assets FROM net_asset_history WHERE snapshot_date = "
                f"DATE '{today}'"
            ).fetchall()
        )
        outside = [
            row[0]
            for row in con.sql(
                f"SELECT asset_class FROM allocation_drift WHERE snapshot_date = DATE '{today}' "
                "AND NOT within_band ORDER BY asset_class"
            ).fetchall()
        ]
    assert views == served  # what the summary says is what the views hold
    warnings = [line for line in lines if line.startswith("warning: outside its target band")]
    assert sorted(w.split(": ")[2] for w in warnings) == outside == ["cash", "equity"]
    report = isolated_env / "reports" / f"portfolio-{today}.html"
    assert f"report: {report}" in lines and report.exists()
    assert "Traceback" not in ran.output and "RUN_START" not in ran.output  # Dagster's log: a file
    [log] = (tmp_path / "dagster" / "make-run").iterdir()
    assert "RUN_SUCCESS" in log.read_text()

    # one account refused: one line naming it and what to check; the other lands; exit 1
    ran = make_run(tmp_path, KIS_SIM_FAULTS=f"{ACCOUNTS[1].id}:bad_account")
    assert ran.returncode == 1, ran.output[-3000:]
    lines = ran.output.splitlines()
    assert f"{today}: landed 1 account(s) ({ACCOUNTS[0].id}), withheld 0, failed 1" in lines
    [failed] = [line for line in lines if line.startswith("FAILED")]
    assert ACCOUNTS[1].id in failed and "msg_cd='OPSQ2000'" in failed
    assert "check the account's CANO-ACNT_PRDT_CD in KIS_ACCOUNTS" in failed
    # its answer of the first run is still the day's: said so, not counted as landed
    assert f"  {ACCOUNTS[1].id}  {won(served[ACCOUNTS[1].id])}  (landed before this run)" in lines
    assert "Traceback" not in ran.output


def test_a_day_that_is_not_a_capture_day_is_said_in_one_line_and_exits_0(
    tmp_path: Path,
) -> None:
    today = today_in_seoul()
    other = (today + timedelta(days=1)).strftime("%a").lower()
    ran = make_run(tmp_path, KIS_CAPTURE_DAYS=other)
    assert ran.returncode == 0, ran.output
    assert ran.output.splitlines() == [
        f"{today} ({today:%a}): not a capture day (KIS_CAPTURE_DAYS={other}), nothing to fetch; "
        "`make run RUN_ARGS=--anyway` captures it anyway"
    ]
    assert not (tmp_path / "dagster" / "make-run").exists()  # nothing launched


def test_anyway_captures_a_non_capture_day_and_keeps_the_configured_capture_days(
    tmp_path: Path, isolated_env: Path
) -> None:
    today = today_in_seoul()
    other = (today + timedelta(days=1)).strftime("%a").lower()
    ran = make_run(tmp_path, "--anyway", KIS_CAPTURE_DAYS=other)
    assert ran.returncode == 0, ran.output[-3000:]
    assert f"{today}: landed 2 account(s)" in ran.output
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        row = con.sql("SELECT weekdays FROM capture_settings").fetchone()
    assert row is not None and row[0] == [(today.weekday() + 1) % 7 + 1]  # ISO: tomorrow's


def test_a_range_before_the_history_is_said_in_one_line_not_a_traceback(tmp_path: Path) -> None:
    today = today_in_seoul()
    first, last = today - timedelta(days=30), today - timedelta(days=26)
    ran = make_run(tmp_path, f"{first}...{last}", KIS_HISTORY_START=str(today))
    assert ran.returncode == 0, ran.output
    assert ran.output.splitlines() == [
        f"5 days from {first} to {last}: before the history's first day {today} "
        "(KIS_HISTORY_START, else the first day with a landed answer): not a partition"
    ]


def test_a_range_runs_its_capture_days_and_names_the_others() -> None:
    monday = date(2026, 11, 2)
    plan = run.plan(
        monday,
        monday + timedelta(days=6),
        settings=CaptureSettings(days=parse_days("mon-fri")),
        history_start=date(2026, 1, 1),
        today=date(2026, 12, 7),
    )
    assert plan.days == [monday + timedelta(days=n) for n in range(5)]
    assert plan.partition_args == ["--partition-range", "2026-11-02...2026-11-06"]
    [skipped] = plan.skipped
    assert skipped.startswith("2026-11-07 (Sat), 2026-11-08 (Sun): not a capture day")


@pytest.mark.parametrize("text", ["2026-13-01", "2026-11-06...2026-11-02", "yesterday"])
def test_days_that_cannot_be_a_run_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(run.DaysError) as caught:
        run.parse_days(text, date(2026, 12, 7))
    assert "\n" not in str(caught.value) and text in str(caught.value)
