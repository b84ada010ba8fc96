"""Notifications driven by Dagster: a run-failure sensor (a cause retrying cannot fix, at
once), a run-success sensor (a complete day: the healthcheck ping and the digest) and a window
sensor (accounts still missing as the capture window closes). What to say is pipelines.notify.

None of them exists unless KIS_NOTIFY or KIS_HEALTHCHECK_URL is set; each tells a cause at most
once a day (a ledger in DAGSTER_HOME), and a notifier that fails is logged on the tick, never
failing a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from assets import automation
from assets.automation import IN_FLIGHT, TAG_ACCOUNTS, TAG_ATTEMPT, TAG_DAY
from assets.partitions import CAPTURE
from assets.resources import KisResource
from pipelines.ingest import capture
from pipelines.ingest.landing import RawLanding
from pipelines.notify import config, messages, sender, window
from pipelines.notify.digest import read_digest
from pipelines.notify.ledger import Ledger
from pipelines.notify.messages import AccountProblem, Message, Redactor
from pipelines.reporting import report
from pipelines.settings import Settings, SettingsError, settings_file_values
from pipelines.storage.roots import open_root

#: Read at import, as the partitions are: which sensors exist and how often they tick.
NOTIFY = config.parse({**settings_file_values(), **os.environ})
PARTITION = "dagster/partition"


def ledger(instance: dg.DagsterInstance) -> Ledger:
    return Ledger(Path(instance.root_directory) / "kis-notify" / "ledger.json")


def redactor(settings: Settings | None, notify: config.NotifySettings) -> Redactor:
    """Scrubs the configured secrets and (unless KIS_NOTIFY_ACCOUNTS=full) account numbers."""
    if settings is None:
        return Redactor(full=notify.full_accounts)
    credentials = [settings.credentials, *settings.account_credentials.values()]
    secrets = [c.app_key for c in credentials] + [c.app_secret for c in credentials]
    if settings.corporate:
        secrets.append(settings.corporate.personalseckey)
    return Redactor(
        tuple(a.id for a in settings.accounts), tuple(secrets), full=notify.full_accounts
    )


def tell(log: Any, instance: dg.DagsterInstance, message: Message, redact: Redactor) -> str:
    """Send `message` unless its cause was told today; what happened, for the tick's log."""
    try:
        if not ledger(instance).claim(message.day, message.cause):
            return f"{message.cause} ({message.day}) was told already"
    except OSError as error:  # DAGSTER_HOME not writable: better twice than never
        log.warning(f"could not record {message.cause} in the ledger: {error}")
    outcome = sender.send(NOTIFY.urls, message, redact)
    if outcome.ok:
        log.info(f"told {message.cause} ({message.day}): {message.title}")
        return f"told {message.cause}"
    log.warning(f"could not tell {message.cause} ({message.day}): {outcome.detail}")
    return f"could not tell {message.cause}: {outcome.detail}"


def _settings(kis: KisResource) -> Settings | None:
    try:
        return kis.settings(every_account=True)
    except SettingsError:
        return None


def _values(metadata: Any) -> dict[str, Any]:
    value = getattr(metadata, "value", metadata)
    return dict(value) if isinstance(value, dict) else {}


def run_problems(
    instance: dg.DagsterInstance, run_id: str
) -> tuple[dict[str, AccountProblem], list[tuple[str, str]]]:
    """What a failed run said: account → problem (from its failures' `failed_accounts` and
    `withheld_accounts`), and the failures that name no account (step, description)."""
    problems: dict[str, AccountProblem] = {}
    run_errors: list[tuple[str, str]] = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        data = event.step_failure_data if event else None
        if data is None:
            continue
        user = data.user_failure_data
        metadata = dict(user.metadata) if user else {}
        named = False
        for key in ("failed_accounts", "withheld_accounts"):
            for label, what in _values(metadata.get(key)).items():
                account = str(label).split(" ")[-1]  # "YYYY-MM-DD account" in a range
                entry_values = {"withheld": what} if key == "withheld_accounts" else dict(what)
                problems.setdefault(account, AccountProblem.from_metadata(account, entry_values))
                named = True
        if not named:
            description = (user.description if user else None) or (
                data.error.message if data.error else "unknown error"
            )
            run_errors.append((event.step_key or "run" if event else "run", description))
    return problems, run_errors


def _run_day(run: dg.DagsterRun) -> date | None:
    text = run.tags.get(PARTITION) or run.tags.get(TAG_DAY)
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


MONITORED = [automation.daily_balance_job, automation.capture_fetch_job, automation.build_day_job]


@dg.run_failure_sensor(
    name="kis_notify_failures",
    monitored_jobs=MONITORED,
    minimum_interval_seconds=NOTIFY.tick_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells KIS_NOTIFY at once when a capture run fails for a reason retrying "
    "cannot fix (KIS refused the key or the account, an answer withheld, a damaged file, the "
    "data root): once per cause and day.",
)
def notify_failures(context: dg.RunFailureSensorContext, kis: KisResource) -> None:
    run = context.dagster_run
    day = _run_day(run) or capture.seoul_day(automation.clock())
    redact = redactor(_settings(kis), NOTIFY)
    problems, run_errors = run_problems(context.instance, run.run_id)
    for problem in problems.values():
        if problem.permanent:
            message = messages.permanent_failure(day, problem, redact, run_id=run.run_id)
            tell(context.log, context.instance, message, redact)
        else:
            context.log.info(
                f"{redact.account(problem.account)}: retryable, told only if the window closes "
                "without it"
            )
    for step, description in run_errors:
        message = messages.run_failure(day, step, description, redact, run_id=run.run_id)
        tell(context.log, context.instance, message, redact)


def day_complete(settings: Settings, day: date) -> bool:
    landed = capture.landed_accounts(RawLanding(settings.data_root), day)
    return not capture.missing_accounts([a.id for a in settings.accounts], landed)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="kis_notify_day_complete",
    monitored_jobs=[automation.daily_balance_job, automation.build_day_job],
    minimum_interval_seconds=NOTIFY.tick_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Once today's capture is complete: GET KIS_HEALTHCHECK_URL (a dead man's "
    "switch) and, with KIS_NOTIFY_DIGEST=1, send the day's digest to KIS_NOTIFY.",
)
def notify_day_complete(context: dg.RunStatusSensorContext, kis: KisResource) -> None:
    day = _run_day(context.dagster_run)
    today = capture.seoul_day(automation.clock())
    settings = _settings(kis)
    if day != today or settings is None or not day_complete(settings, day):
        context.log.info(f"{day}: not today's complete capture: no ping, no digest")
        return
    book = ledger(context.instance)
    if NOTIFY.healthcheck_url and book.claim(day, "healthcheck"):
        outcome = sender.ping(NOTIFY.healthcheck_url)
        if outcome.ok:
            context.log.info(f"{day} complete: healthcheck pinged")
        else:
            context.log.warning(f"{day} complete: {outcome.detail}")
    if NOTIFY.digest and NOTIFY.sends and "digest" not in book.told(day):
        redact = redactor(settings, NOTIFY)
        path = str(open_root(settings.data_root).location(report.key(day)))
        try:
            summary = read_digest(settings.data_root, settings.warehouse, day, path)
        except Exception as error:  # the warehouse being rebuilt, the store: said on the tick
            context.log.warning(f"{day}: no digest, the warehouse could not be read: {error}")
            return
        tell(context.log, context.instance, messages.digest(summary, redact), redact)


@dataclass(frozen=True)
class RunOutcome:
    """One run of a day, as the notifications and `make status` read it."""

    run_id: str
    status: dg.DagsterRunStatus
    #: the capture sensor's attempt number; None for a run started by hand
    attempt: int | None
    #: the accounts it fetched (the capture sensor's tag); empty: every configured account
    tried: tuple[str, ...]
    problems: dict[str, AccountProblem]
    run_errors: list[tuple[str, str]]
    end_time: float | None


def day_runs(instance: dg.DagsterInstance, day: date) -> list[RunOutcome]:
    """The runs of the day's partition, oldest first, with what the failed ones said."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={PARTITION: day.isoformat()}), ascending=True
    )
    outcomes = []
    for record in records:
        run = record.dagster_run
        attempt = run.tags.get(TAG_ATTEMPT)
        problems, run_errors = (
            run_problems(instance, run.run_id)
            if run.status == dg.DagsterRunStatus.FAILURE
            else ({}, [])
        )
        outcomes.append(
            RunOutcome(
                run.run_id,
                run.status,
                int(attempt) if attempt and attempt.isdigit() else None,
                tuple(a for a in run.tags.get(TAG_ACCOUNTS, "").split(",") if a),
                problems,
                run_errors,
                record.end_time,
            )
        )
    return outcomes


def attempt_history(
    instance: dg.DagsterInstance, day: date
) -> list[tuple[int, Sequence[str], dict[str, str]]]:
    """The day's capture attempts, oldest first: number, accounts tried, account → error."""
    return [
        (
            run.attempt,
            run.tried,
            {account: problem.said for account, problem in run.problems.items()},
        )
        for run in day_runs(instance, day)
        if run.attempt is not None
    ]


@dg.sensor(
    name="kis_notify_window",
    minimum_interval_seconds=NOTIFY.tick_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells KIS_NOTIFY which accounts are still missing KIS_NOTIFY_CLOSING_MINUTES "
    "before the capture window closes, and again once it has closed: the attempts and each "
    "one's last error.",
)
def notify_window(context: dg.SensorEvaluationContext, kis: KisResource) -> dg.SkipReason:
    moment = window.due(CAPTURE, automation.clock(), NOTIFY.closing_minutes)
    if moment is None:
        return dg.SkipReason("no capture window is closing or lately closed")
    cause = "window-closed" if moment.closed else "window-closing"
    if cause in ledger(context.instance).told(moment.day):
        return dg.SkipReason(f"{cause} of {moment.day} was told already")
    settings = _settings(kis)
    if settings is None:
        return dg.SkipReason("the KIS_* settings are incomplete: the runs say why")
    landed = capture.landed_accounts(RawLanding(settings.data_root), moment.day)
    missing = capture.missing_accounts([a.id for a in settings.accounts], landed)
    if not missing:
        return dg.SkipReason(f"every account has {moment.day}'s snapshot")
    in_flight = context.instance.get_run_ids(
        filters=dg.RunsFilter(tags={PARTITION: moment.day.isoformat()}, statuses=IN_FLIGHT),
        limit=1,
    )
    if in_flight and window.wait_for_run(moment, automation.clock(), NOTIFY.tick_seconds):
        return dg.SkipReason(f"a run of {moment.day} is in flight: waiting for its outcome")
    redact = redactor(settings, NOTIFY)
    message = messages.window_closing(
        moment.day,
        moment.closes,
        messages.missing_accounts(missing, attempt_history(context.instance, moment.day)),
        redact,
        closed=moment.closed,
        next_window=CAPTURE.next_window(automation.clock()) if moment.closed else None,
    )
    return dg.SkipReason(tell(context.log, context.instance, message, redact))


def sensors(notify: config.NotifySettings = NOTIFY) -> list[Any]:
    """The notification sensors the settings ask for: none when nothing is configured."""
    if notify.sends:
        return [notify_failures, notify_window, notify_day_complete]
    if notify.healthcheck_url:
        return [notify_day_complete]
    return []
