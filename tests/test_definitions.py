"""Snapshot of the Dagster definitions: what the UI shows and what the automation runs."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from assets.automation import tick_interval
from pipelines.definitions import defs
from pipelines.ingest.capture import CaptureSettings
from pipelines.kis.tokens import SEOUL


def test_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot() -> None:
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == {
        "kis_balance_raw",
        "asset_categories",
        "account_summary",
        "warehouse_views",
        "portfolio_report",
    }
    deps = {
        key: sorted(d.asset_key.to_user_string() for d in spec.deps) for key, spec in specs.items()
    }
    assert deps == {
        "kis_balance_raw": [],
        "asset_categories": ["kis_balance_raw"],
        "account_summary": ["kis_balance_raw"],
        "warehouse_views": ["account_summary", "asset_categories"],
        "portfolio_report": ["warehouse_views"],
    }
    kinds = {key: set(spec.kinds) for key, spec in specs.items()}
    assert kinds == {
        "kis_balance_raw": {"kis", "json"},
        "asset_categories": {"parquet"},
        "account_summary": {"parquet"},
        "warehouse_views": {"duckdb"},
        "portfolio_report": {"html"},
    }
    for key, spec in specs.items():
        assert spec.group_name == "kis_balance", key
        assert spec.description and len(spec.description) > 40, key
    for key in ("asset_categories", "account_summary"):
        schema = specs[key].metadata["dagster/column_schema"]
        assert schema.columns[0].name == "snapshot_date"


def test_one_partitioning_of_capture_days_in_seoul_with_todays_partition() -> None:
    graph = defs.resolve_asset_graph()
    partitions = {graph.get(key).partitions_def for key in graph.get_all_asset_keys()}
    assert len(partitions) == 1
    [days] = partitions
    assert isinstance(days, dg.TimeWindowPartitionsDefinition)
    assert days.timezone == "Asia/Seoul"
    # tests/conftest.py: every day a capture day, history from 2023-01-01
    assert days.cron_schedule == "0 0 * * *"
    assert days.get_first_partition_key() == "2023-01-01"
    today = datetime.now(SEOUL).date().isoformat()
    assert days.get_last_partition_key() == today


def test_the_capture_sensor_is_on_by_default_and_replaces_the_schedule() -> None:
    sensor = defs.resolve_sensor_def("balance_capture")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sorted(job.name for job in sensor.jobs) == [
        "build_day",
        "capture_fetch",
        "daily_balance",
    ]
    assert sensor.required_resource_keys == {"kis"}
    assert not list(defs.schedules or []), "a schedule beside the sensor would fetch twice"
    assert sensor.minimum_interval_seconds == tick_interval(CaptureSettings()) == 60
    assert "18:30-23:30 Asia/Seoul on mon-sun, every 20 minutes" in (sensor.description or "")


def test_the_repair_job_is_there_for_the_ui() -> None:
    job = defs.resolve_job_def("repair_history")
    assert [node.name for node in job.nodes] == ["repair_data_root"]
    assert "kis" in job.required_resource_keys
    assert "make repair" in (job.description or "")


def test_runs_execute_in_process() -> None:
    job = defs.resolve_job_def("daily_balance")
    assert job.executor_def.name == dg.in_process_executor.name


def test_checks_sit_on_the_tables_and_block_where_data_would_be_wrong() -> None:
    from pipelines.tidy import checks

    specs = {
        (spec.asset_key.to_user_string(), spec.name): spec
        for spec in defs.resolve_asset_graph().asset_check_keys
        and [
            defs.resolve_assets_def("asset_categories").get_spec_for_check_key(key)
            for key in defs.resolve_assets_def("asset_categories").check_keys
        ]
    }
    assert set(specs) == {(c.table, c.name) for c in checks.CHECKS}
    for check in checks.CHECKS:
        assert specs[(check.table, check.name)].blocking is check.blocking


def test_every_asset_rebuilds_a_range_in_a_single_run() -> None:
    for key in ("kis_balance_raw", "asset_categories", "warehouse_views"):
        policy = defs.resolve_assets_def(key).backfill_policy
        assert policy is not None and policy.max_partitions_per_run is None, key


def test_every_materialization_reports_row_counts(isolated_env: object) -> None:
    from pipelines.ingest.fetch import today_in_seoul
    from tests.runs import materialize

    result = materialize(today_in_seoul())
    counts = {
        event.asset_key.to_user_string(): event.materialization.metadata["dagster/row_count"].value
        for event in result.get_asset_materialization_events()
    }
    assert counts == {
        "kis_balance_raw": 2,
        "asset_categories": 20 + 17,
        "account_summary": 2,
        "warehouse_views": 2,
        "portfolio_report": 1,
    }
