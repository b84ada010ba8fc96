"""The daily job and the capture sensor that runs it: today's balance, within the capture window.

The sensor (on by default) requests a run of today's partition at the window's start and then
every KIS_CAPTURE_EVERY minutes until every configured account has today's snapshot, fetching
only the accounts still missing; each tick says in the UI why it did or did not request a run.
The decisions are pipelines.ingest.capture.decide; this module only gathers its inputs.

With KIS_SHARDS > 1 (several workers), an attempt is one `capture_fetch` run per shard of app
keys, tagged `kis/app_key_group` (the run queue runs one per shard at a time), and once they
have all ended, one `build_day` run (tagged `kis/build`: one at a time) builds the day's tables,
views and report from everything landed.
"""

import dataclasses
from collections.abc import Callable
from datetime import datetime

import dagster as dg

from assets.partitions import CAPTURE, FIRST_DAY
from assets.resources import KisResource
from pipelines.ingest import capture
from pipelines.ingest.landing import RawLanding
from pipelines.kis.protocol import Account
from pipelines.kis.tokens import SEOUL
from pipelines.settings import Settings

RAW = dg.AssetKey("kis_balance_raw")

daily_balance_job = dg.define_asset_job(
    "daily_balance",
    selection=dg.AssetSelection.all(),
    description="Fetch today's balance (every account, or those the capture sensor names), "
    "land it, flatten it, rebuild the views and the report.",
)

capture_fetch_job = dg.define_asset_job(
    "capture_fetch",
    selection=dg.AssetSelection.assets(RAW),
    description="Fetch and land today's balance of one shard of app keys (the capture sensor "
    "names the accounts); the day is built by a build_day run once every shard has ended.",
)
build_day_job = dg.define_asset_job(
    "build_day",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(RAW),
    description="Build a day's tables, views and report from what the shards landed.",
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
#: One run per value at a time (deploy/dagster.yaml): no two runs use the same app keys at once.
TAG_KEY_GROUP = "kis/app_key_group"
#: One run with this tag at a time (deploy/dagster.yaml): a day is built by one worker.
TAG_BUILD = "kis/build"
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
    jobs=[daily_balance_job, capture_fetch_job, build_day_job],
    minimum_interval_seconds=tick_interval(CAPTURE),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        f"Captures today's balance within the window ({CAPTURE.describe()}): a run at the "
        "window's start, then one every KIS_CAPTURE_EVERY minutes fetching only the accounts "
        "still without today's snapshot, until all have it. Never two runs of a day at once."
    ),
)
def balance_capture(context: dg.SensorEvaluationContext, kis: KisResource) -> dg.SensorResult:
    settings = kis.settings()
    landing = RawLanding(settings.data_root)
    now = clock()
    today = capture.seoul_day(now).isoformat()
    in_flight = context.instance.get_run_ids(
        filters=dg.RunsFilter(tags={"dagster/partition": today}, statuses=IN_FLIGHT), limit=1
    )
    decision = capture.decide(
        CAPTURE,  # as the partitions were built, even if kis.env changed since
        now,
        accounts=[account.id for account in settings.accounts],
        landed=lambda day: capture.landed_accounts(landing, day),
        run_in_flight=bool(in_flight),
        cursor=capture.CaptureCursor.from_json(context.cursor),
        first_day=FIRST_DAY,
    )
    last = capture.CaptureCursor.from_json(context.cursor)
    if (
        settings.shards > 1
        and last
        and last.build_due(capture.seoul_day(now), run_in_flight=bool(in_flight))
    ):
        context.log.info(f"Every shard of attempt {last.attempt} has ended: building {today}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    job_name=build_day_job.name,
                    run_key=f"capture-{today}-build-{last.attempt}",
                    partition_key=today,
                    tags={TAG_DAY: today, TAG_ATTEMPT: str(last.attempt), TAG_BUILD: today},
                )
            ],
            cursor=dataclasses.replace(last, built=last.attempt).to_json(),
        )
    cursor = decision.cursor.to_json() if decision.cursor else context.cursor
    attempt = decision.attempt
    if attempt is None:
        return dg.SensorResult(skip_reason=decision.reason, cursor=cursor)
    context.log.info(decision.reason)
    return dg.SensorResult(run_requests=attempt_requests(settings, attempt), cursor=cursor)


def attempt_requests(settings: Settings, attempt: capture.Attempt) -> list[dg.RunRequest]:
    """One daily_balance run for the attempt's accounts, or with KIS_SHARDS > 1 one
    capture_fetch run per shard of app keys that has accounts missing."""
    day = attempt.day.isoformat()
    shards: dict[int | None, list[str]] = {}
    shard_of = settings.shards_by_account()
    for account in attempt.accounts:
        shard = shard_of[Account.parse(account)] if settings.shards > 1 else None
        shards.setdefault(shard, []).append(account)
    requests = []
    for shard, accounts in sorted(shards.items(), key=lambda item: item[0] or 0):
        names = ",".join(accounts)
        tags = {TAG_DAY: day, TAG_ATTEMPT: str(attempt.number), TAG_ACCOUNTS: names, **MAX_RUNTIME}
        if shard is not None:
            tags[TAG_KEY_GROUP] = str(shard)
        requests.append(
            dg.RunRequest(
                job_name=daily_balance_job.name if shard is None else capture_fetch_job.name,
                run_key=attempt.run_key + ("" if shard is None else f"-shard-{shard}"),
                partition_key=day,
                run_config={"resources": {"kis": {"config": {"only_accounts": names}}}},
                tags=tags,
            )
        )
    return requests
