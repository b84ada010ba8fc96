"""The framework floor for `dagster asset materialize`: one daily-partitioned asset doing nothing.

Loaded by bench/materialize_cli.py with `-m bench.floor_definitions`, exactly as the pipeline is
loaded with `-m pipelines.definitions`; same partitions (Asia/Seoul, end_offset=1) and executor.
"""

import dagster as dg

partitions = dg.DailyPartitionsDefinition(
    start_date="2023-01-01", timezone="Asia/Seoul", end_offset=1
)


@dg.asset(partitions_def=partitions)
def nothing() -> None:
    """Returns nothing: the cost measured is Dagster's alone."""


defs = dg.Definitions(assets=[nothing], executor=dg.in_process_executor)
