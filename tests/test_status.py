"""`make status`: each account's state for the last capture days, from the data root and a real
Dagster instance that holds a run in which KIS refused one account."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from pipelines.commands import status
from pipelines.ingest.capture import CaptureSettings, parse_window
from pipelines.ingest.fetch import today_in_seoul
from pipelines.kis.tokens import SEOUL
from pipelines.notify.messages import AccountProblem
from tests.runs import materialize


def test_status_names_what_was_captured_and_what_kis_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIS_SIM_FAULTS", "12345678-21:business_error")
    home = tmp_path / "dagster_home"
    home.mkdir()
    today = today_in_seoul()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert not materialize(today, instance).success
    assert status.main(["--dagster-home", str(home), "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert f"runs from the instance in {home}" in out
    assert f"\n{today} (" in out
    [captured] = [line for line in out.splitlines() if "12345678-01" in line]
    assert "captured " in captured and "Asia/Seoul" in captured
    [refused] = [line for line in out.splitlines() if "12345678-21" in line]
    assert "MISSING (no attempt); last error: OPSQ2002" in refused
    assert "(retrying will not fix this)" in refused and "next attempt" in refused


def test_without_an_instance_the_data_root_alone_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status.main(["--dagster-home", str(tmp_path / "none"), "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert "no Dagster instance" in out
    assert "12345678-01  MISSING (no attempt)" in out


def test_a_day_in_words() -> None:
    settings = CaptureSettings(window=parse_window("18:30-23:30"))  # mon-fri
    monday, friday = date(2026, 12, 7), date(2026, 12, 4)
    now = datetime(2026, 12, 7, 19, 5, tzinfo=SEOUL)
    runs = status.DayRuns(
        {"12345678-21": [1, 2]},
        {
            "12345678-21": AccountProblem("12345678-21", "HTTP 502 page", retryable=True),
            "12345678-01": AccountProblem("12345678-01", "18 rows: no layout", withheld=True),
        },
    )
    fetched = {"12345678-01": datetime(2026, 12, 7, 9, 40, 1, tzinfo=UTC)}
    accounts = ["12345678-01", "12345678-21"]
    lines = status.describe_day(monday, accounts, fetched, runs, settings, now)
    assert lines == [
        "2026-12-07 (Mon, today, window open)",
        "  12345678-01  captured 18:40:01 Asia/Seoul; WITHHELD: 18 rows: no layout",
        "  12345678-21  MISSING (attempts 1, 2); last error: HTTP 502 page; next attempt by "
        "19:10:00",
    ]
    past = status.describe_day(friday, accounts, {}, status.NO_RUNS, settings, now)
    assert past[1] == "  12345678-01  MISSING (no attempt); missed for good (view missed_captures)"
    assert status.status_days(settings, monday, date(2026, 12, 3), 5) == [
        monday,
        friday,
        date(2026, 12, 3),
    ]
