"""The one partitioning of every asset: a day in Asia/Seoul; today's partition exists all day."""

import dagster as dg

daily_partitions = dg.DailyPartitionsDefinition(
    start_date="2023-01-01", timezone="Asia/Seoul", end_offset=1
)
