"""The assets materialized through Dagster against the simulator over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.lake.tables import ParquetTables
from pipelines.simulator.portfolio import balance_body
from pipelines.simulator.server import Simulator
from tests.runs import failure_text, materialize

APP_SECRET = "TEST-APP-SECRET-do-not-leak-0123456789"
STAND_IN_ACCOUNTS = "12345678-01,12345678-21,98765432-01"


def query(data_root: Path, sql: str, *params: object) -> list[tuple]:
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, simulator: Simulator) -> Simulator:
    """A user's real-mode configuration pointed at a stand-in server."""
    monkeypatch.setenv("KIS_ENV", "real")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_APP_KEY", "TEST-APP-KEY")
    monkeypatch.setenv("KIS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("KIS_ACCOUNTS", STAND_IN_ACCOUNTS)
    return simulator


def raw_bodies(data_root: Path, day: date) -> dict[str, dict]:
    """The newest landed body per account: exactly what the server sent."""
    return {
        path.parent.name: json.loads(json.loads(path.read_text())["pages"][0]["body"])
        for path in RawLanding(data_root).latest_files(day)
    }


def test_today_in_sim_mode_lands_flattens_and_builds_views(isolated_env: Path) -> None:
    today = today_in_seoul()
    result = materialize(today)
    assert result.success, failure_text(result)

    rows = query(
        isolated_env,
        "SELECT account_id, layout, count(*) FROM asset_categories "
        "WHERE snapshot_date = ? GROUP BY ALL ORDER BY 1",
        today,
    )
    assert rows == [("12345678-01", "standard_20", 20), ("12345678-21", "product21_17", 17)]
    raw = result.asset_materializations_for_node("kis_balance_raw")[0].metadata
    assert raw["source_env"].value == "sim"
    assert raw["source_simulated"].value is True
    for name, expected in (("asset_categories", 37), ("account_summary", 2)):
        [event] = [
            m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(name)
        ]
        assert event.materialization.metadata["dagster/row_count"].value == expected


def test_rerunning_today_keeps_every_fetch_raw_and_one_snapshot_in_views(
    isolated_env: Path,
) -> None:
    today = today_in_seoul()
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(today, instance).success
    assert materialize(today, instance).success

    landing = RawLanding(isolated_env)
    assert len(landing.all_files(today)) == 4  # two fetches of two accounts, all kept
    newest = {
        p.parent.name: datetime.fromisoformat(json.loads(p.read_text())["fetched_at"])
        for p in landing.latest_files(today)
    }
    for view, key in (("asset_categories", "category_seq"), ("account_summary", "1")):
        counts = query(
            isolated_env,
            f"SELECT account_id, snapshot_date, {key}, count(*) "
            f"FROM {view} GROUP BY ALL HAVING count(*) > 1",
        )
        assert counts == []
    fetched = dict(query(isolated_env, "SELECT account_id, fetched_at FROM account_summary"))
    assert fetched == newest  # the views hold the newest fetch of each account
    latest = query(isolated_env, "SELECT count(*) FROM latest_allocation")
    assert latest == [(37,)]


def test_stand_in_server_values_equal_what_the_server_sent(
    isolated_env: Path, stand_in: Simulator
) -> None:
    today = today_in_seoul()
    result = materialize(today)
    assert result.success, failure_text(result)
    sent = raw_bodies(isolated_env, today)
    assert sorted(sent) == sorted(STAND_IN_ACCOUNTS.split(","))

    view_rows = query(
        isolated_env,
        "SELECT account_id, category_seq, "
        + ", ".join(f"{f}::VARCHAR" for f in OUTPUT1_FIELDS)
        + " FROM asset_categories WHERE snapshot_date = ? ORDER BY ALL",
        today,
    )
    assert len(view_rows) == 20 + 17 + 20
    for account_id, seq, *values in view_rows:
        row = sent[account_id]["output1"][seq - 1]
        assert [Decimal(v) for v in values] == [Decimal(row[f]) for f in OUTPUT1_FIELDS]

    summary = query(
        isolated_env,
        "SELECT account_id, "
        + ", ".join(f"{f}::VARCHAR" for f in OUTPUT2_FIELDS)
        + " FROM account_summary WHERE snapshot_date = ?",
        today,
    )
    for account_id, *values in summary:
        output2 = sent[account_id]["output2"]
        assert [Decimal(v) for v in values] == [Decimal(output2[f]) for f in OUTPUT2_FIELDS]

    # the whale's 19-digit total survives digit for digit (float64 would not)
    [(total,)] = query(
        isolated_env,
        "SELECT evlu_amt::VARCHAR FROM asset_categories "
        "WHERE account_id = '98765432-01' AND is_total",
    )
    sent_total = sent["98765432-01"]["output1"][-1]["evlu_amt"]
    assert len(sent_total) == 19 and int(sent_total) > 2**63 - 1
    assert total == f"{sent_total}.00000000"

    before = query(isolated_env, "SELECT count(*) FROM asset_categories")
    assert materialize(today).success
    assert query(isolated_env, "SELECT count(*) FROM asset_categories") == before


def test_past_day_without_raw_fails_and_fetches_nothing_in_real_mode(
    isolated_env: Path, stand_in: Simulator
) -> None:
    yesterday = today_in_seoul() - timedelta(days=1)
    result = materialize(yesterday)
    assert not result.success
    message = failure_text(result)
    assert f"No raw balance was landed for {yesterday}" in message
    assert stand_in.requests["balance"] == 0  # no live data filed under a past date
    assert not ParquetTables(isolated_env).days("asset_categories")


def test_past_day_is_rebuilt_from_raw_without_calling_the_server(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Simulator
) -> None:
    day = today_in_seoul() - timedelta(days=3)
    # land the day as the simulator would have answered it, in sim mode
    monkeypatch.setenv("KIS_ENV", "sim")
    assert materialize(day).success
    tables = ParquetTables(isolated_env)
    original = {
        name: tables.path(name, day).read_bytes()
        for name in ("asset_categories", "account_summary")
    }
    for name in original:
        tables.path(name, day).unlink()

    # the server named by KIS_BASE_URL (a real-mode run would refuse this root: it holds
    # simulated answers, see test_provenance.py)
    calls_before = stand_in.requests["balance"]
    result = materialize(day)
    assert result.success, failure_text(result)
    assert stand_in.requests["balance"] == calls_before
    raw_meta = result.asset_materializations_for_node("kis_balance_raw")[0].metadata
    assert raw_meta["actions"].value == {day.isoformat(): "rebuild from landed raw JSON"}
    rebuilt = query(
        isolated_env, "SELECT count(*) FROM asset_categories WHERE snapshot_date = ?", day
    )
    assert rebuilt == [(20 + 17 + 20,)]  # stand-in lists three accounts; raw has them all


def test_simulator_mode_answers_a_past_day_as_of_that_day(isolated_env: Path) -> None:
    day = today_in_seoul() - timedelta(days=10)
    assert materialize(day).success
    [path] = [
        p for p in RawLanding(isolated_env).latest_files(day) if p.parent.name == "12345678-01"
    ]
    envelope = json.loads(path.read_text())
    assert envelope["source"]["as_of"] == day.isoformat()
    expected = balance_body(Account("12345678", "01"), day)["output2"]["tot_asst_amt"]
    [(total,)] = query(
        isolated_env,
        "SELECT total_assets::VARCHAR FROM net_asset_history "
        "WHERE account_id = '12345678-01' AND snapshot_date = ?",
        day,
    )
    assert Decimal(total) == Decimal(expected)


def test_business_error_names_the_account_and_keeps_earlier_data(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Simulator
) -> None:
    today = today_in_seoul()
    assert materialize(today).success
    earlier = "SELECT * FROM asset_categories WHERE account_id = '12345678-21'"
    good = query(isolated_env, earlier)

    monkeypatch.setenv("KIS_ACCOUNTS", "12345678-01,00000000-01")
    result = materialize(today)
    assert not result.success
    message = failure_text(result)
    assert "00000000-01" in message and "OPSQ2000" in message
    assert "INVALID_CHECK_ACNO" in message
    assert query(isolated_env, earlier) == good and len(good) == 17
    # the healthy account's fetch was still landed (3 files: 2 from the first run, 1 now)
    assert len(list(RawLanding(isolated_env).day_dir(today).glob("12345678-01/*.json"))) == 2


def test_secrets_reach_no_data_file_and_no_dagster_event(
    isolated_env: Path, stand_in: Simulator
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(today_in_seoul(), instance)
    assert result.success
    token_files = list((Path(os.environ["XDG_CACHE_HOME"])).rglob("*.json"))
    [token_file] = token_files
    token = json.loads(token_file.read_text())["access_token"]
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    for path in isolated_env.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert APP_SECRET.encode() not in content, path
            assert token.encode() not in content, path
    for record in instance.all_logs(result.run_id):
        text = str(record)
        assert APP_SECRET not in text and token not in text


def test_dagster_cli_materializes_a_partition_from_the_repo_root(
    isolated_env: Path, tmp_path: Path
) -> None:
    repo = Path(__file__).resolve().parents[1]
    today = today_in_seoul().isoformat()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    Path(env["DAGSTER_HOME"]).mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "pipelines.definitions",
            "--select",
            "*",
            "--partition",
            today,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert query(isolated_env, "SELECT count(*) FROM account_summary") == [(2,)]
    assert "DeprecationWarning" not in completed.stderr
