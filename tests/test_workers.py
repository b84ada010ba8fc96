"""Two workers on one day: a PostgreSQL-backed instance, an s3:// data root, KIS_SHARDS=2.

The capture sensor (evaluated on the PostgreSQL instance) asks for one capture_fetch run per
shard of app keys; two worker processes execute them at the same time against the same
instance and bucket; the sensor then asks for the one build_day run, and the views hold every
account exactly as the simulator answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

import assets.automation
from assets.automation import TAG_BUILD, TAG_KEY_GROUP, balance_capture
from assets.resources import KisResource
from pipelines.ingest.fetch import today_in_seoul
from pipelines.kis.protocol import Account
from pipelines.kis.tokens import SEOUL
from pipelines.settings import Settings
from pipelines.simulator.portfolio import balance_body
from pipelines.simulator.server import Simulator
from pipelines.warehouse import warehouse
from tests.test_deploy import REPO, Deployment, deployment  # noqa: F401 (the fixture)

KEYS = {"WORKER-KEY-0": ("11111111-01", "11111111-21"), "WORKER-KEY-1": ("22222222-01",)}

WORKER = textwrap.dedent(
    """
    import json, sys
    import dagster as dg
    from pipelines.definitions import defs
    request = json.loads(sys.argv[1])
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME: deploy/dagster.yaml, PostgreSQL
        result = defs.resolve_job_def(request["job"]).execute_in_process(
            partition_key=request["partition"], run_config=request["config"],
            tags=request["tags"], instance=instance, raise_on_error=False,
        )
    sys.exit(0 if result.success else 1)
    """
)


@pytest.fixture
def two_keys(
    monkeypatch: pytest.MonkeyPatch, simulator: Simulator, tmp_path: Path, s3_root: str
) -> Simulator:
    entries = []
    for n, (key, accounts) in enumerate(KEYS.items()):
        monkeypatch.setenv(f"WORKER_KEY_{n}", key)
        monkeypatch.setenv(f"WORKER_SECRET_{n}", f"secret-{n}")
        entries += [
            f'[[account]]\nid = "{account}"\n'
            f'app_key_env = "WORKER_KEY_{n}"\napp_secret_env = "WORKER_SECRET_{n}"\n'
            for account in accounts
        ]
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text("\n".join(entries))
    monkeypatch.setenv("KIS_ACCOUNTS_FILE", str(accounts_file))
    monkeypatch.setenv("KIS_ENV", "sim")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_SHARDS", "2")
    simulator.faults = simulator.faults.parse("*:slow=0.5")  # the two workers overlap
    return simulator


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"kis": KisResource()}
    )
    result = balance_capture(context)
    assert isinstance(result, dg.SensorResult)
    return result


def as_worker_argument(request: dg.RunRequest) -> str:
    return json.dumps(
        {
            "job": request.job_name,
            "partition": request.partition_key,
            "config": request.run_config,
            "tags": request.tags,
        }
    )


def test_two_workers_fetch_one_day_and_one_build_writes_it(
    deployment: Deployment,  # noqa: F811
    two_keys: Simulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = today_in_seoul()
    window = datetime.combine(today, time(18, 31), SEOUL)
    monkeypatch.setattr(assets.automation, "clock", lambda: window)
    with deployment.instance() as instance:
        first = tick(instance, None)
        fetches = first.run_requests or []
        assert [r.tags[TAG_KEY_GROUP] for r in fetches] == ["0", "1"]
        workers = [
            subprocess.Popen([sys.executable, "-c", WORKER, as_worker_argument(r)], cwd=REPO)
            for r in fetches
        ]
        assert [worker.wait(timeout=180) for worker in workers] == [0, 0]
        # both shards' runs overlapped: two app keys in flight at the simulator at once
        assert two_keys.peak_in_flight["*"] == 2

        build = tick(instance, first.cursor)
        [request] = build.run_requests or []
        assert request.job_name == "build_day" and request.tags[TAG_BUILD] == today.isoformat()
        done = subprocess.run(
            [sys.executable, "-c", WORKER, as_worker_argument(request)], cwd=REPO, timeout=180
        )
        assert done.returncode == 0
        runs = instance.get_runs()
        assert sorted(run.job_name for run in runs) == ["build_day", *["capture_fetch"] * 2]
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)

    settings = Settings.from_env()
    assert str(settings.data_root).startswith("s3://")
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        summary = dict(
            con.sql("SELECT account_id, tot_asst_amt::VARCHAR FROM account_summary").fetchall()
        )
        rows = dict(
            con.sql(
                "SELECT account_id, count(*) FROM asset_categories GROUP BY account_id"
            ).fetchall()
        )
    accounts = [account for group in KEYS.values() for account in group]
    assert sorted(summary) == sorted(accounts)
    for account_id in accounts:
        body = balance_body(Account.parse(account_id), today)
        assert Decimal(summary[account_id]) == Decimal(body["output2"]["tot_asst_amt"])
        assert rows[account_id] == len(body["output1"])
