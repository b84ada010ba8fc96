"""`make run`: materialize a day (or a range) as `dg launch` does, then say what the run did:
accounts landed, withheld and failed, the day's net assets, warnings, the report's path.

    python -m pipelines.commands.run                        # today (Asia/Seoul)
    python -m pipelines.commands.run 2026-11-25             # one day
    python -m pipelines.commands.run 2026-11-02...2026-11-06   # a range, in one run
    python -m pipelines.commands.run --anyway               # today, even if not a capture day
    python -m pipelines.commands.run --verbose              # Dagster's log on the terminal too

The run is `dg launch --assets '*'` in Dagster's instance (DAGSTER_HOME, .dagster/ by default),
so it shows in `make ui`; Dagster's own log (tracebacks included) goes to a file under
DAGSTER_HOME/make-run/ unless --verbose. Exit status: 0 every account in; 1 an account failed or
was withheld, or a step failed; 2 the settings or the days asked for are wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import dagster as dg

from pipelines import health
from pipelines.errors import ConfigError
from pipelines.ingest import capture
from pipelines.ingest.fetch import DayAction, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.reporting import day_summary
from pipelines.settings import REPO_ROOT, Settings, SettingsError
from pipelines.warehouse import warehouse

#: Exit statuses.
SUCCEEDED, FAILED, CANNOT_RUN = 0, 1, 2
RANGE_SEPARATOR = "..."
#: What `dg launch` prints when the run starts: its id.
RUN_ID = re.compile(r" - ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) - ")


class DaysError(ConfigError):
    """The days asked for cannot be a run (not a date, a range the wrong way round, …)."""


@dataclass(frozen=True)
class Plan:
    """The capture days a run materializes, and one line for each day asked for it leaves out."""

    days: list[date]
    skipped: list[str] = field(default_factory=list)
    #: Weekdays (date.weekday()) made capture days for this run only (--anyway).
    extra_weekdays: frozenset[int] = frozenset()

    @property
    def partition_args(self) -> list[str]:
        if len(self.days) == 1:
            return ["--partition", self.days[0].isoformat()]
        return ["--partition-range", f"{self.days[0]}{RANGE_SEPARATOR}{self.days[-1]}"]


def parse_days(text: str | None, today: date) -> tuple[date, date]:
    """`YYYY-MM-DD`, `FIRST...LAST`, or nothing (today) as the first and last day."""
    if not text:
        return today, today
    first, sep, last = text.partition(RANGE_SEPARATOR)
    try:
        start = date.fromisoformat(first.strip())
        end = date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        raise DaysError(
            f"{text!r}: expected a day YYYY-MM-DD or a range FIRST...LAST, e.g. "
            f"{today - timedelta(days=7)}...{today}"
        ) from None
    if end < start:
        raise DaysError(f"{text!r}: the range ends before it starts")
    return start, end


def plan(
    first: date,
    last: date,
    *,
    settings: capture.CaptureSettings,
    history_start: date,
    today: date,
    anyway: bool = False,
) -> Plan:
    """The days of [first, last] that are partitions: capture days (KIS_CAPTURE_DAYS) from the
    history's first day up to today. With `anyway`, non-capture days are captured too."""
    if last > today:
        raise DaysError(
            f"{last} is in the future (today in Asia/Seoul is {today}): KIS reports only the "
            "current balance"
        )
    asked = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    skipped: list[str] = []
    early = [day for day in asked if day < history_start]
    if early:
        skipped.append(
            f"{_span(early)}: before the history's first day {history_start} "
            "(KIS_HISTORY_START, else the first day with a landed answer): not a partition"
        )
    asked = [day for day in asked if day >= history_start]
    extra = frozenset(day.weekday() for day in asked if not settings.is_capture_day(day))
    if anyway:
        return Plan(asked, skipped, extra)
    off = [day for day in asked if not settings.is_capture_day(day)]
    if off:
        names = ", ".join(f"{day} ({day:%a})" for day in off) if len(off) <= 3 else _span(off)
        skipped.append(
            f"{names}: not a capture day (KIS_CAPTURE_DAYS={settings.days_text()}), nothing "
            f"to fetch; `make run RUN_ARGS=--anyway` captures {'it' if len(off) == 1 else 'them'}"
            " anyway"
        )
    return Plan([day for day in asked if settings.is_capture_day(day)], skipped)


def _span(days: list[date]) -> str:
    return str(days[0]) if len(days) == 1 else f"{len(days)} days from {days[0]} to {days[-1]}"


# -- what the run did, from Dagster's instance ----------------------------------------------
@dataclass
class Outcome:
    run_id: str | None
    succeeded: bool
    landed: list[str] = field(default_factory=list)
    #: account (or "YYYY-MM-DD account") → the one line that says why
    failed: dict[str, str] = field(default_factory=dict)
    withheld: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: failed steps' one-line reasons, when no account names the failure
    errors: list[str] = field(default_factory=list)
    report: str | None = None
    #: days built again from the raw answers landed on them (nothing fetched for those)
    rebuilt: list[str] = field(default_factory=list)


def _values(metadata: Any) -> dict[str, Any]:
    return {name: getattr(value, "value", value) for name, value in (metadata or {}).items()}


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def read_outcome(instance: dg.DagsterInstance, run_id: str) -> Outcome:
    """What a run landed, failed, withheld and warned about, from its events."""
    run = instance.get_run_by_id(run_id)
    outcome = Outcome(run_id, run is not None and run.status == dg.DagsterRunStatus.SUCCESS)
    for record in instance.get_records_for_run(run_id, limit=100_000).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if (materialization := record.event_log_entry.asset_materialization) is not None:
            _materialized(outcome, materialization)
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            _checked(outcome, event.asset_check_evaluation_data)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            _step_failed(outcome, event.step_key or "", event.step_failure_data)
    return outcome


def _materialized(outcome: Outcome, materialization: Any) -> None:
    metadata = _values(materialization.metadata)
    name = materialization.asset_key.to_user_string()
    if name == "kis_balance_raw":
        # what this run fetched and landed; a rebuild from raw lands nothing new
        landed = metadata.get("fetched_accounts", metadata.get("landed_accounts"))
        outcome.landed = list(landed or [])
        outcome.rebuilt = [
            day
            for day, action in (metadata.get("actions") or {}).items()
            if action == DayAction.REBUILD_FROM_RAW.value
        ]
        for account, what in (metadata.get("failed_accounts") or {}).items():
            outcome.failed[account] = str(what.get("error"))
    elif "withheld_accounts" in metadata:
        outcome.withheld.update(metadata["withheld_accounts"] or {})
    elif name == "portfolio_report" and metadata.get("path"):
        outcome.report = str(metadata["path"])


def _checked(outcome: Outcome, evaluation: Any) -> None:
    if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.WARN:
        return
    metadata = _values(evaluation.metadata)
    problems = metadata.get("out_of_band") or metadata.get("problems") or []
    where = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
    if evaluation.check_name == "allocation_within_targets":
        outcome.warnings += [f"outside its target band: {problem}" for problem in problems]
        return
    more = metadata.get("problem_count", len(problems)) - 1
    first = problems[0] if problems else evaluation.description or "failed"
    outcome.warnings.append(f"{where}: {first}" + (f" (and {more} more)" if more > 0 else ""))


def _step_failed(outcome: Outcome, step: str, failure: Any) -> None:
    data = failure.user_failure_data
    metadata = _values(data.metadata) if data else {}
    for account, what in (metadata.get("failed_accounts") or {}).items():
        outcome.failed.setdefault(account, str(what.get("error")))
    for account, why in (metadata.get("withheld_accounts") or {}).items():
        outcome.withheld.setdefault(account, str(why))
    if metadata.get("failed_accounts") or metadata.get("withheld_accounts"):
        return
    text = (data.description if data and data.description else "") or (
        failure.error.message if failure.error else "failed"
    )
    outcome.errors.append(f"{step}: {_first_line(text)}")


# -- the summary -----------------------------------------------------------------------------
def _won(amount: Decimal | None) -> str:
    return "—" if amount is None else f"{amount:,.0f} KRW"


def read_summary(settings: Settings, day: date) -> day_summary.DaySummary | None:
    """The day in the views, or None when there is no warehouse yet."""
    if not settings.warehouse.exists():
        return None
    return warehouse.read(
        settings.data_root,
        settings.warehouse,
        lambda con: day_summary.summarize(con, day),
    )


def summary_lines(
    outcome: Outcome, summary: day_summary.DaySummary | None, days: list[date]
) -> list[str]:
    """What the run did, one line per fact; failures one line each."""
    when = str(days[0]) if len(days) == 1 else f"{days[0]}...{days[-1]} ({len(days)} days)"
    lines = [
        f"{when}: landed {len(outcome.landed)} account(s)"
        + (f" ({', '.join(outcome.landed)})" if outcome.landed else "")
        + f", withheld {len(outcome.withheld)}, failed {len(outcome.failed)}"
        + (
            f"; {len(outcome.rebuilt)} day(s) rebuilt from the raw answers landed on them"
            if outcome.rebuilt
            else ""
        )
    ]
    lines += _one_line_each("FAILED", outcome.failed)
    lines += _one_line_each("WITHHELD", outcome.withheld)
    lines += [f"ERROR {error}" for error in outcome.errors]
    if summary is not None and summary.per_account:
        lines.append(f"net assets on {summary.day} (합계 real_nass_amt):")
        lines += [
            f"  {account}  {_won(amount)}"
            + ("" if account in outcome.landed else "  (landed before this run)")
            for account, amount in summary.per_account
        ]
        together = f"  together     {_won(summary.net_assets)}"
        if summary.missing_accounts:
            together += f" (without {', '.join(summary.missing_accounts)}: no snapshot)"
        lines.append(together)
    elif summary is not None:
        lines.append(f"net assets on {summary.day}: no account is in the views for that day")
    lines += [f"warning: {warning}" for warning in outcome.warnings]
    if outcome.report:
        lines.append(f"report: {outcome.report}")
    return lines


def _one_line_each(label: str, reasons: dict[str, str]) -> list[str]:
    """One line per reason: the accounts of one app key that failed together share theirs."""
    accounts: dict[str, list[str]] = {}
    for account, why in reasons.items():
        accounts.setdefault(_first_line(why), []).append(account)
    return [
        f"{label}: {why}"
        if all(account.split(" ")[-1] in why for account in named)
        else f"{label} {', '.join(named)}: {why}"
        for why, named in accounts.items()
    ]


# -- launching -------------------------------------------------------------------------------
def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def launch_command(run_plan: Plan) -> list[str]:
    dg_cli = str(Path(sys.executable).parent / "dg")
    return [dg_cli, "launch", "--assets", "*", *run_plan.partition_args]


@contextlib.contextmanager
def _log_file(home: Path) -> Iterator[tuple[Path, IO[str]]]:
    folder = home / "make-run"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"run-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as log:
        yield path, log


def launch(run_plan: Plan, settings: Settings, *, verbose: bool) -> tuple[int, str | None, Path]:
    """`dg launch` of the plan's days; its exit status, its run's id, and where its log is."""
    environ = dict(os.environ)
    if run_plan.extra_weekdays:
        environ["KIS_CAPTURE_DAYS"] = capture.format_days(
            settings.capture.days | run_plan.extra_weekdays
        )
    run_id = None
    with _log_file(Path(environ["DAGSTER_HOME"])) as (path, log):
        process = subprocess.Popen(
            launch_command(run_plan),
            cwd=REPO_ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if verbose:
                sys.stdout.write(line)
            if run_id is None and (found := RUN_ID.search(line)):
                run_id = found.group(1)
        returncode = process.wait()
    return returncode, run_id, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("days", nargs="?", help="YYYY-MM-DD or FIRST...LAST (default: today)")
    parser.add_argument(
        "--anyway", action="store_true", help="capture on a day that is not a capture day too"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="Dagster's log (tracebacks) on the terminal"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        today = today_in_seoul()
        first, last = parse_days(args.days, today)
        start = capture.history_start(settings.capture, RawLanding(settings.data_root), today)
        run_plan = plan(
            first,
            last,
            settings=settings.capture,
            history_start=start,
            today=today,
            anyway=args.anyway,
        )
    except (SettingsError, DaysError) as error:
        print(f"make run: {error}", file=sys.stderr)
        return CANNOT_RUN
    for line in run_plan.skipped:
        print(line)
    if not run_plan.days:
        return SUCCEEDED
    os.environ["DAGSTER_HOME"] = str(dagster_home())  # the launched run's and the one read here
    returncode, run_id, log_path = launch(run_plan, settings, verbose=args.verbose)
    with dg.DagsterInstance.get() as instance:
        outcome = read_outcome(instance, run_id) if run_id else Outcome(None, False)
    if run_id is None:
        outcome.errors.append(f"dg launch exited with status {returncode} before a run started")
    if run_plan.extra_weekdays and run_id:
        # the views were built with the extra weekdays as capture days: build them again with
        # the configured ones, or every earlier such weekday would show as a missed capture
        health.build_warehouse(settings)
    summary = read_summary(settings, run_plan.days[-1])
    if settings.is_simulated:
        print(
            f"simulated: balances from the KIS simulator, not a real account ({settings.data_root})"
        )
    for line in summary_lines(outcome, summary, run_plan.days):
        print(line)
    print(f"Dagster's log of this run: {log_path}" + (f" (run {run_id})" if run_id else ""))
    failed = outcome.failed or outcome.withheld or outcome.errors or returncode != 0
    return FAILED if failed or not outcome.succeeded else SUCCEEDED


if __name__ == "__main__":
    sys.exit(main())
