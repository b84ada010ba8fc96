"""The capture window's plain logic: parsing, capture days, due attempts, missing accounts,
the partitions built from it and the missed_captures view."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from assets.partitions import build_partitions
from pipelines.errors import CaptureSpecError
from pipelines.ingest import capture
from pipelines.ingest.capture import (
    CaptureCalendar,
    CaptureCursor,
    CaptureSettings,
    CaptureWindow,
    decide,
)
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import SEOUL
from pipelines.settings import Settings, SettingsError
from pipelines.warehouse import warehouse

WEDNESDAY = date(2026, 11, 25)
FRIDAY = date(2026, 11, 27)
SATURDAY = date(2026, 11, 28)
MONDAY = date(2026, 11, 30)
ACCOUNTS = ("12345678-01", "12345678-21")
DEFAULT = CaptureSettings()  # 18:30-23:30, every 20 minutes, mon-fri


def at(day: date, hhmm: str, seconds: int = 0) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, seconds, tzinfo=SEOUL)


# -- parsing ----------------------------------------------------------------------------------


def test_window_parses_times_within_one_day() -> None:
    assert capture.parse_window("18:30-23:30") == CaptureWindow(18 * 60 + 30, 23 * 60 + 30)
    assert capture.parse_window(" 9:05 - 24:00 ") == CaptureWindow(9 * 60 + 5, 24 * 60)
    assert str(capture.parse_window("00:00-24:00")) == "00:00-24:00"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("18:30", "expected HH:MM-HH:MM"),
        ("18.30-23.30", "expected HH:MM-HH:MM"),
        ("18:3-23:30", "expected HH:MM-HH:MM"),
        ("18:30-25:00", "25:00 is not a time of day"),
        ("18:60-23:00", "18:60 is not a time of day"),
        ("23:30-18:30", "must start before it ends"),
        ("23:00-01:00", "within one day"),
        ("24:00-24:00", "must start before it ends"),
    ],
)
def test_malformed_windows_say_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(CaptureSpecError, match=says):
        capture.parse_window(text)


@pytest.mark.parametrize(
    ("text", "days", "formatted", "cron"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}, "mon-fri", "1-5"),
        ("mon-sun", set(range(7)), "mon-sun", "*"),
        ("mon-wed,fri", {0, 1, 2, 4}, "mon-wed,fri", "1-3,5"),
        ("Sat, SUN", {5, 6}, "sat-sun", "0,6"),
        ("fri-mon", {4, 5, 6, 0}, "mon,fri-sun", "0-1,5-6"),
        ("tue", {1}, "tue", "2"),
    ],
)
def test_days_are_names_and_ranges(text: str, days: set[int], formatted: str, cron: str) -> None:
    parsed = capture.parse_days(text)
    assert parsed == frozenset(days)
    assert capture.format_days(parsed) == formatted
    assert capture.cron_weekdays(parsed) == cron


@pytest.mark.parametrize("text", ["", "weekdays", "mon-fry", "monday", "mon-", "1-5"])
def test_malformed_days_list_the_names(text: str) -> None:
    with pytest.raises(CaptureSpecError, match="mon, tue, wed, thu, fri, sat, sun"):
        capture.parse_days(text)


def test_every_is_minutes_with_decimals() -> None:
    assert capture.parse_every("20") == timedelta(minutes=20)
    assert capture.parse_every("0.25") == timedelta(seconds=15)
    for bad in ("", "0", "-5", "0.05", "nan", "inf", "twenty"):
        with pytest.raises(CaptureSpecError, match="minutes between attempts"):
            capture.parse_every(bad)


def test_settings_read_the_capture_variables_and_name_them_in_errors() -> None:
    settings = Settings.from_env(
        {
            "KIS_CAPTURE_WINDOW": "19:00-22:00",
            "KIS_CAPTURE_EVERY": "0.5",
            "KIS_CAPTURE_DAYS": "mon-sun",
            "KIS_HISTORY_START": "2025-03-04",
        }
    )
    assert settings.capture == CaptureSettings(
        CaptureWindow(19 * 60, 22 * 60),
        timedelta(seconds=30),
        frozenset(range(7)),
        date(2025, 3, 4),
    )
    assert Settings.from_env({}).capture == DEFAULT
    assert DEFAULT.describe() == "18:30-23:30 Asia/Seoul on mon-fri, every 20 minutes"
    for name, value in [
        ("KIS_CAPTURE_WINDOW", "evening"),
        ("KIS_CAPTURE_EVERY", "often"),
        ("KIS_CAPTURE_DAYS", "weekdays"),
        ("KIS_HISTORY_START", "2025-02-30"),
    ]:
        with pytest.raises(SettingsError, match=f"^{name}='{value}': "):
            Settings.from_env({name: value})


# -- the calendar -----------------------------------------------------------------------------


def test_the_window_holds_its_start_not_its_end_and_only_on_capture_days() -> None:
    assert not DEFAULT.in_window(at(WEDNESDAY, "18:29", 59))
    assert DEFAULT.in_window(at(WEDNESDAY, "18:30"))
    assert DEFAULT.in_window(at(WEDNESDAY, "23:29", 59))
    assert not DEFAULT.in_window(at(WEDNESDAY, "23:30"))
    assert not DEFAULT.in_window(at(SATURDAY, "19:00"))
    # the instant's zone does not matter: 10:00 UTC is 19:00 in Seoul
    assert DEFAULT.in_window(datetime.fromisoformat("2026-11-25T10:00:00+00:00"))


def test_next_window_and_last_closed_day() -> None:
    assert DEFAULT.next_window(at(WEDNESDAY, "09:00")) == at(WEDNESDAY, "18:30")
    assert DEFAULT.next_window(at(WEDNESDAY, "19:00")) == at(date(2026, 11, 26), "18:30")
    assert DEFAULT.next_window(at(FRIDAY, "23:45")) == at(MONDAY, "18:30")
    assert DEFAULT.last_closed_day(at(WEDNESDAY, "23:30")) == WEDNESDAY
    assert DEFAULT.last_closed_day(at(WEDNESDAY, "23:29")) == date(2026, 11, 24)
    assert DEFAULT.last_closed_day(at(MONDAY, "08:00")) == FRIDAY
    assert DEFAULT.capture_days(FRIDAY, MONDAY) == [FRIDAY, MONDAY]


def test_attempts_are_due_at_the_start_then_every_interval() -> None:
    assert DEFAULT.attempt_number(at(WEDNESDAY, "18:30")) == 1
    assert DEFAULT.attempt_number(at(WEDNESDAY, "18:49", 59)) == 1
    assert DEFAULT.attempt_number(at(WEDNESDAY, "18:50")) == 2
    assert DEFAULT.attempt_number(at(WEDNESDAY, "23:29")) == 15
    assert DEFAULT.attempt_due_at(WEDNESDAY, 3) == at(WEDNESDAY, "19:10")


# -- the decision -----------------------------------------------------------------------------


def decide_at(
    now: datetime,
    landed: dict[date, set[str]] | None = None,
    *,
    in_flight: bool = False,
    cursor: CaptureCursor | None = None,
    settings: CaptureSettings = DEFAULT,
    first_day: date | None = None,
) -> capture.Decision:
    return decide(
        settings,
        now,
        accounts=ACCOUNTS,
        landed=lambda day: (landed or {}).get(day, set()),
        run_in_flight=in_flight,
        cursor=cursor,
        first_day=first_day,
    )


def test_the_first_attempt_is_at_the_window_start_for_every_account() -> None:
    decision = decide_at(at(WEDNESDAY, "18:30", 4))
    assert decision.attempt == capture.Attempt(WEDNESDAY, 1, at(WEDNESDAY, "18:30"), ACCOUNTS)
    assert decision.attempt.run_key == "capture-2026-11-25-attempt-1"
    assert decision.cursor == CaptureCursor(WEDNESDAY, 1)
    assert "fetching 12345678-01, 12345678-21" in decision.reason


def test_later_attempts_fetch_only_the_missing_accounts_once_per_interval() -> None:
    landed = {WEDNESDAY: {"12345678-01"}}
    cursor = CaptureCursor(WEDNESDAY, 1)
    same = decide_at(at(WEDNESDAY, "18:45"), landed, cursor=cursor)
    assert same.attempt is None and same.cursor == cursor
    assert same.reason == (
        "Attempt 1 for 2026-11-25 has run without 12345678-21; next attempt at 18:50:00."
    )
    second = decide_at(at(WEDNESDAY, "18:50", 30), landed, cursor=cursor)
    assert second.attempt is not None
    assert second.attempt.accounts == ("12345678-21",)
    assert second.attempt.run_key == "capture-2026-11-25-attempt-2"
    assert second.cursor == CaptureCursor(WEDNESDAY, 2)


def test_a_sensor_started_late_makes_its_first_attempt_at_once() -> None:
    decision = decide_at(at(WEDNESDAY, "21:15"), cursor=CaptureCursor(date(2026, 11, 24), 15))
    assert decision.attempt is not None and decision.attempt.number == 9


def test_no_attempt_beside_a_run_still_queued_or_running() -> None:
    decision = decide_at(at(WEDNESDAY, "19:30"), in_flight=True)
    assert decision.attempt is None
    assert "still queued or running" in decision.reason and "12345678-01" in decision.reason


def test_once_every_account_is_in_nothing_more_is_requested_that_day() -> None:
    landed = {WEDNESDAY: set(ACCOUNTS)}
    for now in (at(WEDNESDAY, "18:30"), at(WEDNESDAY, "19:10"), at(WEDNESDAY, "23:29")):
        decision = decide_at(now, landed, cursor=CaptureCursor(WEDNESDAY, 1))
        assert decision.attempt is None
        assert decision.reason == (
            "All 2 accounts have today's snapshot (2026-11-25): nothing more to fetch today. "
            "Next window: Thu 2026-11-26 18:30 Asia/Seoul."
        )


def test_the_last_attempt_says_so() -> None:
    decision = decide_at(at(WEDNESDAY, "23:20"), cursor=CaptureCursor(WEDNESDAY, 15))
    assert decision.attempt is None
    assert "that was the last one: the window closes at 23:30" in decision.reason


def test_outside_the_window_the_reason_names_the_next_window_and_the_last_day() -> None:
    landed = {date(2026, 11, 24): set(ACCOUNTS), WEDNESDAY: {"12345678-01"}}
    before = decide_at(at(WEDNESDAY, "09:00"), landed)
    assert before.attempt is None
    assert before.reason == (
        "Today's capture window (18:30-23:30 Asia/Seoul) has not opened yet. Next window: "
        "today 18:30 Asia/Seoul. Last capture day 2026-11-24: all 2 accounts captured."
    )
    after = decide_at(at(WEDNESDAY, "23:30"), landed)
    assert after.reason.startswith(
        "Today's capture window (18:30-23:30 Asia/Seoul) has closed. Next window: "
        "Thu 2026-11-26 18:30 Asia/Seoul. MISSED on 2026-11-25: 12345678-21 had no snapshot"
    )
    assert "missed_captures" in after.reason


def test_a_day_that_is_not_a_capture_day_is_skipped_with_the_setting_named() -> None:
    landed = {FRIDAY: set(ACCOUNTS)}
    decision = decide_at(at(SATURDAY, "19:00"), landed)
    assert decision.attempt is None
    assert decision.reason == (
        "2026-11-28 (Saturday) is not a capture day (KIS_CAPTURE_DAYS=mon-fri). Next window: "
        "Mon 2026-11-30 18:30 Asia/Seoul. Last capture day 2026-11-27: all 2 accounts captured."
    )
    every_day = CaptureSettings(days=capture.parse_days("mon-sun"))
    assert decide_at(at(SATURDAY, "19:00"), settings=every_day).attempt is not None


def test_days_before_the_history_are_not_reported_missed() -> None:
    decision = decide_at(at(WEDNESDAY, "09:00"), first_day=WEDNESDAY)
    assert "MISSED" not in decision.reason and "Last capture day" not in decision.reason


def test_nothing_is_captured_before_the_history_starts() -> None:
    decision = decide_at(at(WEDNESDAY, "19:00"), first_day=FRIDAY)
    assert decision.attempt is None
    assert decision.reason.startswith("The history starts on 2026-11-27 (KIS_HISTORY_START)")


def test_the_cursor_survives_json_and_garbage_is_no_cursor() -> None:
    cursor = CaptureCursor(WEDNESDAY, 7)
    assert CaptureCursor.from_json(cursor.to_json()) == cursor
    for text in (None, "", "12", "{}", '{"day": "x", "attempt": 1}', "[1]"):
        assert CaptureCursor.from_json(text) is None


# -- the data root ----------------------------------------------------------------------------


def land(root: Path, day: date, account: str) -> None:
    folder = RawLanding(root).day_dir(day) / account
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "20261125T093000000000Z.json").write_text("{}")


def test_landed_accounts_and_the_first_landed_day(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)
    assert capture.first_landed_day(landing) is None
    (landing.day_dir(date(2024, 1, 2)) / "12345678-01").mkdir(parents=True)  # no file: not landed
    land(tmp_path, date(2024, 3, 5), "12345678-21")
    land(tmp_path, date(2025, 1, 6), "12345678-01")
    land(tmp_path, date(2025, 1, 6), "12345678-21")
    assert capture.first_landed_day(landing) == date(2024, 3, 5)
    assert capture.landed_accounts(landing, date(2025, 1, 6)) == set(ACCOUNTS)
    assert capture.missing_accounts(ACCOUNTS, {"12345678-21"}) == ["12345678-01"]
    today = date(2026, 11, 26)
    assert capture.history_start(DEFAULT, landing, today) == date(2024, 3, 5)
    pinned = CaptureSettings(history_start=date(2025, 1, 1))
    assert capture.history_start(pinned, landing, today) == date(2025, 1, 1)
    assert capture.history_start(DEFAULT, RawLanding(tmp_path / "empty"), today) == today


# -- the partitions ---------------------------------------------------------------------------


def test_partitions_are_the_capture_days_from_the_first_day() -> None:
    partitions = build_partitions(date(2026, 11, 19), capture.parse_days("mon-fri"))
    keys = partitions.get_partition_keys(current_time=at(MONDAY, "00:00", 1))
    assert keys == [
        "2026-11-19", "2026-11-20", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26",
        "2026-11-27", "2026-11-30",
    ]  # fmt: skip
    # Friday's window runs to Monday, so on Saturday the last partition is Friday's
    assert partitions.get_partition_keys(current_time=at(SATURDAY, "19:00"))[-1] == "2026-11-27"
    assert partitions.time_window_for_partition_key("2026-11-27").end == at(MONDAY, "00:00")
    assert partitions.has_partition_key("2026-11-20")  # a Friday (before the real today)
    assert not partitions.has_partition_key("2026-11-21")  # its Saturday
    # a start on a day that is no capture day begins with the next capture day
    weekend_start = build_partitions(SATURDAY, capture.parse_days("mon-fri"))
    assert weekend_start.get_partition_keys(current_time=at(MONDAY, "12:00")) == ["2026-11-30"]


def test_todays_partition_exists_from_midnight_on_a_capture_day() -> None:
    partitions = build_partitions(date(2026, 11, 2), capture.parse_days("mon-wed,fri"))
    assert partitions.get_partition_keys(current_time=at(WEDNESDAY, "00:00", 1))[-1] == (
        "2026-11-25"
    )
    assert partitions.get_partition_keys(current_time=at(date(2026, 11, 26), "23:59"))[-1] == (
        "2026-11-25"
    )  # Thursday is not a capture day
    every_day = build_partitions(date(2026, 11, 2), capture.parse_days("mon-sun"))
    assert every_day.get_partition_keys(current_time=at(SATURDAY, "00:00", 1))[-1] == "2026-11-28"
    assert every_day.cron_schedule == "0 0 * * *" and every_day.timezone == "Asia/Seoul"


PARTITIONS_AT_IMPORT = """
import json
from assets.partitions import daily_partitions as p
print(json.dumps([p.get_first_partition_key(), p.cron_schedule]))
"""


def test_the_partitions_follow_the_environment_and_the_data_root(tmp_path: Path) -> None:
    """Built at import: the first landed day, unless KIS_HISTORY_START says otherwise."""
    land(tmp_path / "data", date(2025, 6, 2), "12345678-01")
    land(tmp_path / "data", date(2025, 5, 27), "12345678-01")
    base = {"PATH": "/usr/bin:/bin", "KIS_DATA_ROOT": str(tmp_path / "data")}

    def first_and_cron(**env: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", PARTITIONS_AT_IMPORT],
            cwd=Path(__file__).resolve().parent.parent,
            env={**base, **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        return json.loads(out.splitlines()[-1])

    assert first_and_cron() == ["2025-05-27", "0 0 * * 1-5"]
    assert first_and_cron(KIS_HISTORY_START="2025-01-01", KIS_CAPTURE_DAYS="mon,thu") == [
        "2025-01-02",  # the first Monday or Thursday from 2025-01-01 (a Wednesday)
        "0 0 * * 1,4",
    ]


# -- the missed_captures view -----------------------------------------------------------------


def write_day(data_root: Path, day: date, accounts: tuple[str, ...]) -> None:
    from pipelines.kis.protocol import Account
    from pipelines.lake.tables import ParquetTables
    from pipelines.tidy import flatten
    from tests.test_storage import snapshot

    snapshots = [snapshot(Account.parse(account), day) for account in accounts]
    tables = ParquetTables(data_root)
    tables.write("asset_categories", day, flatten.asset_categories(snapshots))
    tables.write("account_summary", day, flatten.account_summary(snapshots))


def missed(path: Path, before: date) -> list[tuple[str, date]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql(
            "SELECT account_id, capture_day FROM missed_captures "
            f"WHERE capture_day < DATE '{before.isoformat()}' ORDER BY ALL"
        ).fetchall()


def test_missed_captures_lists_closed_capture_days_without_a_snapshot(tmp_path: Path) -> None:
    from pipelines.ingest.fetch import today_in_seoul

    today = today_in_seoul()
    first = today - timedelta(days=14)
    days = [first + timedelta(days=n) for n in range(14)]  # up to yesterday
    everyone, one = days[::2], days[1::2][:-2]  # the last two odd days: nobody
    for day in everyone:
        write_day(tmp_path, day, ACCOUNTS)
    for day in one:
        write_day(tmp_path, day, ACCOUNTS[:1])
    settings = CaptureSettings(days=capture.parse_days("mon-wed,fri"))
    capture_days = settings.capture_days(first, today - timedelta(days=1))
    newcomer = "55556666-01"  # configured, never captured: missed since the history's start

    path = warehouse.build(
        tmp_path, capture=CaptureCalendar(settings, first, (*ACCOUNTS, newcomer))
    )
    assert missed(path, today) == sorted(
        [("12345678-01", d) for d in capture_days if d not in everyone + one]
        + [("12345678-21", d) for d in capture_days if d not in everyone]
        + [(newcomer, d) for d in capture_days]
    )
    # an account counts from its first snapshot when that is later than the history's start
    later = warehouse.build(
        tmp_path, capture=CaptureCalendar(settings, first - timedelta(days=30), ACCOUNTS)
    )
    assert {d for _, d in missed(later, today)} >= {d for d in capture_days if d not in everyone}
    assert min(d for _, d in missed(later, today)) >= first
    # no calendar (a warehouse built outside a run): the view is there, and empty
    assert missed(warehouse.build(tmp_path), today + timedelta(days=1)) == []


def test_today_is_missed_only_once_its_window_has_closed(tmp_path: Path) -> None:
    from pipelines.ingest.fetch import today_in_seoul

    today = today_in_seoul()
    every_day = capture.parse_days("mon-sun")
    closed = CaptureSettings(window=capture.parse_window("00:00-00:01"), days=every_day)
    still_open = CaptureSettings(window=capture.parse_window("00:00-24:00"), days=every_day)
    tomorrow = today + timedelta(days=1)
    for settings, expected in [(closed, [("12345678-01", today)]), (still_open, [])]:
        path = warehouse.build(tmp_path, capture=CaptureCalendar(settings, today, ACCOUNTS[:1]))
        assert missed(path, tomorrow) == expected


def test_the_cli_builds_today_and_rebuilds_landed_days_of_the_capture_days(
    isolated_env: Path, tmp_path: Path
) -> None:
    """`dagster asset materialize --partition D` with the partitions as a user gets them: the
    history starts at the first landed day, and only capture days are partitions."""
    from pipelines.ingest.fetch import today_in_seoul

    today = today_in_seoul()
    landed_day = today - timedelta(days=2)
    names = ",".join(capture.DAY_NAMES[d.weekday()] for d in (landed_day, today))
    home = tmp_path / "dagster_home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if k != "KIS_HISTORY_START"}
    base.update(DAGSTER_HOME=str(home), KIS_CAPTURE_DAYS=names, KIS_ENV="sim")

    def cli(day: date) -> subprocess.CompletedProcess[str]:
        command = ["asset", "materialize", "-m", "pipelines.definitions", "--select", "*"]
        return subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), *command, "--partition", str(day)],
            cwd=Path(__file__).resolve().parent.parent,
            env=base,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # a day landed earlier (the simulator answers as of a past day): the history starts there
    from assets.resources import KisResource

    report = KisResource().fetch_and_land(
        RawLanding(isolated_env), landed_day, sim_as_of=landed_day
    )
    assert len(report.landed) == 2 and not report.failures
    for day in (landed_day, today):  # a rebuild from raw, then today's live fetch
        completed = cli(day)
        assert completed.returncode == 0, completed.stderr[-3000:]
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        days = con.sql("SELECT DISTINCT snapshot_date FROM account_summary ORDER BY 1").fetchall()
        missed = con.sql("SELECT count(*) FROM missed_captures").fetchall()
    assert days == [(landed_day,), (today,)]
    assert missed == [(0,)]  # the day between is no capture day, and no other day was missed
