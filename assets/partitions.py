"""The one partitioning of every asset: capture days in Asia/Seoul, from the history's first day.

Built at import from the settings: partitions start at KIS_HISTORY_START, else at the first day
with a landed raw answer in the data root, else today; only KIS_CAPTURE_DAYS are partitions
(so "filled" in the UI is the share of capture days captured). Today's partition, on a capture
day, exists all day.
"""

from datetime import date, timedelta

import dagster as dg

from pipelines.ingest import capture
from pipelines.ingest.capture import CaptureSettings
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.settings import capture_from_env, data_root_from_env

FORMAT = "%Y-%m-%d"


def build_partitions(start: date, days: frozenset[int]) -> dg.TimeWindowPartitionsDefinition:
    """One partition per capture day (date.weekday() numbers) from `start`, keyed YYYY-MM-DD.

    A partition's window runs to the next capture day (Friday's to Monday with mon-fri), and
    end_offset=1 makes the current one, today's on a capture day, exist from midnight.
    """
    return dg.TimeWindowPartitionsDefinition(
        start=start.strftime(FORMAT),
        fmt=FORMAT,
        cron_schedule=f"0 0 * * {capture.cron_weekdays(days)}",
        timezone=capture.TIME_ZONE,
        end_offset=1,
    )


def first_day(settings: CaptureSettings) -> date:
    """The history's first day, from the environment and the data root it names."""
    landing = RawLanding(data_root_from_env())
    return capture.history_start(settings, landing, today_in_seoul())


CAPTURE = capture_from_env()
FIRST_DAY = first_day(CAPTURE)
daily_partitions = build_partitions(FIRST_DAY, CAPTURE.days)


def window_freshness(settings: CaptureSettings) -> dg.FreshnessPolicy:
    """Fresh when materialized inside each capture day's window: a day that closes without a
    run shows as failing freshness in the UI the next morning."""
    window = settings.window
    end = min(window.end, capture.MINUTES_PER_DAY - 1)  # 24:00 is 23:59 in cron
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{end % 60} {end // 60} * * {capture.cron_weekdays(settings.days)}",
        lower_bound_delta=timedelta(minutes=end - window.start),
        timezone=capture.TIME_ZONE,
    )
