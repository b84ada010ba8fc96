"""Checks in Dagster, range rebuilds in one run, and durability under kills and concurrency."""

from __future__ import annotations

import json
import os
import textwrap
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest.fetch import today_in_seoul
from pipelines.lake.tables import ParquetTables
from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.server import Simulator
from pipelines.tidy import checks
from tests.runs import failure_text, kill_while_writing, two_runs_at_once
from tests.runs import materialize as run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, simulator: Simulator) -> Simulator:
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_APP_KEY", "REBUILD-KEY")
    monkeypatch.setenv("KIS_APP_SECRET", "REBUILD-SECRET")
    monkeypatch.setenv("KIS_ACCOUNTS", "12345678-01,12345678-21")
    return simulator


def test_a_total_that_does_not_add_up_warns_and_is_written(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Simulator
) -> None:
    monkeypatch.setenv("KIS_ENV", "real")
    today = today_in_seoul()
    stand_in.faults = FaultPlan.parse("12345678-21:bad_total=5")
    result = run([today])
    assert result.success, failure_text(result)
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    total = evaluations[("asset_categories", "total_row_is_sum")]
    assert total.passed is False and total.severity == dg.AssetCheckSeverity.WARN
    [problem] = total.metadata["problems"].value
    assert "12345678-21" in problem and "off by 5" in problem
    assert evaluations[("account_summary", "total_assets_match")].passed is False
    assert evaluations[("asset_categories", "known_layout")].passed is True
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(DISTINCT account_id) FROM account_summary").fetchone() == (2,)


def test_a_blocking_check_stops_the_write_and_the_views(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Simulator
) -> None:
    monkeypatch.setenv("KIS_ENV", "real")
    today = today_in_seoul()
    instance = dg.DagsterInstance.ephemeral()
    assert run([today], instance).success
    tables = ParquetTables(isolated_env)
    odd = pa.table({"account_id": ["x"]})
    pq.write_table(odd, tables.path("account_summary", today))
    before = tables.path("asset_categories", today).read_bytes()
    warehouse_before = (isolated_env / "warehouse.duckdb").stat().st_mtime_ns

    result = run([today], instance)
    assert not result.success
    description = failure_text(result)
    assert "schema_unchanged" in description and "nothing was written" in description
    assert tables.path("asset_categories", today).read_bytes() == before
    assert pq.read_table(tables.path("account_summary", today)).equals(odd)
    assert (isolated_env / "warehouse.duckdb").stat().st_mtime_ns == warehouse_before
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }
    assert evaluations[("account_summary", "schema_unchanged")] is False
    assert evaluations[("asset_categories", "schema_unchanged")] is True


def test_checks_pass_and_are_recorded_on_a_good_run(isolated_env: Path) -> None:
    result = run([today_in_seoul()])
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    # every tidy check, allocation_within_targets and every_account_captured
    assert len(evaluations) == len(checks.CHECKS) + 2 and all(e.passed for e in evaluations)
    assert "net_assets_match" in {e.check_name for e in evaluations}


def test_a_30_day_range_rebuilds_from_raw_in_one_run_byte_for_byte(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Simulator
) -> None:
    today = today_in_seoul()
    days = [today - timedelta(days=n) for n in range(30, 0, -1)]
    monkeypatch.setenv("KIS_ENV", "sim")  # the simulator can land past days
    instance = dg.DagsterInstance.ephemeral()
    for day in days:
        assert run([day], instance).success
    tables = ParquetTables(isolated_env)
    original = {
        (name, day): tables.path(name, day).read_bytes()
        for name in ("asset_categories", "account_summary")
        for day in days
    }
    for name, day in original:
        tables.path(name, day).unlink()

    # still simulator mode, with the stand-in as its server: a real-mode run would refuse a root
    # of simulated answers (test_provenance.py)
    calls = stand_in.requests["balance"]
    result = run(days, instance)
    assert result.success, failure_text(result)
    assert stand_in.requests["balance"] == calls  # nothing fetched: rebuilt from raw
    assert {key: tables.path(*key).read_bytes() for key in original} == original
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(DISTINCT snapshot_date) FROM account_summary").fetchone() == (
            30,
        )
    raw_meta = result.asset_materializations_for_node("kis_balance_raw")
    assert len(raw_meta) == 30  # one run, every partition of the range materialized
    # the rewritten days of closed months were compacted again, and the views read those files
    closed = sorted({f"{d:%Y-%m}" for d in days if d.replace(day=1) < today.replace(day=1)})
    compacted = {
        tuple(m.metadata["compacted_months"].value)
        for m in result.asset_materializations_for_node("balance_tables")
        if m.asset_key == dg.AssetKey("asset_categories")
    }
    assert compacted == {tuple(closed)}
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        [(sql,)] = con.sql(
            "SELECT sql FROM duckdb_views() WHERE view_name = 'asset_categories'"
        ).fetchall()
    assert all(f"compacted/asset_categories/{month}.parquet" in sql for month in closed)


def test_a_range_with_days_without_raw_fails_naming_them(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Simulator
) -> None:
    monkeypatch.setenv("KIS_ENV", "real")
    today = today_in_seoul()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    result = run(days)
    assert not result.success
    description = failure_text(result)
    assert all(str(day) in description for day in days)
    assert stand_in.requests["balance"] == 0


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    from pathlib import Path
    import pyarrow.parquet as pq
    from pipelines.lake.tables import ParquetTables
    table = pq.read_table(sys.argv[2])
    def slow_write(data, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half a file")
            handle.flush()
        print("writing", flush=True)
        time.sleep(60)
    pq.write_table = slow_write
    day = date.fromisoformat(sys.argv[3])
    ParquetTables(Path(sys.argv[1])).write("asset_categories", day, table)
    """
)


def test_a_run_killed_mid_write_leaves_the_previous_file(isolated_env: Path) -> None:
    today = today_in_seoul()
    assert run([today]).success
    path = ParquetTables(isolated_env).path("asset_categories", today)
    before = path.read_bytes()
    kill_while_writing(KILLED_WRITER, str(isolated_env), str(path), today.isoformat())
    assert path.read_bytes() == before
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM asset_categories").fetchone() == (37,)


def test_two_runs_of_one_partition_at_once_leave_one_consistent_snapshot(
    isolated_env: Path, simulator: Simulator
) -> None:
    env = {**os.environ, "KIS_ENV": "sim", "KIS_BASE_URL": simulator.base_url}
    today = today_in_seoul().isoformat()
    two_runs_at_once(today, env)
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        pairs = con.sql(
            "SELECT DISTINCT c.account_id, c.fetched_at = s.fetched_at FROM asset_categories c "
            "JOIN account_summary s USING (snapshot_date, account_id)"
        ).fetchall()
        counts = con.sql(
            "SELECT account_id, count(*) FROM asset_categories GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert sorted(pairs) == [("12345678-01", True), ("12345678-21", True)]
    assert counts == [("12345678-01", 20), ("12345678-21", 17)]
    raw = sorted((isolated_env / "raw" / "CTRP6548R").rglob("*.json"))
    assert len(raw) == 4  # both runs' fetches are kept
    assert all(json.loads(p.read_text())["format"] == "kis-balance-raw/1" for p in raw)
