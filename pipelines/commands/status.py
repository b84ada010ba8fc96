"""`make status`: for today and the last capture days, each account's state (captured at,
missing, withheld and why, the next attempt), from the data root and the Dagster instance.

    python -m pipelines.commands.status [--days N] [--dagster-home DIR]

For people on SSH: what the UI shows, in a terminal. The instance is DAGSTER_HOME's (the
service's is `make service`'s --dagster-home, by default ~/.local/state/kis-balance-history/
dagster); without one, only what the data root says.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipelines.commands.service import default_dagster_home
from pipelines.commands.verify import run
from pipelines.ingest import capture
from pipelines.ingest.capture import CaptureSettings, seoul_day
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import SEOUL
from pipelines.notify.messages import AccountProblem
from pipelines.settings import Settings

DEFAULT_DAYS = 5


@dataclass(frozen=True)
class DayRuns:
    """What the instance knows of a day: the attempts that tried each account, each one's
    newest problem, whether a run is in flight."""

    attempts: dict[str, list[int]]
    problems: dict[str, AccountProblem]
    in_flight: bool = False


NO_RUNS = DayRuns({}, {})


def captured_at(landing: RawLanding, day: date) -> dict[str, datetime]:
    """Each account's newest landed answer: when it was fetched (its file's name, UTC)."""
    result = {}
    for account, files in landing.answers_by_account(day).items():
        name = files[0].name.removesuffix(".json")
        try:
            result[account] = datetime.strptime(name, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            continue
    return result


def next_attempt(settings: CaptureSettings, now: datetime) -> str:
    """When the capture sensor tries again today, in words."""
    today = seoul_day(now)
    if not settings.is_capture_day(today):
        return f"none today: next window {settings.next_window(now):%a %Y-%m-%d %H:%M}"
    if now < settings.window.opens(today):
        return f"at {settings.window.opens(today):%H:%M} (the window opens)"
    closes = settings.window.closes(today)
    if now >= closes:
        return f"none: the window closed at {closes:%H:%M}"
    due = settings.attempt_due_at(today, settings.attempt_number(now) + 1)
    return f"by {due:%H:%M:%S}" if due < closes else f"none: the window closes at {closes:%H:%M}"


def describe_day(
    day: date,
    accounts: Sequence[str],
    captured: dict[str, datetime],
    runs: DayRuns,
    settings: CaptureSettings,
    now: datetime,
) -> list[str]:
    today = seoul_day(now)
    closes = settings.window.closes(day)
    state = (
        "today, window open"
        if day == today and settings.in_window(now)
        else "today, window not yet open"
        if day == today and now < settings.window.opens(day)
        else f"window closed {closes:%H:%M}"
    )
    lines = [f"{day} ({day:%a}, {state}){': a run is in flight' if runs.in_flight else ''}"]
    width = max((len(a) for a in accounts), default=0)
    for account in accounts:
        problem = runs.problems.get(account)
        tried = runs.attempts.get(account, [])
        attempts = f"attempts {', '.join(map(str, tried))}" if tried else "no attempt"
        if account in captured:
            text = f"captured {captured[account].astimezone(SEOUL):%H:%M:%S} Asia/Seoul"
            if problem and problem.withheld:
                text += f"; WITHHELD: {problem.error}"
        else:
            text = f"MISSING ({attempts})"
            if problem:
                text += f"; last error: {problem.said}"
                if problem.permanent:
                    text += " (retrying will not fix this)"
            if day == today:
                text += f"; next attempt {next_attempt(settings, now)}"
            elif now >= closes:
                text += "; missed for good (view missed_captures)"
        lines.append(f"  {account:<{width}}  {' '.join(text.split())}")
    return lines


def status_days(settings: CaptureSettings, today: date, first: date, count: int) -> list[date]:
    """Today (if a capture day) and the capture days before it from the history's `first`
    day, newest first."""
    days = settings.capture_days(max(first, today - timedelta(days=7 * count + 7)), today)
    return list(reversed(days))[:count]


def instance_runs(home: Path) -> Callable[[date], DayRuns] | None:
    """A reader of the instance's runs per day, or None without an instance."""
    if not home.is_dir():
        return None
    import dagster as dg

    from assets.automation import IN_FLIGHT
    from assets.notifications import day_runs

    instance = dg.DagsterInstance.from_config(str(home))

    def read(day: date) -> DayRuns:
        attempts: dict[str, list[int]] = {}
        problems: dict[str, AccountProblem] = {}
        in_flight = False
        for outcome in day_runs(instance, day):
            in_flight = in_flight or outcome.status in IN_FLIGHT
            for account in outcome.tried:
                if outcome.attempt is not None:
                    attempts.setdefault(account, []).append(outcome.attempt)
            problems.update(outcome.problems)
        return DayRuns(attempts, problems, in_flight)

    return read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.commands.status", description=__doc__
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="capture days to show")
    parser.add_argument(
        "--dagster-home",
        type=Path,
        default=Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else None,
        help="the Dagster instance to read runs from (default: DAGSTER_HOME)",
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days: at least 1")

    def status(settings: Settings) -> int:
        calendar = settings.capture
        now = datetime.now(SEOUL)
        landing = RawLanding(settings.data_root)
        home = args.dagster_home
        reader = instance_runs(home) if home else None
        print(
            f"status: capture window {calendar.describe()}; runs from "
            + (f"the instance in {home}" if reader else "no Dagster instance (DAGSTER_HOME)")
        )
        service_home = default_dagster_home()
        if service_home.is_dir() and service_home != home:
            print(f"status: the service's instance is {service_home}: --dagster-home to read it")
        accounts = [a.id for a in settings.accounts]
        today = seoul_day(now)
        first = capture.history_start(calendar, landing, today)
        for day in status_days(calendar, today, first, args.days):
            runs = reader(day) if reader else NO_RUNS
            print()
            print(
                "\n".join(
                    describe_day(day, accounts, captured_at(landing, day), runs, calendar, now)
                )
            )
        return 0

    return run("status", status)


if __name__ == "__main__":
    raise SystemExit(main())
