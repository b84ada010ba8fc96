"""The capture sensor evaluated through Dagster, and the runs it requests executed for real
against the simulator: only the missing accounts are fetched, then nothing more that day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

import assets.automation
from assets.automation import (
    TAG_ACCOUNTS,
    TAG_ATTEMPT,
    TAG_BUILD,
    TAG_DAY,
    TAG_KEY_GROUP,
    balance_capture,
)
from assets.resources import KisResource
from pipelines.definitions import defs
from pipelines.ingest import capture
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import SEOUL
from pipelines.settings import SettingsError
from pipelines.simulator.server import Simulator

STANDARD, PRODUCT21 = "12345678-01", "12345678-21"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def sim_env(monkeypatch: pytest.MonkeyPatch, simulator: Simulator) -> Simulator:
    """Simulator mode against a standalone simulator; the default window, every 20 minutes."""
    monkeypatch.setenv("KIS_ENV", "sim")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    return simulator


def today_at(hhmm: str) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime.combine(today_in_seoul(), time(hours, minutes), SEOUL)


def tick(
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    now: datetime,
    cursor: str | None = None,
) -> dg.SensorResult:
    monkeypatch.setattr(assets.automation, "clock", lambda: now)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"kis": KisResource()}
    )
    result = balance_capture(context)
    assert isinstance(result, dg.SensorResult)
    return result


def execute(request: dg.RunRequest, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The requested run, as the daemon would launch it: job, partition, config, tags."""
    return defs.resolve_job_def("daily_balance").execute_in_process(
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        raise_on_error=False,
    )


def test_attempts_fetch_the_missing_accounts_until_the_day_is_in(
    isolated_env: Path,
    sim_env: Simulator,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim_env.faults = sim_env.faults.parse(f"{PRODUCT21}:business_error*1")
    today = today_in_seoul().isoformat()

    first = tick(instance, monkeypatch, today_at("18:31"))
    [request] = first.run_requests or []
    assert request.run_key == f"capture-{today}-attempt-1"
    assert request.partition_key == today
    assert request.tags[TAG_DAY] == today and request.tags[TAG_ATTEMPT] == "1"
    assert request.tags[TAG_ACCOUNTS] == f"{STANDARD},{PRODUCT21}"
    execute(request, instance)  # -21 refused once (OPSQ2002): only -01 lands
    assert capture.landed_accounts(RawLanding(isolated_env), today_in_seoul()) == {STANDARD}

    again = tick(instance, monkeypatch, today_at("18:45"), first.cursor)
    assert not again.run_requests
    assert again.skip_reason is not None
    assert f"Attempt 1 for {today} has run without {PRODUCT21}" in again.skip_reason.skip_message

    second = tick(instance, monkeypatch, today_at("18:51"), again.cursor)
    [request] = second.run_requests or []
    assert request.run_key == f"capture-{today}-attempt-2"
    assert request.run_config == {"resources": {"kis": {"config": {"only_accounts": PRODUCT21}}}}
    balance_before = sim_env.requests[f"balance {STANDARD}"]
    result = execute(request, instance)
    assert result.success
    assert sim_env.requests[f"balance {STANDARD}"] == balance_before  # not fetched again
    assert capture.landed_accounts(RawLanding(isolated_env), today_in_seoul()) == {
        STANDARD,
        PRODUCT21,
    }
    # the tables and views hold both accounts, although the run fetched one
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        in_views = con.sql(
            f"SELECT account_id FROM account_summary WHERE snapshot_date = DATE '{today}' "
            "ORDER BY 1"
        ).fetchall()
    assert in_views == [(STANDARD,), (PRODUCT21,)]

    calls = sim_env.requests["balance"]
    for hhmm in ("19:11", "21:00", "23:29"):
        done = tick(instance, monkeypatch, today_at(hhmm), second.cursor)
        assert not done.run_requests
        assert done.skip_reason is not None
        assert "All 2 accounts have today's snapshot" in done.skip_reason.skip_message
    assert sim_env.requests["balance"] == calls

    # a run started by hand still fetches every account
    from tests.runs import materialize

    assert materialize(today_in_seoul()).success
    assert sim_env.requests["balance"] == calls + 2


def test_no_attempt_while_a_run_of_the_day_is_pending(
    isolated_env: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = today_in_seoul().isoformat()
    pending = instance.create_run_for_job(  # NOT_STARTED, as a run launched by hand begins
        defs.resolve_job_def("daily_balance"), run_config={}, tags={"dagster/partition": today}
    )
    result = tick(instance, monkeypatch, today_at("18:30"))
    assert not result.run_requests
    assert result.skip_reason is not None
    assert "still queued or running" in result.skip_reason.skip_message
    instance.report_run_failed(pending)
    assert tick(instance, monkeypatch, today_at("18:30")).run_requests


def test_outside_the_window_the_tick_says_when_the_next_one_opens(
    isolated_env: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    morning = tick(instance, monkeypatch, today_at("08:00"))
    assert not morning.run_requests
    assert morning.skip_reason is not None
    message = morning.skip_reason.skip_message
    assert "has not opened yet. Next window: today 18:30 Asia/Seoul." in message
    # nothing was landed yesterday (the test's data root is empty): the day is reported missed
    yesterday = today_in_seoul() - timedelta(days=1)
    assert f"MISSED on {yesterday}: {STANDARD}, {PRODUCT21}" in message


def test_only_accounts_narrows_the_configured_accounts(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        '[[account]]\nid = "11112222-01"\n\n'
        '[[account]]\nid = "33334444-21"\n'
        'app_key_env = "OTHER_KEY"\napp_secret_env = "OTHER_SECRET"\n'
    )
    monkeypatch.setenv("KIS_ACCOUNTS_FILE", str(accounts_file))
    monkeypatch.setenv("KIS_ENV", "real")
    monkeypatch.setenv("KIS_APP_KEY", "DEFAULT-KEY")
    monkeypatch.setenv("KIS_APP_SECRET", "DEFAULT-SECRET")
    monkeypatch.setenv("OTHER_KEY", "OTHER-KEY")
    monkeypatch.setenv("OTHER_SECRET", "OTHER-SECRET")
    settings = KisResource(only_accounts=" 33334444-21 ").settings()
    assert [a.id for a in settings.accounts] == ["33334444-21"]
    [(credentials, accounts)] = settings.key_groups()
    assert credentials.app_key == "OTHER-KEY" and len(accounts) == 1  # with its own key
    every = KisResource(only_accounts="33334444-21").settings(every_account=True)
    assert [a.id for a in every.accounts] == ["11112222-01", "33334444-21"]
    assert len(KisResource().settings().accounts) == 2
    with pytest.raises(SettingsError, match=r"99998888-01 not among the configured accounts"):
        KisResource(only_accounts="11112222-01,99998888-01").settings()
    with pytest.raises(SettingsError, match="names none of the configured accounts"):
        KisResource(only_accounts=" , ").settings()


def test_shards_fetch_side_by_side_runs_then_one_build(
    isolated_env: Path,
    sim_env: Simulator,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """KIS_SHARDS=2: one capture_fetch run per shard of app keys (tagged for the run queue),
    then, once they have ended, one build_day run builds the day from what they landed."""
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        "".join(
            f'[[account]]\nid = "{account}"\n'
            f'app_key_env = "KEY_{n}"\napp_secret_env = "SECRET_{n}"\n'
            for n, account in enumerate((STANDARD, PRODUCT21))
        )
    )
    for n in range(2):
        monkeypatch.setenv(f"KEY_{n}", f"SHARD-KEY-{n}")
        monkeypatch.setenv(f"SECRET_{n}", f"shard-secret-{n}")
    monkeypatch.setenv("KIS_ACCOUNTS_FILE", str(accounts_file))
    monkeypatch.setenv("KIS_SHARDS", "2")
    today = today_in_seoul().isoformat()

    first = tick(instance, monkeypatch, today_at("18:31"))
    requests = first.run_requests or []
    assert [(r.job_name, r.tags[TAG_KEY_GROUP], r.run_key) for r in requests] == [
        ("capture_fetch", "0", f"capture-{today}-attempt-1-shard-0"),
        ("capture_fetch", "1", f"capture-{today}-attempt-1-shard-1"),
    ]
    assert [r.run_config["resources"]["kis"]["config"]["only_accounts"] for r in requests] == [
        STANDARD,
        PRODUCT21,
    ]
    for request in requests:
        result = defs.resolve_job_def("capture_fetch").execute_in_process(
            partition_key=request.partition_key,
            run_config=request.run_config,
            tags=request.tags,
            instance=instance,
        )
        assert result.success
        assert [m.asset_key for m in result.get_asset_materialization_events()] == [
            dg.AssetKey("kis_balance_raw")
        ]
    assert not (isolated_env / "warehouse.duckdb").exists()  # nothing built by the shards

    build = tick(instance, monkeypatch, today_at("18:32"), first.cursor)
    [request] = build.run_requests or []
    assert request.job_name == "build_day" and request.tags[TAG_BUILD] == today
    result = defs.resolve_job_def("build_day").execute_in_process(
        partition_key=request.partition_key, tags=request.tags, instance=instance
    )
    assert result.success
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        in_views = con.sql("SELECT account_id FROM account_summary ORDER BY 1").fetchall()
    assert in_views == [(STANDARD,), (PRODUCT21,)]

    done = tick(instance, monkeypatch, today_at("18:52"), build.cursor)
    assert not done.run_requests
    assert done.skip_reason is not None and "All 2 accounts" in done.skip_reason.skip_message
