"""The daily job and its schedule: every weekday at 18:30 Asia/Seoul, after the market closes."""

from datetime import datetime

import dagster as dg

from pipelines.kis.tokens import SEOUL

daily_balance_job = dg.define_asset_job(
    "daily_balance",
    selection=dg.AssetSelection.all(),
    description="Fetch today's balance of every account, land it, flatten it, rebuild views.",
)


def partition_for(scheduled: datetime) -> str:
    return scheduled.astimezone(SEOUL).date().isoformat()


@dg.schedule(
    job=daily_balance_job,
    cron_schedule="30 18 * * 1-5",
    execution_timezone="Asia/Seoul",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekdays 18:30 KST, after the regular and after-hours sessions close.",
)
def daily_balance_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = partition_for(context.scheduled_execution_time)
    return dg.RunRequest(run_key=day, partition_key=day)
