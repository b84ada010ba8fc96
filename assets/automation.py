"""The daily job and the capture sensor that runs it: today's balance, within the capture window.

The sensor (on by default) requests a run of today's partition at the window's start and then
every KIS_CAPTURE_EVERY minutes until every configured account has today's snapshot, fetching
only the accounts still missing; each tick says in the UI why it did or did not request a run.
The decisions are pipelines.balance.capture.decide; this module only gathers its inputs.
"""

from collections.abc import Callable
from datetime import datetime

import dagster as dg

from assets.partitions import CAPTURE, FIRST_DAY
from assets.resources import KisConfig
from pipelines.balance import capture
from pipelines.balance.landing import RawLanding
from pipelines.kis.tokens import SEOUL

daily_balance_job = dg.define_asset_job(
    "daily_balance",
    selection=dg.AssetSelection.all(),
    description="Fetch today's balance (every account, or those the capture sensor names), "
    "land it, flatten it, rebuild the views and the report.",
)

#: Runs that still hold a day: the sensor never requests another attempt beside one of them.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
TAG_DAY = "kis/capture_day"
TAG_ATTEMPT = "kis/capture_attempt"
TAG_ACCOUNTS = "kis/capture_accounts"
#: A capture run still in flight after this long lost its process (killed, say): the daemon's
#: run monitoring cancels it, so the sensor can try again (a run normally takes seconds).
MAX_RUNTIME = {"dagster/max_runtime_seconds": "3600"}


def tick_interval(settings: capture.CaptureSettings) -> int:
    """Seconds between ticks: a quarter of KIS_CAPTURE_EVERY, within 5 s (the daemon's
    loop) and 60 s."""
    return int(min(60, max(5, settings.every.total_seconds() / 4)))


def now_in_seoul() -> datetime:
    return datetime.now(SEOUL)


#: The sensor's clock (tests replace it to evaluate a tick at a chosen instant).
clock: Callable[[], datetime] = now_in_seoul


@dg.sensor(
    name="balance_capture",
    job=daily_balance_job,
    minimum_interval_seconds=tick_interval(CAPTURE),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        f"Captures today's balance within the window ({CAPTURE.describe()}): a run at the "
        "window's start, then one every KIS_CAPTURE_EVERY minutes fetching only the accounts "
        "still without today's snapshot, until all have it. Never two runs of a day at once."
    ),
)
def balance_capture(context: dg.SensorEvaluationContext, kis: KisConfig) -> dg.SensorResult:
    settings = kis.settings()
    landing = RawLanding(settings.data_root)
    now = clock()
    today = capture.seoul_day(now).isoformat()
    in_flight = context.instance.get_run_ids(
        filters=dg.RunsFilter(tags={"dagster/partition": today}, statuses=IN_FLIGHT), limit=1
    )
    decision = capture.decide(
        CAPTURE,  # as the partitions were built, even if .env changed since
        now,
        accounts=[account.id for account in settings.accounts],
        landed=lambda day: capture.landed_accounts(landing, day),
        run_in_flight=bool(in_flight),
        cursor=capture.CaptureCursor.from_json(context.cursor),
        first_day=FIRST_DAY,
    )
    cursor = decision.cursor.to_json() if decision.cursor else context.cursor
    attempt = decision.attempt
    if attempt is None:
        return dg.SensorResult(skip_reason=decision.reason, cursor=cursor)
    context.log.info(decision.reason)
    accounts = ",".join(attempt.accounts)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=attempt.run_key,
                partition_key=attempt.day.isoformat(),
                run_config={"resources": {"kis": {"config": {"only_accounts": accounts}}}},
                tags={
                    TAG_DAY: today,
                    TAG_ATTEMPT: str(attempt.number),
                    TAG_ACCOUNTS: accounts,
                    **MAX_RUNTIME,
                },
            )
        ],
        cursor=cursor,
    )
